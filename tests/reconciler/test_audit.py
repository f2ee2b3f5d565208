"""Scheduled audits on real Redis, PostgreSQL and the simulators: paid orders are checked too, one run per slot."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from click.testing import CliRunner

from providers.simkit import Faults
from reconciler import candidates
from reconciler.cli import report
from reconciler.cli import worker as worker_command
from reconciler.run import RunEnv
from reconciler.worker import AUDIT_EVERY, audit_slot, slot_of, worker_options
from service import ledger, runs
from service.model import NewOrder
from service.runs import FindingKind, ReconcileRun, RunStatus, Trigger
from service.settings import Settings, SettingsError, load_settings
from tests.reconciler.stage import PAY, S, Stage, staged
from tests.reconciler.workers import burst_worker, enqueue_slot, queries_per_reference, queue, run_workers, slow

DAY = 86400.0
FIVE_MINUTES = timedelta(minutes=5)


def midnight(days_ago: int = 0) -> datetime:
    """A cron job's scheduled time (arq's 123456 µs) on a UTC midnight: a daily and a 5-minute slot at once."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=123_456)
    return today - timedelta(days=days_ago)


async def run_slots(stage: Stage, settings: Settings, jobs: list[str], at: datetime, log: list[str]) -> None:
    """Each cron job in `jobs` scheduled at `at`, run by one burst worker (queries recorded in `log`)."""
    async with queue(settings) as redis:
        for job in jobs:
            await enqueue_slot(redis, job, at)
        await run_workers([burst_worker(stage, settings, log)])


async def slot_runs(pool: asyncpg.Pool) -> list[ReconcileRun]:
    async with pool.acquire() as conn:
        return list(reversed(await runs.list_runs(conn, before_id=None, limit=100)))


async def findings(pool: asyncpg.Pool, run: ReconcileRun) -> dict[str, runs.Finding]:
    async with pool.acquire() as conn:
        found = await runs.list_findings(conn, run.id, kind=None, after_id=None, limit=1000)
    return {f.order_id: f for f in found}


async def order(pool: asyncpg.Pool, order_id: str) -> tuple[str, int]:
    row = await pool.fetchrow("select status, refunded_amount from orders where id = $1", order_id)
    assert row is not None
    return row["status"], row["refunded_amount"]


