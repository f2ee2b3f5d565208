"""The ledger against real PostgreSQL: every outcome, the audit trail, anomalies, dry runs, metrics."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from providers.base import OutcomeKind, PaymentEvent, PaymentStatus
from service import ledger
from service.model import NewOrder, Outcome, RawDelivery, Source

S = PaymentStatus
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
_keys = itertools.count()


def event(status: PaymentStatus, *, at: datetime | None = T0, **fields: Any) -> PaymentEvent:
    values: dict[str, Any] = {
        "provider": "vnpay",
        "dedupe_key": f"evt-{next(_keys)}",
        "account": "default",
        "reference": "ord-1",
        "amount": 150_000,
        "currency": "VND",
        "occurred_at": at,
    }
    if status in (S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED):
        values["provider_payment_id"] = "pay-1"
    values.update(fields)
    return PaymentEvent(status=status, **values)


async def register(pool: asyncpg.Pool, order_id: str = "ord-1", **fields: Any) -> ledger.Registration:
    values: dict[str, Any] = {"id": order_id, "amount": 150_000, "currency": "VND", "provider": "vnpay"}
    values.update(fields)
    return await ledger.register_order(pool, NewOrder(**values))


async def order_row(pool: asyncpg.Pool, order_id: str = "ord-1") -> asyncpg.Record:
    row = await pool.fetchrow("select * from orders where id = $1", order_id)
    assert row is not None
    return row


async def anomalies(pool: asyncpg.Pool) -> list[tuple[str, str | None, int | None]]:
    rows = await pool.fetch("select kind, order_id, event_id from anomalies order by id")
    return [tuple(r) for r in rows]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_applied_moves_the_order_and_writes_the_audit_trail(pool: asyncpg.Pool) -> None:
    await register(pool)
    raw = RawDelivery(body=b"", headers={"content-type": "text/plain"}, query_string="vnp_TxnRef=ord-1")
    outcome = await ledger.apply(pool, event(S.SUCCEEDED), Source.WEBHOOK, raw=raw)
    assert outcome.kind is OutcomeKind.APPLIED
    assert outcome.order_id == "ord-1"
    assert outcome.before is not None
    assert outcome.after is not None
    assert (outcome.before.status, outcome.before.version) == (S.PENDING, 1)
    assert (outcome.after.status, outcome.after.version, outcome.after.provider_payment_id) == (
        S.SUCCEEDED,
        2,
        "pay-1",
    )
    order = await order_row(pool)
    assert (order["status"], order["version"], order["provider_payment_id"]) == ("succeeded", 2, "pay-1")
    assert order["status_at"] == T0
    assert order["paid_at"] == T0
    step = await pool.fetchrow("select * from transitions where order_id = 'ord-1'")
    assert (step["from_status"], step["to_status"], step["from_version"], step["to_version"]) == (
        "pending",
        "succeeded",
        1,
        2,
    )
    assert (step["event_id"], step["source"]) == (outcome.event_id, "webhook")
    stored = await pool.fetchrow("select * from payment_events where id = $1", outcome.event_id)
    assert (stored["order_id"], stored["outcome"], stored["source"]) == ("ord-1", "applied", "webhook")
    assert stored["applied_at"] is not None
    assert stored["raw_headers"] == {"content-type": "text/plain", ":query_string": "vnp_TxnRef=ord-1"}


async def test_duplicate_changes_nothing(pool: asyncpg.Pool) -> None:
    await register(pool)
    first = event(S.SUCCEEDED)
    await ledger.apply(pool, first, Source.WEBHOOK)
    before = dict(await order_row(pool))
    again = await ledger.apply(pool, first, Source.RECONCILER)
    assert again == Outcome(kind=OutcomeKind.DUPLICATE, order_id="ord-1", event_id=1, stored=OutcomeKind.APPLIED)
    assert dict(await order_row(pool)) == before
    assert await pool.fetchval("select count(*) from payment_events") == 1
    assert await pool.fetchval("select count(*) from transitions") == 1


@pytest.mark.parametrize(("amount", "currency"), [(149_999, "VND"), (150_001, "VND"), (150_000, "USD")])
async def test_wrong_amount_or_currency_never_succeeds(pool: asyncpg.Pool, amount: int, currency: str) -> None:
    await register(pool)
    outcome = await ledger.apply(pool, event(S.SUCCEEDED, amount=amount, currency=currency), Source.WEBHOOK)
    assert outcome.kind is OutcomeKind.AMOUNT_MISMATCH
    assert outcome.anomalies == ["amount_mismatch"]
    order = await order_row(pool)
    assert (order["status"], order["version"], order["paid_at"]) == ("pending", 1, None)
    assert await anomalies(pool) == [("amount_mismatch", "ord-1", outcome.event_id)]
    detail = await pool.fetchval("select detail from anomalies")
    assert detail["got"] == {"amount": amount, "currency": currency}
    assert detail["money_moved"] is True
    assert await pool.fetchval("select outcome from payment_events") == "amount_mismatch"
    assert await pool.fetchval("select count(*) from transitions") == 0


async def test_stale_and_ignored_change_nothing(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.FAILED, at=T0), Source.WEBHOOK)
    stale = await ledger.apply(pool, event(S.PROCESSING, at=T0 - timedelta(seconds=1)), Source.WEBHOOK)
    assert stale.kind is OutcomeKind.STALE
    assert stale.before == stale.after
    ignored = await ledger.apply(pool, event(S.PENDING), Source.RECONCILER)
    assert ignored.kind is OutcomeKind.IGNORED
    order = await order_row(pool)
    assert (order["status"], order["version"]) == ("failed", 2)
    outcomes = await pool.fetch("select outcome from payment_events order by id")
    assert [r[0] for r in outcomes] == ["applied", "stale", "ignored"]


async def test_missing_gateway_time_counts_as_received_time(pool: asyncpg.Pool) -> None:
    await register(pool)
    # An old timestamped `failed` is older than a `processing` we received just now without a time.
    await ledger.apply(pool, event(S.PROCESSING, at=None), Source.WEBHOOK)
    order = await order_row(pool)
    received = await pool.fetchval("select received_at from payment_events")
    assert order["status_at"] == received
    old = await ledger.apply(pool, event(S.FAILED, at=T0), Source.WEBHOOK)
    assert old.kind is OutcomeKind.STALE


async def test_second_payment_is_a_double_payment_anomaly(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED), Source.WEBHOOK)
    second = event(S.SUCCEEDED, provider_payment_id="pay-2", reference="ord-1")
    outcome = await ledger.apply(pool, second, Source.WEBHOOK)
    assert outcome.kind is OutcomeKind.ANOMALY
    assert outcome.anomalies == ["double_payment"]
    order = await order_row(pool)
    assert (order["status"], order["provider_payment_id"]) == ("succeeded", "pay-1")
    assert await anomalies(pool) == [("double_payment", "ord-1", outcome.event_id)]
    assert await pool.fetchval("select outcome from payment_events where id = $1", outcome.event_id) == "anomaly"


async def test_refunds_accumulate_and_never_exceed_the_payment(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED), Source.WEBHOOK)
    part = await ledger.apply(pool, event(S.PARTIALLY_REFUNDED, refunded_amount=50_000), Source.WEBHOOK)
    assert part.after is not None
    assert (part.after.status, part.after.refunded_amount) == (S.PARTIALLY_REFUNDED, 50_000)
    late_lower = await ledger.apply(pool, event(S.PARTIALLY_REFUNDED, refunded_amount=20_000), Source.WEBHOOK)
    assert late_lower.kind is OutcomeKind.STALE
    over = await ledger.apply(pool, event(S.REFUNDED, refunded_amount=200_000), Source.WEBHOOK)
    assert over.kind is OutcomeKind.APPLIED
    assert over.anomalies == ["refund_exceeds_payment"]
    order = await order_row(pool)
    assert (order["status"], order["refunded_amount"]) == ("refunded", 150_000)
    steps = await pool.fetch("select to_status, refunded_amount from transitions order by to_version")
    assert [tuple(s) for s in steps] == [("succeeded", 0), ("partially_refunded", 50_000), ("refunded", 150_000)]


async def test_refund_of_an_unpaid_order_is_a_missed_success(pool: asyncpg.Pool) -> None:
    await register(pool)
    outcome = await ledger.apply(pool, event(S.PARTIALLY_REFUNDED, refunded_amount=10), Source.RECONCILER)
    assert (outcome.kind, outcome.anomalies) == (OutcomeKind.APPLIED, ["missed_success"])
    order = await order_row(pool)
    assert (order["status"], order["refunded_amount"], order["provider_payment_id"]) == (
        "partially_refunded",
        10,
        "pay-1",
    )


async def test_success_after_cancel_is_a_late_success(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.CANCELED), Source.WEBHOOK)
    outcome = await ledger.apply(pool, event(S.SUCCEEDED, at=T0 + timedelta(hours=1)), Source.WEBHOOK)
    assert (outcome.kind, outcome.anomalies) == (OutcomeKind.APPLIED, ["late_success"])
    assert (await order_row(pool))["status"] == "succeeded"
    assert [a[0] for a in await anomalies(pool)] == ["late_success"]


async def test_gateway_flag_is_an_anomaly_and_the_event_still_applies(pool: asyncpg.Pool) -> None:
    await register(pool)
    outcome = await ledger.apply(pool, event(S.SUCCEEDED, flag="vnpay:07 suspected fraud"), Source.WEBHOOK)
    assert (outcome.kind, outcome.anomalies) == (OutcomeKind.APPLIED, ["gateway_flag"])
    detail = await pool.fetchval("select detail from anomalies where kind = 'gateway_flag'")
    assert detail["flag"] == "vnpay:07 suspected fraud"


async def test_anomaly_is_recorded_once_per_kind_order_event(pool: asyncpg.Pool) -> None:
    await register(pool)
    async with pool.acquire() as conn:
        first = await ledger.record_anomaly(
            conn, "ledger_gateway_mismatch", order_id="ord-1", event_id=None, detail={"a": 1}
        )
        again = await ledger.record_anomaly(
            conn, "ledger_gateway_mismatch", order_id="ord-1", event_id=None, detail={"a": 2}
        )
        other = await ledger.record_anomaly(conn, "late_success", order_id="ord-1", event_id=None, detail={})
    assert (first, again, other) == (True, False, True)
    assert len(await anomalies(pool)) == 2


async def test_dry_run_reports_and_keeps_nothing(pool: asyncpg.Pool) -> None:
    await register(pool)
    outcome = await ledger.apply(pool, event(S.SUCCEEDED, amount=1), Source.RECONCILER, dry_run=True)
    assert outcome.kind is OutcomeKind.AMOUNT_MISMATCH
    outcome = await ledger.apply(pool, event(S.SUCCEEDED), Source.RECONCILER, dry_run=True)
    assert outcome.kind is OutcomeKind.APPLIED
    assert outcome.after is not None
    assert outcome.after.status is S.SUCCEEDED
    assert (await order_row(pool))["status"] == "pending"
    for table in ("payment_events", "transitions", "anomalies"):
        assert await pool.fetchval(f"select count(*) from {table}") == 0
    assert (await ledger.apply(pool, event(S.PENDING), Source.RECONCILER, dry_run=True)).kind is OutcomeKind.IGNORED


async def test_outcomes_and_anomalies_are_counted(pool: asyncpg.Pool) -> None:
    await register(pool)
    labels = {"provider": "vnpay", "source": "manual"}
    applied = counter("payrecon_ledger_outcomes_total", **labels, outcome="applied")
    duplicate = counter("payrecon_ledger_outcomes_total", **labels, outcome="duplicate")
    mismatches = counter("payrecon_anomalies_total", kind="amount_mismatch")
    ok = event(S.SUCCEEDED)
    await ledger.apply(pool, ok, Source.MANUAL)
    await ledger.apply(pool, ok, Source.MANUAL)
    await ledger.apply(pool, event(S.SUCCEEDED, amount=3), Source.MANUAL)
    await ledger.apply(pool, event(S.SUCCEEDED, amount=4), Source.MANUAL, dry_run=True)
    assert counter("payrecon_ledger_outcomes_total", **labels, outcome="applied") == applied + 1
    assert counter("payrecon_ledger_outcomes_total", **labels, outcome="duplicate") == duplicate + 1
    assert counter("payrecon_anomalies_total", kind="amount_mismatch") == mismatches + 1


async def test_get_order(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await ledger.get_order(conn, "ord-1") is None
    await register(pool, provider_data={"vnp_create_date": "20261124100000"}, metadata={"cart": "c-77"})
    async with pool.acquire() as conn:
        order = await ledger.get_order(conn, "ord-1")
    assert order is not None
    assert (order.status, order.version, order.reference, order.account) == (S.PENDING, 1, "ord-1", "default")
    assert order.metadata == {"cart": "c-77"}
    assert [(r.provider, r.reference, r.provider_data) for r in order.references] == [
        ("vnpay", "ord-1", {"vnp_create_date": "20261124100000"})
    ]


async def test_each_transition_and_new_anomaly_writes_one_outbox_row_in_its_transaction(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.PROCESSING), Source.WEBHOOK)
    await ledger.apply(pool, event(S.SUCCEEDED, amount=1), Source.WEBHOOK)  # amount mismatch: anomaly only
    await ledger.apply(pool, event(S.SUCCEEDED), Source.WEBHOOK, dry_run=True)  # rolled back: never announced
    paid = event(S.SUCCEEDED)
    await ledger.apply(pool, paid, Source.WEBHOOK)
    await ledger.apply(pool, paid, Source.WEBHOOK)  # a duplicate announces nothing
    rows = await pool.fetch(
        "select type, order_version, anomaly_id is not null as anomaly, data from notifications order by id"
    )
    assert [(r["type"], r["order_version"], r["anomaly"]) for r in rows] == [
        ("order.processing", 2, False),
        ("anomaly.opened", 2, True),
        ("order.succeeded", 3, False),
    ]
    assert (rows[2]["data"]["status"], rows[2]["data"]["version"]) == (
        "succeeded",
        3,
    )  # the order as it is right after the transition


@pytest.mark.parametrize("source", [Source.RECONCILER, Source.CATCH_UP, Source.WEBHOOK])
async def test_every_path_stores_nul_spelled_out(pool: asyncpg.Pool, source: Source) -> None:
    # A status answer is a gateway's text as much as a webhook is: PostgreSQL refuses NUL in text and
    # jsonb, so the ledger itself stores the spelled-out copy, whoever calls it.
    await register(pool)
    failed = event(S.FAILED, reason="card\x00declined", payload={"note": "a\x00b", "k\x00": 1})
    outcome = await ledger.apply(pool, failed, source)
    assert outcome.kind == OutcomeKind.APPLIED
    row = await pool.fetchrow("select reason, payload from payment_events where id = $1", outcome.event_id)
    assert row is not None
    assert row["reason"] == "card\\u0000declined"
    assert row["payload"] == {"note": "a\\u0000b", "k\\u0000": 1}
    assert (await order_row(pool))["status"] == "failed"
