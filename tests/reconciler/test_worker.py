"""The arq worker on real Redis: several workers split one run, N workers on one cron slot make one run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from providers.simkit import Faults
from reconciler.worker import cron_schedule, slot_of
from service import ledger, runs
from service.jobs import RECONCILE_JOB
from service.model import NewOrder
from service.runs import FindingKind, RunParams, RunStatus, Trigger
from service.settings import Settings
from tests.reconciler.stage import S, Stage, staged
from tests.reconciler.workers import burst_worker, enqueue_slot, queries_per_reference, queue, run_workers, slow

PER_GATEWAY = 15


async def pending_orders(stage: Stage) -> None:
    """PER_GATEWAY orders per gateway that the gateways say are paid; every webhook lost."""
    for gateway in stage.sims:
        for i in range(PER_GATEWAY):
            await stage.pay(gateway, f"{gateway}-{i:03d}", [S.SUCCEEDED])
    await stage.drain()


async def test_two_workers_split_one_run_and_check_every_candidate_exactly_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = slow(settings)
    # Two query slots per gateway: one worker keeps at most a few batches in flight, and its first
    # query waits for the other worker's (barrier), so the second finds work left and the split is real.
    faults = Faults(drop_rate=1.0, api_latency=0.1, seed=1)  # ~0.8 s of asking for one worker alone
    async with staged(settings, pool, faults=faults, concurrency=2) as stage:
        await pending_orders(stage)
        async with pool.acquire() as conn:
            run = await runs.create_run(conn, trigger=Trigger.API, params=RunParams())
        assert run is not None
        async with queue(settings) as redis:
            assert await redis.enqueue_job(RECONCILE_JOB, run.id, _job_id=runs.job_id(run))
            assert await redis.enqueue_job("join_run", run.id, _job_id=runs.job_id(run, "join"))
            logs: list[list[str]] = [[], []]
            barrier = asyncio.Barrier(len(logs))
            await run_workers([burst_worker(stage, settings, log, barrier) for log in logs])
        async with pool.acquire() as conn:
            ended = await runs.get_run(conn, run.id)
            found = await runs.list_findings(conn, run.id, kind=None, after_id=None, limit=1000)
        assert ended is not None
        assert ended.status is RunStatus.COMPLETED, ended
        assert sorted(f.order_id for f in found) == sorted(stage.references)
        assert {f.kind for f in found} == {FindingKind.REPAIRED}
        per_reference = queries_per_reference(stage, logs)
        assert set(per_reference.values()) == {1}, per_reference  # every candidate asked exactly once
        asked = [sum(1 for line in log if "/v1/events" not in line) for log in logs]
        assert all(asked), f"both workers should have asked gateways: {asked}"
        assert set((await stage.ledger()).values()) == {"succeeded"}


@pytest.mark.parametrize("workers", [3])
async def test_n_workers_on_one_cron_slot_make_one_run(settings: Settings, pool: asyncpg.Pool, workers: int) -> None:
    settings = slow(settings)
    period, _ = cron_schedule(settings.reconcile_every)
    scheduled = datetime.now(UTC).replace(microsecond=123_456)
    async with staged(settings, pool, faults=Faults(drop_rate=1.0, api_latency=0.02, seed=2)) as stage:
        await pending_orders(stage)
        async with queue(settings) as redis:
            # As if arq's unique cron id failed: every worker enqueues the same slot under its own id.
            await enqueue_slot(redis, "reconcile_slot", scheduled, copies=workers)
            logs: list[list[str]] = [[] for _ in range(workers)]
            await run_workers([burst_worker(stage, settings, log) for log in logs])
        async with pool.acquire() as conn:
            rows = await conn.fetch("select id, slot, trigger, status from reconcile_runs")
            found = await runs.list_findings(conn, rows[0]["id"], kind=None, after_id=None, limit=1000)
        assert len(rows) == 1
        assert rows[0]["slot"] == slot_of(scheduled.timestamp() * 1000, period)
        assert (rows[0]["trigger"], rows[0]["status"]) == ("cron", "completed")
        assert sorted(f.order_id for f in found) == sorted(stage.references)
        assert set(queries_per_reference(stage, logs).values()) == {1}


def test_cron_periods() -> None:
    assert cron_schedule(300.0) == (300.0, {"minute": set(range(0, 60, 5)), "second": 0})
    assert cron_schedule(15.0) == (15.0, {"second": {0, 15, 30, 45}})
    assert cron_schedule(7200.0) == (7200.0, {"hour": set(range(0, 24, 2)), "minute": 0, "second": 0})
    assert cron_schedule(290.0)[0] == 300.0  # not a cron period: the nearest one
    assert slot_of(1_000_299_999, 300.0) == datetime.fromtimestamp(1_000_200, UTC)


async def test_a_run_whose_workers_died_is_failed_by_the_next_slot(settings: Settings, pool: asyncpg.Pool) -> None:
    await ledger.register_order(pool, NewOrder(id="o-1", amount=50_000, currency="VND", provider="momo"))
    async with pool.acquire() as conn:
        stale = await runs.create_run(conn, trigger=Trigger.API, params=RunParams())
        live = await runs.create_run(conn, trigger=Trigger.API, params=RunParams())
        ending = await runs.create_run(conn, trigger=Trigger.AUDIT, params=RunParams())
        assert stale is not None
        assert live is not None
        assert ending is not None
        await conn.execute(
            "update reconcile_runs set started_at = now() - interval '2 hours' where id = any($1::bigint[])",
            [stale.id, ending.id],
        )
        # A long audit whose last order was just checked holds no lease while its lead ends it.
        await runs.record_finding(
            conn, ending.id, order_id="o-1", provider="momo", account="default", kind=FindingKind.IN_SYNC
        )
        assert await runs.fail_abandoned(conn, 3600.0) == [stale.id]
        ended = await runs.get_run(conn, stale.id)
        assert ended is not None
        assert ended.status is RunStatus.FAILED
        assert "abandoned" in (ended.error or "")
        still = await runs.get_run(conn, live.id)
        assert still is not None
        assert still.status is RunStatus.RUNNING  # young: its worker may just be busy
        waiting = await runs.get_run(conn, ending.id)
        assert waiting is not None
        assert waiting.status is RunStatus.RUNNING  # old, but it checked an order a moment ago
        # Quiet for longer than a lease: its workers are gone too.
        await conn.execute("update reconcile_findings set created_at = now() - interval '11 minutes'")
        assert await runs.fail_abandoned(conn, 3600.0) == [ending.id]