@pytest.mark.parametrize("gateway", ["momo", "vnpay"])
async def test_an_audit_slot_repairs_a_refund_no_webhook_announced_which_the_5_minute_slot_never_asks_about(
    settings: Settings, pool: asyncpg.Pool, gateway: str
) -> None:
    settings = slow(settings)
    amount = PAY[gateway][0]
    async with staged(settings, pool, gateways=[gateway]) as stage:
        await stage.pay(gateway, "paid", [S.SUCCEEDED])  # its webhook arrives: paid in the ledger
        await stage.drain()
        stage.set_faults(gateway, Faults(drop_rate=1.0))
        await stage.pay(gateway, "open", [S.SUCCEEDED])  # its webhook is lost: a 5-minute run's work
        await stage.drain()
        sim, paid_ref, open_ref = stage.sims[gateway], stage.references["paid"][1], stage.references["open"][1]
        sim.refund(paid_ref, amount // 5)  # through the gateway's refund API: no webhook follows
        await stage.drain()
        assert await order(pool, "paid") == ("succeeded", 0)
        assert await order(pool, "open") == ("pending", 0)
        await asyncio.sleep(0.1)  # past the grace period

        # The 5-minute slot: it repairs the open order and never asks about the paid one.
        log: list[str] = []
        await run_slots(stage, settings, ["reconcile_slot"], midnight(1), log)
        [cron] = await slot_runs(pool)
        assert (cron.trigger, cron.status) == (Trigger.CRON, RunStatus.COMPLETED)
        assert {o: f.kind for o, f in (await findings(pool, cron)).items()} == {"open": FindingKind.REPAIRED}
        assert any(open_ref in line for line in log)
        assert not any(paid_ref in line for line in log)
        assert await order(pool, "paid") == ("succeeded", 0)

        # The audit slot on the same instant: a run of its own, which asks about the paid order too.
        log.clear()
        await run_slots(stage, settings, ["audit_slot"], midnight(1), log)
        cron_again, audit = await slot_runs(pool)
        assert cron_again.id == cron.id
        assert (audit.trigger, audit.status, audit.slot) == (Trigger.AUDIT, RunStatus.COMPLETED, cron.slot)
        assert audit.params.since == slot_of(midnight(1).timestamp() * 1000, DAY) - timedelta(days=7)
        found = await findings(pool, audit)
        assert (found["paid"].kind, found["paid"].from_status, found["paid"].to_status) == (
            FindingKind.REPAIRED,
            "succeeded",
            "partially_refunded",
        )
        assert found["open"].kind is FindingKind.IN_SYNC
        assert await order(pool, "paid") == ("partially_refunded", amount // 5)

        if gateway == "vnpay":
            return  # querydr shows VNPay's latest refund alone, not a sum: the cumulative step is MoMo's
        # The rest is refunded later: the next day's audit records the cumulative amount.
        sim.refund(paid_ref, amount - amount // 5)
        await stage.drain()
        await run_slots(stage, settings, ["audit_slot"], midnight(0), log)
        *_, next_audit = await slot_runs(pool)
        assert next_audit.trigger is Trigger.AUDIT
        assert next_audit.slot == cron.slot + timedelta(days=1)
        assert (await findings(pool, next_audit))["paid"].to_status == "refunded"
        assert await order(pool, "paid") == ("refunded", amount)


@pytest.mark.parametrize("workers", [3])
async def test_n_workers_on_one_audit_slot_make_one_audit_run_beside_the_5_minute_run_of_that_instant(
    settings: Settings, pool: asyncpg.Pool, workers: int
) -> None:
    settings = slow(settings)
    async with staged(settings, pool, faults=Faults(api_latency=0.02, seed=5)) as stage:
        for gateway in stage.sims:
            for i in range(4):
                await stage.pay(gateway, f"{gateway}-paid-{i}", [S.SUCCEEDED])
        await stage.drain()
        for n, gateway in enumerate(stage.sims):
            stage.set_faults(gateway, Faults(drop_rate=1.0, api_latency=0.02, seed=n))
            for i in range(4):
                await stage.pay(gateway, f"{gateway}-lost-{i}", [S.SUCCEEDED])
        await stage.drain()
        paid = {o for o in stage.references if "-paid-" in o}
        lost = set(stage.references) - paid
        assert {o for o, status in (await stage.ledger()).items() if status == "succeeded"} == paid
        await asyncio.sleep(0.1)  # past the grace period

        at = midnight()
        async with queue(settings) as redis:
            # Every worker enqueues both slots of the instant under its own ids (arq's unique id failing).
            await enqueue_slot(redis, "audit_slot", at, copies=workers)
            await enqueue_slot(redis, "reconcile_slot", at, copies=workers)
            logs: list[list[str]] = [[] for _ in range(workers)]
            await run_workers([burst_worker(stage, settings, log) for log in logs])

        made = await slot_runs(pool)
        assert sorted((r.trigger.value, r.slot, r.status.value) for r in made) == [
            ("audit", slot_of(at.timestamp() * 1000, DAY), "completed"),
            ("cron", slot_of(at.timestamp() * 1000, 300.0), "completed"),
        ]
        assert made[0].slot == made[1].slot  # one instant, two runs
        by_trigger = {r.trigger: await findings(pool, r) for r in made}
        audited = by_trigger[Trigger.AUDIT]
        assert paid <= set(audited)  # only the audit asks about paid orders…
        assert {audited[o].kind for o in paid} == {FindingKind.IN_SYNC}
        assert not paid & set(by_trigger[Trigger.CRON])
        per_reference = queries_per_reference(stage, logs)
        assert {per_reference[o] for o in paid} == {1}  # …and each exactly once, whatever the workers
        assert lost <= set(audited) | set(by_trigger[Trigger.CRON])  # open orders: one run or the other
        assert set((await stage.ledger()).values()) == {"succeeded"}


async def test_participants_of_a_sweep_walk_its_window_once_between_them(pool: asyncpg.Pool) -> None:
    async def register(prefix: str, n: int) -> list[str]:
        ids = [f"{prefix}-{i:03d}" for i in range(n)]
        for order_id in ids:
            await ledger.register_order(pool, NewOrder(id=order_id, amount=50_000, currency="VND", provider="momo"))
        return ids

    await register("before", 10)  # created before the window: not the sweep's
    since = datetime.now(UTC)
    inside = await register("inside", 120)
    async with pool.acquire() as conn:
        run = await runs.create_run(conn, trigger=Trigger.AUDIT, params=runs.RunParams(since=since))
        other = await runs.create_run(conn, trigger=Trigger.CRON, params=runs.RunParams())
    assert run is not None
    assert other is not None
    rule = candidates.ClaimRule(
        run_id=run.id, grace=0.0, horizon=DAY, since=since, gateways=["momo"], batch=7, lease=600.0, dry_run=False
    )
    await candidates.prepare(pool, rule)
    # Another run is checking one of them right now: it stays that run's.
    await pool.execute(
        "update order_checks set lease_run_id = $1, lease_until = now() + interval '1 hour' where order_id = $2",
        other.id,
        inside[50],
    )

    # Each participant holds its first batch until all four have one (4 × 7 < 119): however the
    # machine schedules them, no participant can drain the window before the others start.
    met = asyncio.Barrier(4)

    async def participate() -> list[str]:
        taken = []
        async for candidate in candidates.stream(pool, rule):
            if not taken:
                async with asyncio.timeout(20):
                    await met.wait()
            taken.append(candidate.id)
        return taken

    taken = await asyncio.gather(*(participate() for _ in range(4)))
    claimed = [order_id for part in taken for order_id in part]
    assert len(claimed) == len(set(claimed))  # no order twice
    assert sorted(claimed) == sorted(set(inside) - {inside[50]})
    assert all(taken), [len(part) for part in taken]  # every participant checked some
    assert [candidate.id async for candidate in candidates.stream(pool, rule)] == []  # a late helper finds none


def test_audits_run_daily_by_default_on_their_own_cron_and_not_at_all_when_off(settings: Settings) -> None:
    jobs = {job.name: job for job in worker_options(settings)["cron_jobs"]}
    # (the outbound-webhook sweep is the worker's third cron job, and not a run)
    assert set(jobs) == {"cron:reconcile_slot", "cron:audit_slot", "cron:deliver_webhooks"}
    assert (jobs["cron:audit_slot"].hour, jobs["cron:audit_slot"].minute, jobs["cron:audit_slot"].second) == (
        {0},
        0,
        0,
    )
    assert (jobs["cron:reconcile_slot"].timeout_s, jobs["cron:audit_slot"].timeout_s) == (3600.0, DAY)  # a day's work
    hourly = msgspec.structs.replace(settings, reconcile_audit_every=3600.0)
    audit = next(job for job in worker_options(hourly)["cron_jobs"] if job.name == "cron:audit_slot")
    assert (audit.hour, audit.minute, audit.second) == (None, {0}, 0)
    off = msgspec.structs.replace(settings, reconcile_audit_every=0.0)
    assert [job.name for job in worker_options(off)["cron_jobs"]] == ["cron:reconcile_slot", "cron:deliver_webhooks"]
    assert worker_options(settings, schedule=False)["cron_jobs"] == []


async def test_an_audit_job_left_queued_after_audits_were_turned_off_starts_no_run(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    off = msgspec.structs.replace(settings, reconcile_audit_every=0.0)
    async with httpx.AsyncClient() as http:
        env = RunEnv(pool=pool, gateways={}, http=http, settings=off)
        result = await audit_slot({"env": env, "score": midnight().timestamp() * 1000})
    assert result["role"] == "none"
    assert AUDIT_EVERY in result["error"]
    assert await pool.fetchval("select count(*) from reconcile_runs") == 0


def test_the_audit_period_may_be_zero_and_never_negative(tmp_path: Path) -> None:
    assert load_settings({AUDIT_EVERY: "0"}).reconcile_audit_every == 0.0
    assert load_settings({}).reconcile_audit_every == DAY
    with pytest.raises(SettingsError) as caught:
        load_settings({AUDIT_EVERY: "-60"})
    assert str(caught.value) == f"{AUDIT_EVERY}: Expected `float` >= 0.0 (got '-60')"
    # The worker refuses to start, in one line naming the variable.
    env = {AUDIT_EVERY: "-60", "PAYRECON_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(worker_command, [], env=env)
    assert result.exit_code == 2
    assert result.output.strip() == f"payrecon: {AUDIT_EVERY}: Expected `float` >= 0.0 (got '-60')"


async def test_a_slot_is_one_run_per_trigger_and_the_report_finds_the_latest_audit(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    slot = slot_of(midnight().timestamp() * 1000, DAY)
    async with pool.acquire() as conn:
        cron = await runs.create_run(conn, trigger=Trigger.CRON, params=runs.RunParams(), slot=slot)
        audit = await runs.create_run(conn, trigger=Trigger.AUDIT, params=runs.RunParams(since=slot), slot=slot)
        again = await runs.create_run(conn, trigger=Trigger.AUDIT, params=runs.RunParams(), slot=slot)
        later = await runs.create_run(conn, trigger=Trigger.CRON, params=runs.RunParams(), slot=slot + FIVE_MINUTES)
        assert cron is not None
        assert audit is not None
        assert later is not None
        assert again is None  # a second worker on the audit slot joins the first one's run
        assert await runs.run_of_slot(conn, slot, Trigger.AUDIT) == audit
        assert await runs.run_of_slot(conn, slot, Trigger.CRON) == cron
        assert await runs.latest_run(conn) == later
        assert await runs.latest_run(conn, Trigger.AUDIT) == audit
        assert await runs.latest_run(conn, Trigger.API) is None
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("insert into reconcile_runs (trigger) values ('nightly')")

    assert settings.database_url is not None
    env = {"PAYRECON_DATABASE_URL": settings.database_url, "PAYRECON_DATA_DIR": str(tmp_path)}
    latest = await asyncio.to_thread(CliRunner().invoke, report, ["--trigger", "audit", "--format", "json"], env=env)
    assert latest.exit_code == 0, latest.output
    assert json.loads(latest.output)["run"]["id"] == audit.id
    table = await asyncio.to_thread(CliRunner().invoke, report, ["--trigger", "audit"], env={**env, "COLUMNS": "200"})
    assert f"Run {audit.id} (audit, all gateways, since {slot.isoformat()})" in table.output
    none = await asyncio.to_thread(CliRunner().invoke, report, ["--trigger", "api"], env=env)
    assert (none.exit_code, none.output.strip()) == (2, "payrecon: no api reconciliation run yet")
    both = await asyncio.to_thread(CliRunner().invoke, report, ["1", "--trigger", "audit"], env=env)
    assert both.exit_code == 2
    assert "give RUN_ID or --trigger, not both" in both.output
