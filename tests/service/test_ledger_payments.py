"""Refunds per payment (issue 10 item 1, DESIGN.md §3), against real PostgreSQL.

Each test is one defect the issue describes: before refunds were tracked per payment, a
refund of the duplicate payment refunded the order, a refund of a payment the order never saw
refunded it silently, and refunds of two payments were mixed into one amount.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from providers.base import OutcomeKind, PaymentStatus
from service import ledger, orders
from service.model import Source
from tests.service.test_ledger import T0, event, order_row, register

S = PaymentStatus
AMOUNT = 150_000


async def payments(pool: asyncpg.Pool, order_id: str = "ord-1") -> dict[str, tuple[str, int]]:
    async with pool.acquire() as conn:
        order = await ledger.get_order(conn, order_id)
    assert order is not None
    return {p.provider_payment_id: (p.status, p.refunded_amount) for p in order.payments}


async def open_kinds(pool: asyncpg.Pool) -> list[str]:
    return [r[0] for r in await pool.fetch("select kind from anomalies where status = 'open' order by id")]


async def test_refunding_the_duplicate_payment_leaves_the_order_paid_and_settles_the_double_payment(
    pool: asyncpg.Pool,
) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED, provider_payment_id="A"), Source.WEBHOOK)
    double = await ledger.apply(
        pool, event(S.SUCCEEDED, at=T0 + timedelta(minutes=1), provider_payment_id="B"), Source.WEBHOOK
    )
    assert double.anomalies == ["double_payment"]
    assert await open_kinds(pool) == ["double_payment"]

    # Ops do what the anomaly asks: refund payment B, in full.
    refund = event(S.REFUNDED, at=T0 + timedelta(hours=1), provider_payment_id="B", refunded_amount=AMOUNT)
    outcome = await ledger.apply(pool, refund, Source.WEBHOOK)

    assert outcome.kind is OutcomeKind.STALE  # the order did not move
    order = await order_row(pool)
    assert (order["status"], order["refunded_amount"], order["provider_payment_id"]) == ("succeeded", 0, "A")
    assert await payments(pool) == {"A": ("succeeded", 0), "B": ("refunded", AMOUNT)}
    resolved = await pool.fetchrow("select status, resolved_at from anomalies where kind = 'double_payment'")
    assert resolved is not None
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] is not None
    assert await open_kinds(pool) == []


async def test_partial_refund_of_the_duplicate_keeps_the_double_payment_open(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED, provider_payment_id="A"), Source.WEBHOOK)
    await ledger.apply(pool, event(S.SUCCEEDED, at=T0 + timedelta(minutes=1), provider_payment_id="B"), Source.WEBHOOK)
    partial = event(S.PARTIALLY_REFUNDED, at=T0 + timedelta(hours=1), provider_payment_id="B", refunded_amount=50_000)
    await ledger.apply(pool, partial, Source.WEBHOOK)
    assert (await order_row(pool))["status"] == "succeeded"
    assert await payments(pool) == {"A": ("succeeded", 0), "B": ("partially_refunded", 50_000)}
    assert await open_kinds(pool) == ["double_payment"]  # B still holds 100 000 of the customer's money


async def test_refund_of_a_payment_the_order_never_saw_changes_nothing_and_is_an_anomaly(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED, provider_payment_id="A"), Source.WEBHOOK)
    stranger = event(S.REFUNDED, at=T0 + timedelta(hours=1), provider_payment_id="pi_other", refunded_amount=AMOUNT)
    outcome = await ledger.apply(pool, stranger, Source.WEBHOOK)

    assert outcome.kind is OutcomeKind.ANOMALY
    assert outcome.anomalies == ["refund_of_unknown_payment"]
    order = await order_row(pool)
    assert (order["status"], order["refunded_amount"], order["version"]) == ("succeeded", 0, 2)
    assert await payments(pool) == {"A": ("succeeded", 0), "pi_other": ("refunded", AMOUNT)}
    detail = await pool.fetchval("select detail from anomalies where kind = 'refund_of_unknown_payment'")
    assert detail == {"paid_by": "A", "provider_payment_id": "pi_other", "refunded_amount": AMOUNT}


async def test_refunds_of_two_payments_are_never_mixed(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED, provider_payment_id="A"), Source.WEBHOOK)
    await ledger.apply(pool, event(S.SUCCEEDED, at=T0 + timedelta(minutes=1), provider_payment_id="B"), Source.WEBHOOK)
    later = T0 + timedelta(hours=1)
    await ledger.apply(
        pool, event(S.PARTIALLY_REFUNDED, at=later, provider_payment_id="A", refunded_amount=30_000), Source.WEBHOOK
    )
    # B's cumulative refund is larger than A's: it must not become the order's refunded amount.
    await ledger.apply(
        pool,
        event(S.PARTIALLY_REFUNDED, at=later + timedelta(minutes=1), provider_payment_id="B", refunded_amount=90_000),
        Source.WEBHOOK,
    )
    order = await order_row(pool)
    assert (order["status"], order["refunded_amount"]) == ("partially_refunded", 30_000)
    assert await payments(pool) == {"A": ("partially_refunded", 30_000), "B": ("partially_refunded", 90_000)}


async def test_refund_of_the_paying_payment_still_moves_the_order(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED, provider_payment_id="A"), Source.WEBHOOK)
    refund = event(S.REFUNDED, at=T0 + timedelta(hours=1), provider_payment_id="A", refunded_amount=AMOUNT)
    assert (await ledger.apply(pool, refund, Source.WEBHOOK)).kind is OutcomeKind.APPLIED
    order = await order_row(pool)
    assert (order["status"], order["refunded_amount"]) == ("refunded", AMOUNT)
    assert await payments(pool) == {"A": ("refunded", AMOUNT)}


async def test_late_news_of_an_earlier_payment_makes_it_the_paying_one(pool: asyncpg.Pool) -> None:
    """B's refund comes first (so B seems to pay, refunded); then A's success, captured before B's."""
    await register(pool)
    refund_b = event(S.REFUNDED, at=T0 + timedelta(hours=1), provider_payment_id="B", refunded_amount=AMOUNT)
    assert (await ledger.apply(pool, refund_b, Source.WEBHOOK)).anomalies == ["missed_success"]
    assert (await order_row(pool))["status"] == "refunded"

    outcome = await ledger.apply(pool, event(S.SUCCEEDED, provider_payment_id="A"), Source.WEBHOOK)
    assert outcome.kind is OutcomeKind.APPLIED
    assert outcome.anomalies == []  # the duplicate B is already refunded in full
    order = await order_row(pool)
    assert (order["status"], order["refunded_amount"], order["provider_payment_id"]) == ("succeeded", 0, "A")
    assert await payments(pool) == {"B": ("refunded", AMOUNT), "A": ("succeeded", 0)}


async def test_the_audit_trail_names_the_payment_of_each_step(pool: asyncpg.Pool) -> None:
    await register(pool)
    await ledger.apply(pool, event(S.SUCCEEDED, provider_payment_id="A"), Source.WEBHOOK)
    refund = event(S.PARTIALLY_REFUNDED, at=T0 + timedelta(hours=1), provider_payment_id="A", refunded_amount=10)
    await ledger.apply(pool, refund, Source.WEBHOOK)
    async with pool.acquire() as conn:
        events, steps = await orders.order_events(conn, "ord-1")
    assert [(s.to_status, s.provider_payment_id, s.refunded_amount) for s in steps] == [
        (S.SUCCEEDED, "A", 0),
        (S.PARTIALLY_REFUNDED, "A", 10),
    ]
    assert [e.provider_payment_id for e in events] == ["A", "A"]
