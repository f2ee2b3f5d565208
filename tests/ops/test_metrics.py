"""/metrics: counters summed over several serve workers, the reconciler's metrics, and state read at scrape time."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from providers.simkit import Faults
from reconciler.run import execute
from service import breakers
from service.serving import free_port
from service.settings import Settings
from tests.e2e.harness import running
from tests.reconciler.stage import S, staged
from tests.reconciler.test_run import new_run, play, quick

REPO = Path(__file__).resolve().parents[2]
REJECTED = "payrecon_webhooks_rejected_total"
UNKNOWN = {"provider": "_unknown", "reason": "unknown_provider"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def per_process(directory: Path) -> dict[str, float]:
    """The rejected-deliveries counter as each worker process wrote it (one file per pid)."""
    found: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            for s in metric.samples:
                if s.name == REJECTED and s.labels == UNKNOWN:
                    found[path.name] = s.value
    return found


@pytest.mark.timeout(300)
async def test_two_serve_workers_report_the_sum_of_their_counters(settings: Settings, tmp_path: Path) -> None:
    """`payrecon serve --workers 2`, its workers writing to the PROMETHEUS_MULTIPROC_DIR an operator set."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAYRECON_")},
        "PAYRECON_DATABASE_URL": str(settings.database_url),
        "PAYRECON_REDIS_URL": str(settings.redis_url),
        "PAYRECON_QUEUE_NAME": settings.queue_name,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PAYRECON_LOG_JSON": "1",
    }
    log_path = tmp_path / "serve.log"
    log_file = log_path.open("w")
    command = [sys.executable, "-c", "from service.cli import main; main()", "serve", "--workers", "2"]
    server = subprocess.Popen(  # noqa: ASYNC220, S603 - our own server for the test, stopped below
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,  # a file, not a pipe: a full pipe would stall the server
    )
    base = f"http://127.0.0.1:{port}"
    sent = 0
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10.0) as probe:
            ready_by = time.monotonic() + 150  # worker processes start slowly on a busy machine
            while True:
                try:
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < ready_by, f"not ready in time:\n{log_path.read_text()}"
                await asyncio.sleep(0.2)
        # New connections until both workers have counted some: the kernel picks who accepts each.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=10.0, limits=no_reuse) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                answers = await asyncio.gather(
                    *(http.post("/webhooks/nosuchgateway", content=b"{}") for _ in range(20))
                )
                assert {a.status_code for a in answers} == {404}
                sent += len(answers)
                if len([v for v in per_process(metrics_dir).values() if v > 0]) >= 2:
                    break
            counts = per_process(metrics_dir)
            assert len([v for v in counts.values() if v > 0]) >= 2, counts
            assert sum(counts.values()) == sent
            for _ in range(6):  # whichever worker answers the scrape, it reports the sum
                text = (await http.get("/metrics")).text
                assert scraped(text, REJECTED, **UNKNOWN) == sent
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # PAYRECON_LOG_JSON: every line is one JSON object
    refused = [r for r in records if r.get("outcome") == "rejected:unknown_provider"]
    assert refused
    assert all(r["gateway"] == "nosuchgateway" and r.get("request_id") for r in refused)


async def test_state_gauges_come_from_postgresql_and_redis(settings: Settings, pool: asyncpg.Pool) -> None:
    async with running(settings) as app:
        async with pool.acquire() as conn:
            await breakers.publish(conn, "momo", "default", open=True, failures=5, last_error="503", run_id=None)
            await breakers.publish(conn, "stripe", "default", open=False, failures=0, last_error=None, run_id=None)
        job = await app.app.state.redis.enqueue_job("nothing_runs_this", _job_id=f"metrics-depth-{uuid.uuid4().hex}")
        assert job is not None

        text = (await app.http.get("/metrics")).text

    assert scraped(text, "payrecon_breaker_open", provider="momo", account="default") == 1
    assert scraped(text, "payrecon_breaker_open", provider="stripe", account="default") == 0
    assert scraped(text, "payrecon_queue_depth", queue=settings.queue_name) == 1
    assert scraped(text, "payrecon_state_up", store="postgresql") == 1
    assert scraped(text, "payrecon_state_up", store="redis") == 1


async def test_a_run_counts_its_outcome_findings_gateway_queries_and_publishes_its_breakers(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    scenario = {"momo": [[S.SUCCEEDED], [S.PROCESSING], []], "stripe": [[S.SUCCEEDED], []]}
    async with staged(
        quick(settings), pool, faults=Faults(drop_rate=1.0, seed=3), gateways=("momo", "stripe")
    ) as stage:
        await play(stage, scenario)
        stage.set_faults("momo", Faults(api_error_rate=1.0))
        await asyncio.sleep(0.1)  # every order past the grace period: all five are candidates
        before = {
            "runs": sample("payrecon_reconcile_runs_total", trigger="cli", status="partial"),
            "errors": sample("payrecon_reconcile_findings_total", provider="momo", kind="error"),
            "repaired": sample("payrecon_reconcile_findings_total", provider="stripe", kind="repaired"),
            "latency": sample("payrecon_gateway_query_seconds_count", provider="stripe", account="default"),
        }
        async with stage.client() as http:
            run = await execute(stage.env(http), await new_run(pool))
    assert run is not None
    assert sample("payrecon_reconcile_runs_total", trigger="cli", status="partial") == before["runs"] + 1
    assert sample("payrecon_reconcile_findings_total", provider="momo", kind="error") == before["errors"] + 3
    assert sample("payrecon_reconcile_findings_total", provider="stripe", kind="repaired") >= before["repaired"] + 1
    assert sample("payrecon_gateway_query_seconds_count", provider="stripe", account="default") >= before["latency"] + 2
    errors = [
        s
        for family in REGISTRY.collect()
        if family.name == "payrecon_gateway_query_errors"
        for s in family.samples
        if s.labels.get("provider") == "momo" and s.name.endswith("_total")
    ]
    assert errors
    assert all(s.value > 0 for s in errors)
    async with pool.acquire() as conn:
        states = {(b.provider, b.account): b for b in await breakers.states(conn)}
    assert states[("stripe", "default")].open is False
    assert states[("stripe", "default")].run_id == run.id
    momo = states[("momo", "default")]
    assert (momo.open, momo.run_id) == (run.counts["circuit_open"] == ["momo/default"], run.id)
    assert momo.failures >= 1
    assert momo.last_error


def test_metric_names_are_unique_and_prefixed() -> None:
    from service import metrics

    names = [m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_documentation")]
    assert len(names) == len(set(names))
    assert all(name.startswith("payrecon_") for name in names)


def test_serve_makes_a_fresh_metrics_directory_unless_one_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.metrics import MULTIPROC_ENV, multiprocess_dir

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_dir() as made:
        assert os.environ[MULTIPROC_ENV] == made
        assert Path(made).is_dir()
        assert not any(Path(made).iterdir())
    assert MULTIPROC_ENV not in os.environ
    assert not Path(made).exists()  # files of this run are never summed into the next
    given = tmp_path / "shared"
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    with multiprocess_dir() as used:
        assert used == str(given)
    assert given.is_dir()  # the operator's directory is left alone
