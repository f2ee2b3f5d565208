"""Redis killed and restarted under an idle and under a busy worker: the worker waits it out and resumes.

The Redis here is a private redis-server this test starts and SIGKILLs (never the shared one).
The worker is `payrecon worker` in a subprocess, as deployed: it must neither exit nor log a
traceback per poll, just one line when Redis goes and one when it is back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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
from tests.reliability.procs import PrivateRedis, WorkerProcess, gateways_toml, worker_env

ORDERS = 30


async def start_run(pool: asyncpg.Pool, redis_url: str, queue: str) -> int:
    """What POST /v1/reconciliation/runs does: a run row, and its job in the queue."""
    async with pool.acquire() as conn:
        run = await runs.create_run(conn, trigger=Trigger.API, params=RunParams())
    assert run is not None
    redis = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=JOB_ENCODE,
        job_deserializer=JOB_DECODE,
        default_queue_name=queue,
    )
    try:
        await redis.enqueue_job(RECONCILE_JOB, run.id, _job_id=runs.job_id(run))
    finally:
        await redis.aclose()
    return run.id


async def ended(pool: asyncpg.Pool, run_id: int, within: float) -> asyncpg.Record:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = await pool.fetchrow("select status, counts, lead from reconcile_runs where id = $1", run_id)
        if row["status"] != "running":
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} still running after {within}s")


async def test_worker_rides_out_redis_outages_idle_and_busy(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path)
    quick = msgspec.structs.replace(settings, reconcile_grace=0.05, redis_url=redis.url)
    faults = Faults(drop_rate=1.0, api_latency=0.15)  # status queries are slow: the run outlives the outage
    with redis.running():
        async with staged(quick, pool, faults=faults, gateways=("stripe",)) as stage:

            async def new_orders(batch: str) -> None:  # pending in the ledger, paid at the gateway
                for i in range(ORDERS):
                    await stage.pay("stripe", f"{batch}-{i:03}", [S.SUCCEEDED])
                await asyncio.sleep(0.1)  # past the grace period

            config = {**stage.sims["stripe"].gateway_config(stage.sim_urls["stripe"]), "query_concurrency": 2}
            toml = gateways_toml(tmp_path / "gateways.toml", {"stripe": [config]})
            worker = WorkerProcess(worker_env(quick, toml, run_heartbeat=2.0), tmp_path / "worker.log")
            try:
                worker.wait_for("Starting worker")
                # Idle: Redis dies and comes back while the worker has nothing to do.
                await asyncio.sleep(0.5)
                redis.kill()
                await asyncio.sleep(3.0)
                assert worker.process.poll() is None, worker.output()[-2000:]
                redis.start()
                worker.wait_for("Redis reachable again", timeout=20)
                await new_orders("idle")
                first = await start_run(pool, redis.url, quick.queue_name)
                done = await ended(pool, first, 60)
                assert done["status"] == RunStatus.COMPLETED, done["counts"]

                # Busy: Redis dies while a run is being checked (ORDERS x 0.15 s over 2 slots: 2 s and more).
                await new_orders("busy")
                second = await start_run(pool, redis.url, quick.queue_name)
                for _ in range(200):
                    if await pool.fetchval("select count(*) from reconcile_findings where run_id = $1", second):
                        break
                    await asyncio.sleep(0.05)
                redis.kill()
                await asyncio.sleep(2.0)
                assert worker.process.poll() is None, worker.output()[-2000:]
                redis.start()
                done = await ended(pool, second, 60)
                assert done["status"] == RunStatus.COMPLETED, done["counts"]
                assert done["counts"]["checked"] == ORDERS
                # And it still takes new work after both outages.
                await new_orders("after")
                third = await start_run(pool, redis.url, quick.queue_name)
                assert (await ended(pool, third, 60))["status"] == RunStatus.COMPLETED
            finally:
                worker.stop()
    log = worker.output()
    assert log.count("Redis unreachable") == 2, log[-3000:]
    assert log.count("Redis reachable again") == 2, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
