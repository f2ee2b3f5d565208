"""Reconciliation runs against the three simulators over HTTP: repairs, sweeps, outages, mismatches, dry runs."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import msgspec

from providers.base import PaymentEvent
from providers.simkit import Faults
from reconciler.run import execute
from reconciler.verdict import agrees
from service import ledger, runs
from service.model import Source
from service.runs import FindingKind, ReconcileRun, RunParams, RunStatus, Trigger
from service.settings import Settings
from tests.reconciler.stage import S, Stage, staged

# (gateway, steps) per order: payments that end every way each gateway allows.
SCENARIO = {
    "stripe": [[S.SUCCEEDED], [S.SUCCEEDED], [S.FAILED], [S.CANCELED], [S.SUCCEEDED, S.REFUNDED],
               [S.SUCCEEDED, S.PARTIALLY_REFUNDED], [S.PROCESSING], [], [S.SUCCEEDED], [S.AUTHORIZED]],
    "momo": [[S.SUCCEEDED], [S.SUCCEEDED], [S.FAILED], [S.CANCELED], [S.SUCCEEDED], [S.PROCESSING], [],
             [S.SUCCEEDED], [S.FAILED], [S.AUTHORIZED]],
    "vnpay": [[S.SUCCEEDED], [S.SUCCEEDED], [S.FAILED], [S.CANCELED], [S.SUCCEEDED], [S.PROCESSING], [],
              [S.SUCCEEDED], [S.FAILED], [S.SUCCEEDED]],
}  # fmt: skip


def quick(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, reconcile_grace=0.05, reconcile_batch=7)


async def play(stage: Stage, scenario: dict[str, list[list[S]]] = SCENARIO) -> None:
    for gateway, orders in scenario.items():
        for i, steps in enumerate(orders):
            await stage.pay(gateway, f"{gateway}-{i:03d}", steps)
    await stage.drain()


async def new_run(pool: asyncpg.Pool, *, dry_run: bool = False, since: datetime | None = None) -> ReconcileRun:
    async with pool.acquire() as conn:
        run = await runs.create_run(conn, trigger=Trigger.CLI, params=RunParams(since=since), dry_run=dry_run)
    assert run is not None
    return run


async def findings(pool: asyncpg.Pool, run_id: int) -> dict[str, runs.Finding]:
    async with pool.acquire() as conn:
        found = await runs.list_findings(conn, run_id, kind=None, after_id=None, limit=10_000)
    return {f.order_id: f for f in found}


async def test_one_run_repairs_every_dropped_webhook_and_a_second_repairs_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    started = datetime.now(UTC)
    async with staged(quick(settings), pool, faults=Faults(drop_rate=0.3, seed=11)) as stage:
        await play(stage)
        async with stage.client() as http:
            before, truth = await stage.ledger(), await stage.gateway_truth(http)
            wrong = {order for order in truth if not agrees(before[order], truth[order])}
            assert len(wrong) >= 5, "the seed should drop a fair share of 30 orders' webhooks"

            run = await execute(stage.env(http), await new_run(pool))
            assert run is not None
            assert run.status is RunStatus.COMPLETED, run
            after = await stage.ledger()
            assert all(agrees(after[o], truth[o]) for o in truth), (after, truth)  # every order matches its gateway
            first = await findings(pool, run.id)
            repaired = {o for o, f in first.items() if f.kind is FindingKind.REPAIRED}
            assert repaired == wrong  # findings name exactly the orders that were wrong
            for order in repaired:
                assert first[order].from_status == before[order]
                assert agrees(str(first[order].to_status), truth[order])
            assert run.counts["findings"].get("repaired") == len(wrong)
            assert set(run.counts["gateways"]) <= {"stripe", "momo", "vnpay"}
            assert run.counts["catch_up"]["stripe/default"]["events"] > 0

            # A sweep of every order since the start asks again: nothing left to repair.
            again = await execute(stage.env(http), await new_run(pool, since=started))
            assert again is not None
            assert again.status is RunStatus.COMPLETED
            second = await findings(pool, again.id)
            assert set(second) == set(truth)  # the sweep checked every order, paid ones too
            assert {f.kind for f in second.values()} == {FindingKind.IN_SYNC}
            assert again.counts["catch_up"]["stripe/default"]["repaired"] == 0
            assert await stage.ledger() == after


async def test_a_gateway_down_for_the_whole_run_makes_it_partial_and_changes_none_of_its_orders(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # Two query slots per account: the breaker opens (5 failed queries) while most momo orders
    # still wait for a slot, whatever order the run claims them in.
    async with staged(quick(settings), pool, faults=Faults(drop_rate=1.0, seed=3), concurrency=2) as stage:
        await play(stage)  # no webhook arrives: every order is pending in the ledger
        async with stage.client() as http:
            truth = await stage.gateway_truth(http)
            stage.set_faults("momo", Faults(api_error_rate=1.0))
            versions = await stage.versions()
            run = await execute(stage.env(http), await new_run(pool))
        assert run is not None
        assert run.status is RunStatus.PARTIAL
        found = await findings(pool, run.id)
        after, now = await stage.ledger(), await stage.versions()
        momo = {o for o in truth if o.startswith("momo-")}
        open_momo = {o for o in momo if o in found}
        assert open_momo == momo  # pending in the ledger: every momo order was a candidate
        # The queries that failed are errors; once the breaker opened, the rest were not asked: skipped.
        assert {found[o].kind for o in momo} == {FindingKind.ERROR, FindingKind.SKIPPED}
        assert all("momo" in (found[o].detail or "") for o in momo)
        assert all("circuit open" in (found[o].detail or "") for o in momo if found[o].kind is FindingKind.SKIPPED)
        assert all(now[o] == versions[o] and after[o] == "pending" for o in momo)  # no change on an error
        assert "momo/default" in run.counts["circuit_open"]
        # The other gateways' repairs are kept.
        others = {o for o in truth if not o.startswith("momo-")}
        assert all(agrees(after[o], truth[o]) for o in others)
        assert any(found[o].kind is FindingKind.REPAIRED for o in others)
        momo_counts = run.counts["gateways"]["momo"]
        assert set(momo_counts) == {"error", "skipped"}
        assert sum(momo_counts.values()) == len(momo)
        assert run.counts["skipped"] == momo_counts["skipped"]


async def test_ledger_paid_but_gateway_failed_is_a_mismatch_flagged_and_never_reversed(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    started = datetime.now(UTC)
    async with staged(quick(settings), pool, gateways=("stripe",)) as stage:
        await stage.pay("stripe", "paid-in-ledger", [S.FAILED])
        await stage.drain()
        _, reference = stage.references["paid-in-ledger"]
        forged = PaymentEvent(
            provider="stripe",
            dedupe_key="evt_manual_1",
            account="default",
            reference=reference,
            status=S.SUCCEEDED,
            amount=2500,
            currency="USD",
            provider_payment_id=reference,
            occurred_at=datetime.now(UTC),
        )
        await ledger.apply(pool, forged, Source.MANUAL)
        assert (await stage.ledger())["paid-in-ledger"] == "succeeded"
        version = (await stage.versions())["paid-in-ledger"]
        async with stage.client() as http:
            run = await execute(stage.env(http), await new_run(pool, since=started))
            assert run is not None
            finding = (await findings(pool, run.id))["paid-in-ledger"]
            assert finding.kind is FindingKind.MISMATCH
            assert (finding.from_status, finding.to_status, finding.gateway_status) == (
                "succeeded",
                "succeeded",
                "failed",
            )
            assert (await stage.ledger())["paid-in-ledger"] == "succeeded"
            assert (await stage.versions())["paid-in-ledger"] == version
            kinds = await pool.fetch("select kind, status from anomalies where order_id = 'paid-in-ledger'")
            assert [(r["kind"], r["status"]) for r in kinds] == [("ledger_gateway_mismatch", "open")]

            # The open anomaly keeps it a candidate of ordinary (non-sweep) runs once it is due again.
            await pool.execute("update order_checks set next_check_at = now()")
            again = await execute(stage.env(http), await new_run(pool))
            assert again is not None
            assert (await findings(pool, again.id))["paid-in-ledger"].kind is FindingKind.MISMATCH
            assert await pool.fetchval("select count(*) from anomalies") == 1


async def test_a_dry_run_records_findings_and_changes_no_order(settings: Settings, pool: asyncpg.Pool) -> None:
    async with staged(quick(settings), pool, faults=Faults(drop_rate=1.0, seed=5)) as stage:
        await play(stage)
        snapshot = "select id, status, version, refunded_amount, updated_at from orders order by id"
        orders_before = [dict(r) for r in await pool.fetch(snapshot)]
        checks_before = [dict(r) for r in await pool.fetch("select order_id, next_check_at from order_checks")]
        events_before = await pool.fetchval("select count(*) from payment_events")
        async with stage.client() as http:
            truth = await stage.gateway_truth(http)
            run = await execute(stage.env(http), await new_run(pool, dry_run=True))
        assert run is not None
        assert run.dry_run
        assert run.status is RunStatus.COMPLETED
        assert [dict(r) for r in await pool.fetch(snapshot)] == orders_before
        assert await pool.fetchval("select count(*) from payment_events") == events_before
        assert await pool.fetchval("select count(*) from transitions") == 0
        assert await pool.fetchval("select count(*) from catch_up_cursors") == 0
        due = await pool.fetch("select order_id, next_check_at from order_checks where next_check_at > now()")
        assert [dict(r) for r in due] == [c for c in checks_before if c["next_check_at"] > datetime.now(UTC)]
        found = await findings(pool, run.id)
        would = {o for o, f in found.items() if f.kind is FindingKind.REPAIRED}
        assert would == {o for o, s in truth.items() if s != "pending"}
        assert all((found[o].detail or "").startswith("would repair") for o in would)
