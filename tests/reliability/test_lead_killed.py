"""The worker leading a run is SIGKILLed mid-run: a live worker takes the run over within two heartbeat
periods, the dead worker's leases are released on its missed heartbeat, and every candidate is checked.

Two real `payrecon worker` processes; the run is started as the API starts one (a run row and its
job in the queue), so the worker that does not get the job must join it by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import msgspec
from arq import create_pool
from arq.connections import RedisSettings

from providers.simkit import Faults
from service import runs
from service.jobs import JOB_DECODE, JOB_ENCODE, RECONCILE_JOB
from service.runs import RunParams, RunStatus, Trigger
from service.settings import Settings
from tests.reconciler.stage import S, staged
from tests.reliability.procs import WorkerProcess, gateways_toml, worker_env

HEARTBEAT = 2.0  # seconds: long enough that a loaded CI machine's latency does not eat the margin
T = TypeVar("T")
ORDERS = 80


async def wait_until(check: Callable[[], Awaitable[T | None]], within: float, every: float = 0.05) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(every)
    raise AssertionError(f"not within {within}s")


async def test_a_killed_lead_is_taken_over_and_every_candidate_checked(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    quick = msgspec.structs.replace(settings, reconcile_grace=0.05)
    faults = Faults(drop_rate=1.0, api_latency=0.1)  # no webhook arrives; each status query takes 0.1 s
    async with staged(quick, pool, faults=faults, gateways=("stripe",)) as stage:
        for i in range(ORDERS):
            await stage.pay("stripe", f"ord-{i:03}", [S.SUCCEEDED])
        config = {**stage.sims["stripe"].gateway_config(stage.sim_urls["stripe"]), "query_concurrency": 2}
        toml = gateways_toml(tmp_path / "gateways.toml", {"stripe": [config]})
        env = worker_env(quick, toml, run_heartbeat=HEARTBEAT, worker_concurrency=4)
        workers = [WorkerProcess(env, tmp_path / f"worker{n}.log") for n in range(2)]
        try:
            for w in workers:
                w.wait_for("Starting worker")
            await asyncio.sleep(0.2)
            async with pool.acquire() as conn:
                run = await runs.create_run(conn, trigger=Trigger.API, params=RunParams())
            assert run is not None
            assert quick.redis_url is not None
            redis = await create_pool(
                RedisSettings.from_dsn(quick.redis_url),
                job_serializer=JOB_ENCODE,
                job_deserializer=JOB_DECODE,
                default_queue_name=quick.queue_name,
            )
            try:
                await redis.enqueue_job(RECONCILE_JOB, run.id, _job_id=runs.job_id(run))
            finally:
                await redis.aclose()

            async def lead_and_helper() -> str | None:
                lead = await pool.fetchval("select lead from reconcile_runs where id = $1", run.id)
                live = await pool.fetchval(
                    "select count(*) from run_participants where run_id = $1 and left_at is null", run.id
                )
                found = await pool.fetchval("select count(*) from reconcile_findings where run_id = $1", run.id)
                return lead if lead and live >= 2 and found >= 10 else None

            first_lead: str = await wait_until(lead_and_helper, 30)
            victim = next(w for w in workers if w.pid == int(first_lead.split("/")[1]))
            survivor = next(w for w in workers if w is not victim)
            victim.kill()
            killed_at = time.monotonic()

            async def new_lead() -> str | None:
                lead = await pool.fetchval("select lead from reconcile_runs where id = $1", run.id)
                return lead if lead != first_lead else None

            second_lead: str = await wait_until(new_lead, 10, every=0.02)
            took_over = time.monotonic() - killed_at
            assert int(second_lead.split("/")[1]) == survivor.pid
            assert took_over <= 2 * HEARTBEAT, f"taken over after {took_over:.2f}s"

            async def ended() -> asyncpg.Record | None:
                row = await pool.fetchrow("select status, counts from reconcile_runs where id = $1", run.id)
                return row if row["status"] != "running" else None

            final = await wait_until(ended, 60)
            ended_after = time.monotonic() - killed_at
        finally:
            for w in workers:
                w.stop()

        counts = final["counts"]
        assert final["status"] == RunStatus.COMPLETED, counts
        assert counts["planned"] == ORDERS
        assert (counts["checked"], counts["skipped"]) == (ORDERS, 0)
        assert await pool.fetchval("select count(*) from reconcile_findings where run_id = $1", run.id) == ORDERS
        assert await pool.fetchval("select count(*) from orders where status = 'succeeded'") == ORDERS
        # The dead worker's leases were released on its missed heartbeat, not after the 600 s lease.
        assert ended_after < 30
        held = await pool.fetchval("select count(*) from order_checks where lease_holder = $1", first_lead)
        assert held == 0
        assert "takes it over" in survivor.output()
