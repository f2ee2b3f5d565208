"""Group commit (service/ledger/group_commit.py): events received at once are committed together, and each
hears what it would hear alone — against real PostgreSQL, every statement counted with asyncpg's query logger.
"""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest

from providers.base import OutcomeKind, PaymentStatus
from service import db, ledger
from service.failures import retry_can_cure
from service.ledger import GroupCommit
from service.model import RawDelivery, Source
from tests.service.test_ledger import event, order_row, register
from tests.service.test_ledger_quarantine import stripe
from tests.statements import counted_pool

S = PaymentStatus
ORDERS = 40


def _batches(logged: list[asyncpg.LoggedQuery]) -> list[int]:
    """The number of events each batch statement carried."""
    return [len(q.args[0]) for q in logged if "ledger_apply_batch(" in q.query]


def _alone(logged: list[asyncpg.LoggedQuery]) -> list[str]:
    """The dedupe keys of the events applied by themselves (`ledger.apply`, after their batch refused them)."""
    return [q.args[1] for q in logged if "from ledger_apply(" in q.query]


async def test_concurrent_events_are_committed_together_and_each_answered_as_alone(
    database_url: str, pool: asyncpg.Pool
) -> None:
    ids = [f"ord-{i}" for i in range(ORDERS)]
    for order_id in ids:
        await register(pool, order_id, reference=order_id)
    paid = [event(S.SUCCEEDED, reference=order_id, provider_payment_id=f"pay-{order_id}") for order_id in ids]
    raw = RawDelivery(body=b"vnp_TxnRef=x", headers={"content-type": "text/plain"}, query_string="a=1")
    async with counted_pool(database_url, 2) as (counted, logged):
        commit = GroupCommit(counted, batch=16)
        outcomes = await asyncio.gather(*(commit.apply(e, Source.WEBHOOK, raw=raw) for e in paid))
        # Redelivered, all at once: each hears its stored event's outcome.
        again = await asyncio.gather(*(commit.apply(e, Source.WEBHOOK) for e in paid))
        batches = _batches(logged)
    assert [o.kind for o in outcomes] == [OutcomeKind.APPLIED] * ORDERS
    assert [o.order_id for o in outcomes] == ids
    assert all(o.before and o.before.status is S.PENDING for o in outcomes)
    assert all(o.after and o.after.status is S.SUCCEEDED and o.after.version == 2 for o in outcomes)
    assert [(o.kind, o.stored, o.event_id) for o in again] == [
        (OutcomeKind.DUPLICATE, OutcomeKind.APPLIED, o.event_id) for o in outcomes
    ]
    # The first event goes alone; the rest wait for it and go in batches of at most 16.
    assert sum(batches) == 2 * ORDERS
    assert len(batches) <= 2 * (1 + -(-(ORDERS - 1) // 16)), batches
    assert max(batches) == 16
    for order_id in ids:
        row = await order_row(pool, order_id)
        assert (row["status"], row["version"]) == ("succeeded", 2)
    stored = await pool.fetchrow("select raw_body, raw_headers from payment_events where id = $1", outcomes[0].event_id)
    assert stored["raw_body"] == raw.body
    assert stored["raw_headers"] == {"content-type": "text/plain", ":query_string": "a=1"}
    assert await pool.fetchval("select count(*) from notifications where type = 'order.succeeded'") == ORDERS


async def test_one_delivery_twice_in_one_batch_is_applied_once(pool: asyncpg.Pool) -> None:
    await register(pool)
    paid = event(S.SUCCEEDED)
    commit = GroupCommit(pool)
    first, second = await asyncio.gather(*(commit.apply(paid, Source.WEBHOOK) for _ in range(2)))
    assert (first.kind, second.kind, second.stored) == (OutcomeKind.APPLIED, OutcomeKind.DUPLICATE, OutcomeKind.APPLIED)
    assert second.event_id == first.event_id
    assert await pool.fetchval("select count(*) from transitions where order_id = 'ord-1'") == 1


async def test_an_event_postgresql_refuses_fails_alone_and_the_rest_of_its_batch_commits(
    database_url: str, pool: asyncpg.Pool
) -> None:
    for order_id in ("ord-1", "ord-2", "ord-3"):
        await register(pool, order_id, reference=order_id)
    good = [event(S.SUCCEEDED, reference=r) for r in ("ord-1", "ord-3")]
    bad = event(S.SUCCEEDED, reference="ord-2", currency="VNDX")  # breaks the currency check
    async with counted_pool(database_url, 1) as (counted, logged):
        commit = GroupCommit(counted)
        blocker = asyncio.create_task(commit.apply(event(S.PENDING, reference="ord-1"), Source.WEBHOOK))
        await asyncio.sleep(0)  # in flight: the next three wait for it and go as one batch
        answers = await asyncio.gather(
            *(commit.apply(e, Source.WEBHOOK) for e in (good[0], bad, good[1])), return_exceptions=True
        )
        await blocker
        batches, alone = _batches(logged), _alone(logged)
    assert batches == [1, 3]
    assert alone == [bad.dedupe_key]  # the batch rolled back that event alone; the others committed in it
    assert isinstance(answers[1], asyncpg.CheckViolationError)
    assert not retry_can_cure(answers[1])  # ingest holds such a delivery (reason "unstorable"), never a 503
    assert [a.kind for a in (answers[0], answers[2])] == [OutcomeKind.APPLIED, OutcomeKind.APPLIED]  # type: ignore[union-attr]
    assert (await order_row(pool, "ord-2"))["status"] == "pending"
    assert await pool.fetchval("select count(*) from payment_events where reference = 'ord-2'") == 0


async def test_an_event_that_releases_quarantined_ones_takes_the_general_path(
    database_url: str, pool: asyncpg.Pool
) -> None:
    # A charge event waits in quarantine, claiming an order not registered yet; the next event under
    # its PaymentIntent is refused by ledger_apply (SLOW_PATH) inside the batch and applied alone.
    waiting = await ledger.apply(pool, stripe(S.PENDING, "pi_x", "ord-9"), Source.WEBHOOK)
    assert waiting.kind is OutcomeKind.UNKNOWN_ORDER
    await register(pool, "ord-1", reference="ord-1")
    charge = stripe(S.SUCCEEDED, "pi_x", None)
    async with counted_pool(database_url, 1) as (counted, logged):
        commit = GroupCommit(counted)
        blocker = asyncio.create_task(commit.apply(event(S.PENDING, reference="ord-1"), Source.WEBHOOK))
        await asyncio.sleep(0)
        sibling, other = await asyncio.gather(
            commit.apply(charge, Source.WEBHOOK),
            commit.apply(event(S.SUCCEEDED, reference="ord-1"), Source.WEBHOOK),
        )
        await blocker
        assert (_batches(logged), _alone(logged)) == ([1, 2], [charge.dedupe_key])
    assert sibling.kind is OutcomeKind.UNKNOWN_ORDER
    assert sibling.event_id is not None
    assert other.kind is OutcomeKind.APPLIED
    registration = await register(pool, "ord-9", currency="USD", provider="stripe", reference="pi_y")
    assert sorted(o.event_id for o in registration.replayed) == sorted([waiting.event_id, sibling.event_id])
    assert registration.order.status is S.SUCCEEDED


async def test_a_batch_that_cannot_reach_the_database_is_every_events_retry(
    database_url: str, pool: asyncpg.Pool
) -> None:
    await register(pool)
    broken = await db.create_pool(database_url, min_size=0, max_size=1)
    await broken.close()  # acquiring from it fails as an unreachable database would
    commit = GroupCommit(broken)
    answers = await asyncio.wait_for(
        asyncio.gather(*(commit.apply(event(S.SUCCEEDED), Source.WEBHOOK) for _ in range(5)), return_exceptions=True),
        timeout=10,
    )
    assert all(isinstance(a, asyncpg.InterfaceError) and retry_can_cure(a) for a in answers), answers
    assert await pool.fetchval("select count(*) from payment_events") == 0


@pytest.mark.parametrize("size", [1, 7])
async def test_the_batch_statement_and_apply_agree_on_every_outcome(pool: asyncpg.Pool, size: int) -> None:
    """The same story, told through group commit and through `ledger.apply`, leaves the same ledger."""
    story = [
        event(S.PENDING),
        event(S.SUCCEEDED),
        event(S.SUCCEEDED, provider_payment_id="pay-2"),  # a second payment: double_payment
        event(S.PARTIALLY_REFUNDED, refunded_amount=50_000),
        event(S.FAILED),  # stale after success
        event(S.SUCCEEDED, reference="nobody"),  # unknown order
        event(S.SUCCEEDED, amount=1),  # amount mismatch
    ]
    results = {}
    for name in ("alone", "grouped"):
        order_id = f"ord-{name}"
        await register(pool, order_id, reference=order_id)
        events = [
            msgspec.structs.replace(
                e, dedupe_key=f"{name}-{i}", reference="nobody" if e.reference == "nobody" else order_id
            )
            for i, e in enumerate(story)
        ]
        commit = GroupCommit(pool, batch=size)
        outcomes = []
        for e in events:  # in order: the rules depend on it
            outcomes.append(
                await ledger.apply(pool, e, Source.WEBHOOK)
                if name == "alone"
                else await commit.apply(e, Source.WEBHOOK)
            )
        row = await order_row(pool, order_id)
        results[name] = (
            [(o.kind, o.anomalies, o.before and o.before.version, o.after and o.after.status) for o in outcomes],
            (row["status"], row["version"], row["refunded_amount"]),
        )
    assert results["grouped"] == results["alone"]


async def test_batches_take_their_events_in_reference_order_so_two_processes_never_deadlock(
    database_url: str, pool: asyncpg.Pool
) -> None:
    """Two processes, each with a batch for the same two orders in opposite arrival order: sent in
    reference order, the second batch waits for the first instead of each waiting on the other
    (which PostgreSQL would break after deadlock_timeout, sending one event back to be applied alone)."""
    orders = [f"ord-{name}" for name in ("a", "b", "c", "d")]
    for order_id in orders:
        await register(pool, order_id, reference=order_id)
    arrivals = [
        [event(S.SUCCEEDED, reference=r) for r in reversed(orders)],
        [event(S.PENDING, reference=r) for r in orders],
    ]
    async with counted_pool(database_url, 1) as (one, logged_one), counted_pool(database_url, 1) as (two, logged_two):
        commits = [GroupCommit(one), GroupCommit(two)]
        blockers = [asyncio.create_task(c.apply(event(S.PENDING, reference="nobody"), Source.WEBHOOK)) for c in commits]
        await asyncio.sleep(0)  # in flight: each process's four events wait and go as one batch
        answers = await asyncio.gather(
            *(commits[p].apply(e, Source.WEBHOOK) for p in (0, 1) for e in arrivals[p]), return_exceptions=True
        )
        await asyncio.gather(*blockers)
        sent = [
            [list(q.args[3]) for q in logged if "ledger_apply_batch(" in q.query] for logged in (logged_one, logged_two)
        ]
        alone = _alone(logged_one) + _alone(logged_two)
    assert sent == [[["nobody"], orders], [["nobody"], orders]]  # each batch in reference order
    assert alone == []  # no event was sent back: no deadlock was broken
    # Each caller got its own event's outcome, whatever the order it was sent in.
    assert [a.order_id for a in answers] == [*reversed(orders), *orders]  # type: ignore[union-attr]
    for order_id in orders:
        assert (await order_row(pool, order_id))["status"] == "succeeded"
