"""`payrecon serve --workers N`: N processes behind one port, each with the whole app, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from litestar import Litestar

from providers.base import PaymentStatus
from providers.momo.sim.simulator import Simulator as MomoSimulator
from service import ledger
from service.cli import gateway_table
from service.model import NewOrder
from service.serving import cpu_count, free_port, served_app, worker_count
from service.settings import Settings, load_settings


def _start(workers: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-c", "from service.cli import main; main()", "serve", *workers],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


async def _ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        for _ in range(300):
            assert process.poll() is None, log.read_text()  # noqa: ASYNC240 - only on failure
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("payrecon serve did not become ready")


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def test_worker_count_defaults_to_the_cpus_this_process_may_use() -> None:
    assert worker_count(load_settings({})) == cpu_count() == len(os.sched_getaffinity(0))
    assert worker_count(load_settings({"PAYRECON_WORKERS": "3"})) == 3
    assert worker_count(load_settings({}, workers=1)) == 1


async def test_two_workers_serve_webhooks_and_stop_on_sigterm(
    database_url: str, redis_url: str, pool, tmp_path: Path
) -> None:
    momo = MomoSimulator()
    bodies = []
    for i in range(20):
        payment = momo.create_payment(order_id=f"w-{i}", amount=150_000, currency="VND")
        await ledger.register_order(
            pool, NewOrder(id=f"w-{i}", amount=150_000, currency="VND", provider="momo", reference=payment.reference)
        )
        momo.set_status(payment.reference, PaymentStatus.SUCCEEDED)
        bodies.append(momo.ipn_body(momo.get_payment(payment.reference)))
    gateways = tmp_path / "gateways.toml"
    gateways.write_text(gateway_table("momo", momo.gateway_config("http://momo.invalid")))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PAYRECON_DATABASE_URL": database_url,
        "PAYRECON_REDIS_URL": redis_url,
        "PAYRECON_GATEWAYS": str(gateways),
        "PAYRECON_PORT": str(port),
        "PAYRECON_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "serve.log"
    process = _start(["--workers", "2"], env, log)
    try:
        await _ready(f"http://127.0.0.1:{port}", process, log)
        # (multiprocessing's resource tracker is a child too: count the spawned workers)
        workers = [c for c in psutil.Process(process.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2, workers
        # Every worker accepts on the same port and applies through its own pool.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            answers = await asyncio.gather(*(client.post("/webhooks/momo", content=b) for b in bodies))
        assert [a.status_code for a in answers] == [204] * len(bodies)
        succeeded = await pool.fetchval("select count(*) from orders where id like 'w-%' and status = 'succeeded'")
        assert succeeded == len(bodies)
    finally:
        code = _stop(process)
    assert code == 0, log.read_text()
    deadline = time.monotonic() + 10
    while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_workers_must_be_a_positive_number(value: str) -> None:
    result = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-c", "from service.cli import main; main()", "serve", "--workers", value],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr


def test_the_served_app_is_left_out_of_full_collections(settings: Settings) -> None:
    # gc.freeze after the build: a full pass no longer walks the app (tens of ms per pass, a p99 cost)
    gc.unfreeze()
    try:
        app = served_app(settings)
        frozen = gc.get_freeze_count()
        assert frozen > 50_000  # the app, its routes, schemas and every module loaded for them
        assert isinstance(app, Litestar)
        gc.collect()
        assert gc.get_freeze_count() == frozen  # a full pass leaves them frozen
    finally:
        gc.unfreeze()
