"""The ledger's confluence, proven against PostgreSQL (DESIGN.md §3).

For any set of events for one order — any delivery order, duplicates, concurrency — the final
order is the one of applying them in gateway time order, which is also a plain function of
the set (highest layer; in layer 1 the newest news; in layer 4 the largest refund), and every
step of the audit trail moves forward.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.base import OutcomeKind, PaymentEvent, PaymentStatus
from service import db, ledger
from service.model import NewOrder, Source
from service.transitions import TIE_RANK, Facts, News, Payment, decide

S = PaymentStatus
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
AMOUNT = 1000
_orders = itertools.count()


@pytest.fixture
async def wide_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """Enough connections for real contention."""
    pool = await db.create_pool(database_url, min_size=2, max_size=20)
    try:
        yield pool
    finally:
        await pool.close()


def make_event(
    order_id: str, key: str, status: PaymentStatus, second: int, refunded: int | None, amount: int
) -> PaymentEvent:
    paid = status.is_paid
    return PaymentEvent(
        provider="momo",
        dedupe_key=f"{order_id}:{key}",
        account="default",
        reference=order_id,
        status=status,
        amount=amount,
        currency="VND",
        provider_payment_id="trans-1" if paid else None,
        refunded_amount=refunded if status.layer == 4 else None,
        occurred_at=T0 + timedelta(seconds=second),
    )


def _news(event: PaymentEvent) -> News:
    assert event.occurred_at is not None
    return News(
        status=event.status,
        at=event.occurred_at,
        amount=event.amount,
        currency=event.currency,
        refunded_amount=event.refunded_amount,
        provider_payment_id=event.provider_payment_id,
    )


def in_time_order(events: Sequence[PaymentEvent]) -> Facts:
    """The reference: the rules folded over the events in gateway time order."""
    facts = Facts(amount=AMOUNT, currency="VND")
    unique = {e.dedupe_key: e for e in events}.values()
    for e in sorted(unique, key=lambda e: (e.occurred_at, e.status.layer, TIE_RANK.get(e.status, 0))):
        facts = decide(facts, _news(e)).after
    return facts


def of_the_set(events: Sequence[PaymentEvent]) -> tuple[PaymentStatus, int]:
    """The same result as a function of the set: highest layer, newest in layer 1, largest refund."""
    counted = [e for e in events if e.amount == AMOUNT and e.status is not S.PENDING]
    if not counted:
        return S.PENDING, 0
    top = max(e.status.layer for e in counted)
    if top == 1:
        newest = max(counted, key=lambda e: (e.occurred_at, TIE_RANK[e.status]))
        return newest.status, 0
    if top < 4:
        return {2: S.CANCELED, 3: S.SUCCEEDED}[top], 0
    claims = [
        e.refunded_amount if e.refunded_amount is not None else (AMOUNT if e.status is S.REFUNDED else 0)
        for e in counted
        if e.status.layer == 4
    ]
    refunded = min(max(claims), AMOUNT)
    return (S.REFUNDED if refunded >= AMOUNT else S.PARTIALLY_REFUNDED), refunded


async def final_state(pool: asyncpg.Pool, order_id: str) -> tuple[str, int, str | None, datetime | None, int]:
    row = await pool.fetchrow(
        "select status, refunded_amount, provider_payment_id, status_at, version from orders where id = $1", order_id
    )
    assert row is not None
    status_at = row["status_at"] if S(row["status"]).layer == 1 else None  # time decides only in layer 1
    return row["status"], row["refunded_amount"], row["provider_payment_id"], status_at, row["version"]


async def assert_trail_moves_forward(pool: asyncpg.Pool, order_id: str, applied: int) -> None:
    steps = await pool.fetch(
        """select t.from_status, t.to_status, t.from_version, t.to_version, t.refunded_amount,
                  coalesce(e.occurred_at, e.received_at) as at
           from transitions t join payment_events e on e.id = t.event_id
           where t.order_id = $1 order by t.to_version""",
        order_id,
    )
    assert len(steps) == applied, "one transition row per applied step"
    status, refunded, status_at, version = S.PENDING, 0, None, 1
    for step in steps:
        assert (S(step["from_status"]), step["from_version"]) == (status, version)
        before, after = status.layer, S(step["to_status"]).layer
        if after == before == 1:
            assert status_at is not None
            newer = (step["at"], TIE_RANK[S(step["to_status"])]) > (status_at, TIE_RANK[status])
            assert newer, f"layer-1 step to older news: {dict(step)}"
        elif after == before == 4:
            assert step["refunded_amount"] > refunded, f"layer-4 step without a larger refund: {dict(step)}"
        else:
            assert after > before, f"backward or sideways step: {dict(step)}"
        status, refunded, status_at, version = (
            S(step["to_status"]),
            step["refunded_amount"],
            step["at"],
            step["to_version"],
        )


async def new_order(pool: asyncpg.Pool, prefix: str) -> str:
    order_id = f"{prefix}-{next(_orders)}"
    await ledger.register_order(pool, NewOrder(id=order_id, amount=AMOUNT, currency="VND", provider="momo"))
    return order_id


spec = st.tuples(
    st.sampled_from(list(S)),
    st.integers(min_value=0, max_value=6),  # seconds after T0: collisions exercise the tie rule
    st.one_of(st.none(), st.integers(min_value=0, max_value=AMOUNT + 200)),  # cumulative refund
    st.sampled_from([AMOUNT] * 9 + [AMOUNT - 1]),  # now and then the wrong amount
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(spec, min_size=1, max_size=10),
    redeliver=st.lists(st.integers(min_value=0, max_value=9), max_size=5),
    shuffle_seed=st.integers(min_value=0, max_value=2**32),
    concurrent=st.booleans(),
)
async def test_final_state_is_a_function_of_the_event_set(
    wide_pool: asyncpg.Pool,
    specs: list[tuple[PaymentStatus, int, int | None, int]],
    redeliver: list[int],
    shuffle_seed: int,
    concurrent: bool,
) -> None:
    shuffled, ordered = await new_order(wide_pool, "shuffled"), await new_order(wide_pool, "ordered")
    events = [make_event(shuffled, str(i), *s) for i, s in enumerate(specs)]
    deliveries = events + [events[i % len(events)] for i in redeliver]
    random.Random(shuffle_seed).shuffle(deliveries)
    if concurrent:
        outcomes = await asyncio.gather(*(ledger.apply(wide_pool, e, Source.WEBHOOK) for e in deliveries))
    else:
        outcomes = [await ledger.apply(wide_pool, e, Source.WEBHOOK) for e in deliveries]
    assert sum(o.kind is OutcomeKind.DUPLICATE for o in outcomes) == len(redeliver)

    # The same events, one at a time in gateway time order, into a twin order.
    twins = [make_event(ordered, str(i), *s) for i, s in enumerate(specs)]
    for e in sorted(twins, key=lambda e: (e.occurred_at, e.status.layer, TIE_RANK.get(e.status, 0))):
        await ledger.apply(wide_pool, e, Source.WEBHOOK)

    status, refunded, payment, status_at, _ = await final_state(wide_pool, shuffled)
    assert (status, refunded, payment, status_at) == (await final_state(wide_pool, ordered))[:4]
    reference = in_time_order(events)
    assert (S(status), refunded, payment) == (
        reference.status,
        reference.refunded_amount,
        reference.provider_payment_id,
    )
    assert (S(status), refunded) == of_the_set(events)
    if status_at is not None:
        assert status_at == reference.status_at
    applied = sum(o.kind is OutcomeKind.APPLIED for o in outcomes)
    await assert_trail_moves_forward(wide_pool, shuffled, applied)


# --- two payments per order (issue 10): refunds per payment, the paying payment by gateway time ---

PAYMENTS = ("A", "B")


def payment_event(
    order_id: str, key: str, payment: str, status: PaymentStatus, second: int, refunded: int | None
) -> PaymentEvent:
    return PaymentEvent(
        provider="momo",
        dedupe_key=f"{order_id}:{key}",
        account="default",
        reference=order_id,
        status=status,
        amount=AMOUNT,
        currency="VND",
        provider_payment_id=payment,
        refunded_amount=refunded if status.layer == 4 else None,
        occurred_at=T0 + timedelta(seconds=second),
    )


def gateway_order(e: PaymentEvent) -> tuple[object, ...]:
    return (e.occurred_at, e.status.layer, TIE_RANK.get(e.status, 0), e.provider_payment_id)


def fold_with_payments(events: Sequence[PaymentEvent]) -> tuple[Facts, dict[str, Payment]]:
    """The reference: `decide` folded over the events in gateway time order, keeping each payment."""
    facts, payments = Facts(amount=AMOUNT, currency="VND"), dict[str, Payment]()
    for e in sorted({e.dedupe_key: e for e in events}.values(), key=gateway_order):
        assert e.provider_payment_id is not None
        known = msgspec.structs.replace(
            facts,
            payment=payments.get(e.provider_payment_id),
            paying=payments.get(facts.provider_payment_id or ""),
        )
        decision = decide(known, _news(e))
        facts = msgspec.structs.replace(decision.after, payment=None, paying=None)
        if decision.payment is not None:
            payments[e.provider_payment_id] = decision.payment
    return facts, payments


async def stored_payments(pool: asyncpg.Pool, order_id: str) -> dict[str, tuple[str, int]]:
    rows = await pool.fetch(
        "select provider_payment_id, status, refunded_amount from order_payments where order_id = $1", order_id
    )
    return {r[0]: (r[1], r[2]) for r in rows}


payment_spec = st.tuples(
    st.sampled_from(PAYMENTS),
    st.sampled_from([S.SUCCEEDED, S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED, S.FAILED, S.PROCESSING]),
    st.integers(min_value=0, max_value=8),
    st.one_of(st.none(), st.integers(min_value=0, max_value=AMOUNT + 200)),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(payment_spec, min_size=1, max_size=10),
    redeliver=st.lists(st.integers(min_value=0, max_value=9), max_size=5),
    shuffle_seed=st.integers(min_value=0, max_value=2**32),
    concurrent=st.booleans(),
)
async def test_two_payments_final_state_and_refunds_per_payment_are_those_of_gateway_time_order(
    wide_pool: asyncpg.Pool,
    specs: list[tuple[str, PaymentStatus, int, int | None]],
    redeliver: list[int],
    shuffle_seed: int,
    concurrent: bool,
) -> None:
    shuffled, ordered = await new_order(wide_pool, "two-shuffled"), await new_order(wide_pool, "two-ordered")
    events = [payment_event(shuffled, str(i), *s) for i, s in enumerate(specs)]
    deliveries = events + [events[i % len(events)] for i in redeliver]
    random.Random(shuffle_seed).shuffle(deliveries)
    if concurrent:
        outcomes = await asyncio.gather(*(ledger.apply(wide_pool, e, Source.WEBHOOK) for e in deliveries))
    else:
        outcomes = [await ledger.apply(wide_pool, e, Source.WEBHOOK) for e in deliveries]
    assert sum(o.kind is OutcomeKind.DUPLICATE for o in outcomes) == len(redeliver)

    twins = [payment_event(ordered, str(i), *s) for i, s in enumerate(specs)]
    for e in sorted(twins, key=gateway_order):
        await ledger.apply(wide_pool, e, Source.WEBHOOK)

    status, refunded, payment, status_at, version = await final_state(wide_pool, shuffled)
    assert (status, refunded, payment, status_at) == (await final_state(wide_pool, ordered))[:4]
    assert await stored_payments(wide_pool, shuffled) == await stored_payments(wide_pool, ordered)

    reference, payments = fold_with_payments(events)
    assert (S(status), refunded, payment) == (
        reference.status,
        reference.refunded_amount,
        reference.provider_payment_id,
    )
    assert await stored_payments(wide_pool, shuffled) == {
        k: (str(p.status), p.refunded_amount) for k, p in payments.items()
    }
    # Each payment's refund is its own: the largest it was refunded, capped at the amount.
    for name, (_, paid_back) in (await stored_payments(wide_pool, shuffled)).items():
        claims = [
            e.refunded_amount if e.refunded_amount is not None else (AMOUNT if e.status is S.REFUNDED else 0)
            for e in events
            if e.provider_payment_id == name and e.status.layer == 4
        ]
        assert paid_back == min(max(claims, default=0), AMOUNT)
    applied = sum(o.kind is OutcomeKind.APPLIED for o in outcomes)
    assert version == 1 + applied, "one version (and one transition) per applied step"
    steps = await wide_pool.fetchval("select count(*) from transitions where order_id = $1", shuffled)
    assert steps == applied
