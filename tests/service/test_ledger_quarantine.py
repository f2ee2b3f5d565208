"""Registration, references and quarantine: events that arrive before their order are not lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from providers.base import OutcomeKind, PaymentEvent, PaymentStatus
from service import ledger
from service.ledger import locks
from service.model import NewOrder, NewReference, Source
from tests.service.test_ledger import T0, event, order_row, register

S = PaymentStatus


async def quarantined(pool: asyncpg.Pool) -> list[int]:
    return [r[0] for r in await pool.fetch("select id from payment_events where order_id is null order by id")]


async def test_unknown_order_waits_in_quarantine_then_applies_in_gateway_time_order(pool: asyncpg.Pool) -> None:
    # Delivered newest first: failed (t+2), processing (t+1), then a success for another reference.
    failed = await ledger.apply(pool, event(S.FAILED, at=T0 + timedelta(seconds=2)), Source.WEBHOOK)
    processing = await ledger.apply(pool, event(S.PROCESSING, at=T0 + timedelta(seconds=1)), Source.WEBHOOK)
    other = await ledger.apply(pool, event(S.SUCCEEDED, reference="ord-2"), Source.WEBHOOK)
    assert {failed.kind, processing.kind, other.kind} == {OutcomeKind.UNKNOWN_ORDER}
    assert failed.order_id is None
    assert await quarantined(pool) == [failed.event_id, processing.event_id, other.event_id]
    assert (await pool.fetchval("select outcome from payment_events where id = $1", failed.event_id)) == (
        "unknown_order"
    )

    registration = await register(pool)
    assert registration.created
    assert [(o.event_id, o.kind) for o in registration.replayed] == [
        (processing.event_id, OutcomeKind.APPLIED),
        (failed.event_id, OutcomeKind.APPLIED),
    ]
    assert registration.order.status is S.FAILED
    assert registration.order.version == 3
    steps = await pool.fetch("select from_status, to_status, event_id from transitions order by to_version")
    assert [tuple(s) for s in steps] == [
        ("pending", "processing", processing.event_id),
        ("processing", "failed", failed.event_id),
    ]
    assert await quarantined(pool) == [other.event_id]


async def test_quarantined_wrong_amount_is_checked_at_registration(pool: asyncpg.Pool) -> None:
    waiting = await ledger.apply(pool, event(S.SUCCEEDED, amount=1), Source.WEBHOOK)
    registration = await register(pool)
    assert [o.kind for o in registration.replayed] == [OutcomeKind.AMOUNT_MISMATCH]
    assert registration.order.status is S.PENDING
    kinds = await pool.fetch("select kind, event_id from anomalies")
    assert [tuple(k) for k in kinds] == [("amount_mismatch", waiting.event_id)]


async def test_register_again_is_idempotent_and_another_body_conflicts(pool: asyncpg.Pool) -> None:
    first = await register(pool, metadata={"cart": "c-1"})
    await ledger.apply(pool, event(S.SUCCEEDED), Source.WEBHOOK)
    again = await register(pool, metadata={"cart": "c-1"})
    assert not again.created
    assert again.order.status is S.SUCCEEDED  # the order as it is now
    assert again.order.created_at == first.order.created_at
    explicit = await register(pool, metadata={"cart": "c-1"}, reference="ord-1", account="default")
    assert not explicit.created  # the defaults spelled out are the same body
    with pytest.raises(ledger.OrderConflictError) as conflict:
        await register(pool, amount=1, metadata={"cart": "c-2"})
    assert conflict.value.extra["fields"] == ["amount", "metadata"]
    assert "amount, metadata" in conflict.value.detail


async def test_reference_of_another_order_is_refused_and_nothing_is_registered(pool: asyncpg.Pool) -> None:
    await register(pool)
    with pytest.raises(ledger.ReferenceTakenError) as taken:
        await register(pool, "ord-2", reference="ord-1")
    assert taken.value.extra["order_id"] == "ord-1"
    assert await pool.fetchval("select count(*) from orders where id = 'ord-2'") == 0


async def test_added_reference_finds_the_order_and_releases_its_events(pool: asyncpg.Pool) -> None:
    await register(pool)
    retry = await ledger.apply(pool, event(S.SUCCEEDED, reference="ord-1-retry"), Source.WEBHOOK)
    assert retry.kind is OutcomeKind.UNKNOWN_ORDER
    added = await ledger.add_reference(pool, "ord-1", NewReference(provider="vnpay", reference="ord-1-retry"))
    assert added.created
    assert [o.event_id for o in added.replayed] == [retry.event_id]
    assert added.order.status is S.SUCCEEDED
    assert [r.reference for r in added.order.references] == ["ord-1", "ord-1-retry"]
    assert added.order.updated_at > added.order.created_at
    later = await ledger.apply(pool, event(S.REFUNDED, reference="ord-1-retry"), Source.WEBHOOK)
    assert (later.kind, later.order_id) == (OutcomeKind.APPLIED, "ord-1")

    same = await ledger.add_reference(pool, "ord-1", NewReference(provider="vnpay", reference="ord-1-retry"))
    assert not same.created
    await register(pool, "ord-2")
    with pytest.raises(ledger.ReferenceTakenError):
        await ledger.add_reference(pool, "ord-2", NewReference(provider="vnpay", reference="ord-1-retry"))
    with pytest.raises(ledger.OrderNotFoundError):
        await ledger.add_reference(pool, "nope", NewReference(provider="vnpay", reference="x"))


def stripe(status: PaymentStatus, reference: str, order_id: str | None, **fields: Any) -> PaymentEvent:
    return event(status, provider="stripe", reference=reference, order_id=order_id, currency="USD", **fields)


async def test_claimed_order_id_matches_when_the_order_has_a_reference_of_that_gateway(pool: asyncpg.Pool) -> None:
    await register(pool, currency="USD", provider="stripe", reference="pi_first")
    # A second PaymentIntent for the same order: found by metadata.order_id, its reference joins.
    outcome = await ledger.apply(pool, stripe(S.SUCCEEDED, "pi_second", "ord-1"), Source.WEBHOOK)
    assert (outcome.kind, outcome.order_id) == (OutcomeKind.APPLIED, "ord-1")
    refs = await pool.fetch("select reference from order_references where order_id = 'ord-1' order by reference")
    assert [r[0] for r in refs] == ["pi_first", "pi_second"]
    # The charge.refunded event carries no order id: found through the joined reference.
    refund = await ledger.apply(pool, stripe(S.REFUNDED, "pi_second", None), Source.WEBHOOK)
    assert (refund.kind, refund.order_id) == (OutcomeKind.APPLIED, "ord-1")


async def test_claim_of_an_order_without_that_gateway_waits_for_a_reference(pool: asyncpg.Pool) -> None:
    await register(pool, currency="USD", provider="vnpay")
    claimed = await ledger.apply(pool, stripe(S.SUCCEEDED, "pi_x", "ord-1"), Source.WEBHOOK)
    assert claimed.kind is OutcomeKind.UNKNOWN_ORDER
    sibling = await ledger.apply(
        pool,
        stripe(S.PARTIALLY_REFUNDED, "pi_x", None, at=T0 + timedelta(minutes=1), refunded_amount=5),
        Source.WEBHOOK,
    )
    assert sibling.kind is OutcomeKind.UNKNOWN_ORDER
    # The customer switched to Stripe: the new attempt's reference releases the claimed event,
    # whose reference then releases its unclaimed sibling — in gateway time order.
    added = await ledger.add_reference(pool, "ord-1", NewReference(provider="stripe", reference="pi_other"))
    assert [(o.event_id, o.kind) for o in added.replayed] == [
        (claimed.event_id, OutcomeKind.APPLIED),
        (sibling.event_id, OutcomeKind.APPLIED),
    ]
    assert (added.order.status, added.order.refunded_amount) == (S.PARTIALLY_REFUNDED, 5)
    assert await quarantined(pool) == []


async def test_claimed_events_wait_for_the_order_registration(pool: asyncpg.Pool) -> None:
    claimed = await ledger.apply(pool, stripe(S.SUCCEEDED, "pi_x", "ord-9"), Source.WEBHOOK)
    assert claimed.kind is OutcomeKind.UNKNOWN_ORDER
    registration = await register(pool, "ord-9", currency="USD", provider="stripe", reference="pi_y")
    assert [o.event_id for o in registration.replayed] == [claimed.event_id]
    assert registration.order.status is S.SUCCEEDED


async def test_registration_race_never_strands_an_event(pool: asyncpg.Pool) -> None:
    """An event arriving while its order is being registered is applied, whoever wins."""
    for round_ in range(30):
        order_id = f"race-{round_}"
        new = NewOrder(id=order_id, amount=150_000, currency="VND", provider="vnpay")
        success = event(S.SUCCEEDED, reference=order_id)
        _, outcome = await asyncio.gather(ledger.register_order(pool, new), ledger.apply(pool, success, Source.WEBHOOK))
        assert outcome.kind in (OutcomeKind.APPLIED, OutcomeKind.UNKNOWN_ORDER)
        assert (await order_row(pool, order_id))["status"] == "succeeded", f"round {round_}: {outcome}"
    assert await quarantined(pool) == []


async def test_a_registration_in_progress_holds_back_an_event_for_its_reference(pool: asyncpg.Pool) -> None:
    """Deterministic half of the race: apply waits for the registration's lock, then finds the order."""
    async with pool.acquire() as conn, conn.transaction():
        await locks.lock(conn, locks.REFERENCE_LOCK, [locks.reference_key("vnpay", "default", "ord-1")])
        pending = asyncio.ensure_future(ledger.apply(pool, event(S.SUCCEEDED), Source.WEBHOOK))
        await asyncio.sleep(0.3)
        assert not pending.done(), "apply did not wait for the reference lock"
        await conn.execute(
            "insert into orders (id, amount, currency, provider, account, reference, request_hash)"
            " values ('ord-1', 150000, 'VND', 'vnpay', 'default', 'ord-1', 'x')"
        )
        await conn.execute(
            "insert into order_references (provider, account, reference, order_id)"
            " values ('vnpay', 'default', 'ord-1', 'ord-1')"
        )
    outcome = await pending
    assert (outcome.kind, outcome.order_id) == (OutcomeKind.APPLIED, "ord-1")
