"""The ledger under contention: 200 concurrent applies from 20 connections."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import asyncpg

from providers.base import OutcomeKind, PaymentStatus
from service import ledger
from service.model import NewOrder, Source
from tests.service.test_ledger_properties import (
    AMOUNT,
    assert_trail_moves_forward,
    final_state,
    in_time_order,
    make_event,
    of_the_set,
    wide_pool,
)

__all__ = ["wide_pool"]  # fixture

S = PaymentStatus


async def test_the_same_event_200_times_applies_once(wide_pool: asyncpg.Pool) -> None:
    await ledger.register_order(wide_pool, NewOrder(id="o", amount=AMOUNT, currency="VND", provider="momo"))
    success = make_event("o", "success", S.SUCCEEDED, 1, None, AMOUNT)
    outcomes = await asyncio.gather(*(ledger.apply(wide_pool, success, Source.WEBHOOK) for _ in range(200)))
    assert Counter(o.kind for o in outcomes) == {OutcomeKind.APPLIED: 1, OutcomeKind.DUPLICATE: 199}
    assert await wide_pool.fetchval("select count(*) from transitions") == 1
    assert await wide_pool.fetchval("select count(*) from payment_events") == 1
    assert (await final_state(wide_pool, "o"))[:2] == ("succeeded", 0)


async def test_200_different_events_for_one_order_lose_nothing(wide_pool: asyncpg.Pool) -> None:
    await ledger.register_order(wide_pool, NewOrder(id="o", amount=AMOUNT, currency="VND", provider="momo"))
    rng = random.Random(20261124)
    events = []
    for n in range(200):
        status = rng.choice(list(S))
        refunded = rng.randrange(0, AMOUNT - 1) if status.layer == 4 else None  # partial: growth must win
        events.append(make_event("o", str(n), status, rng.randrange(0, 60), refunded, AMOUNT))
    outcomes = await asyncio.gather(*(ledger.apply(wide_pool, e, Source.WEBHOOK) for e in events))
    assert OutcomeKind.DUPLICATE not in {o.kind for o in outcomes}

    status, refunded, payment, _, version = await final_state(wide_pool, "o")
    largest = max(e.refunded_amount or 0 for e in events if e.status.layer == 4)
    assert refunded == largest, "a refund amount was lost"
    assert (S(status), refunded) == of_the_set(events)
    reference = in_time_order(events)
    assert (S(status), refunded, payment) == (
        reference.status,
        reference.refunded_amount,
        reference.provider_payment_id,
    )
    applied = sum(o.kind is OutcomeKind.APPLIED for o in outcomes)
    assert version == applied + 1
    await assert_trail_moves_forward(wide_pool, "o", applied)
    # every event is stored with the outcome apply returned
    stored = dict(await wide_pool.fetch("select id, outcome from payment_events"))
    assert {o.event_id: str(o.kind) for o in outcomes} == stored


async def test_concurrent_registrations_and_events_across_orders(wide_pool: asyncpg.Pool) -> None:
    """Events racing their orders' registrations (and each other) all end up applied."""
    rng = random.Random(7)
    work = []
    for n in range(40):
        order = NewOrder(id=f"r{n}", amount=AMOUNT, currency="VND", provider="momo")
        work.append(ledger.register_order(wide_pool, order))
        work += [ledger.apply(wide_pool, make_event(f"r{n}", "ok", S.SUCCEEDED, 2, None, AMOUNT), Source.WEBHOOK)]
        work += [ledger.apply(wide_pool, make_event(f"r{n}", "try", S.FAILED, 1, None, AMOUNT), Source.WEBHOOK)]
    rng.shuffle(work)
    await asyncio.gather(*work)
    rows = await wide_pool.fetch("select status, count(*) from orders group by status")
    assert {r[0]: r[1] for r in rows} == {"succeeded": 40}
    assert await wide_pool.fetchval("select count(*) from payment_events where order_id is null") == 0
    assert await wide_pool.fetchval("select count(*) from transitions where to_status = 'succeeded'") == 40


async def test_retry_cycle_ends_on_the_newest_news_whatever_the_interleaving(wide_pool: asyncpg.Pool) -> None:
    await ledger.register_order(wide_pool, NewOrder(id="o", amount=AMOUNT, currency="VND", provider="momo"))
    cycle = [S.PROCESSING, S.FAILED, S.AUTHORIZED]
    events = [make_event("o", str(n), cycle[n % 3], n, None, AMOUNT) for n in range(60)]
    random.Random(3).shuffle(events)
    await asyncio.gather(*(ledger.apply(wide_pool, e, Source.WEBHOOK) for e in events))
    status, _, _, status_at, _ = await final_state(wide_pool, "o")
    newest = events[0]
    for e in events:
        assert e.occurred_at is not None
        assert newest.occurred_at is not None
        if e.occurred_at > newest.occurred_at:
            newest = e
    assert (status, status_at) == (newest.status, newest.occurred_at)
