"""Coalesced status reads (service/order_reads.py): the same answers as reading alone, in fewer statements.

Against real PostgreSQL; every statement the reads send is counted with asyncpg's query logger.
"""

from __future__ import annotations

import asyncio

import asyncpg

from providers.base import PaymentStatus
from service import db, orders
from service.order_reads import OrderReads
from tests.e2e.harness import register
from tests.statements import counted_pool

ORDERS = 60


async def _registered(pool: asyncpg.Pool) -> list[str]:
    ids = [f"ord_{i:03}" for i in range(ORDERS)]
    for i, order_id in enumerate(ids):
        await register(pool, order_id, provider="momo", amount=10_000 + i, currency="VND")
    return ids


def _reads(logged: list[asyncpg.LoggedQuery]) -> list[list[str]]:
    """The ids each coalesced statement asked for."""
    return [list(q.args[0]) for q in logged if "any($1::text[])" in q.query]


async def test_concurrent_reads_get_what_reading_alone_gets_in_fewer_statements(
    database_url: str, pool: asyncpg.Pool
) -> None:
    ids = await _registered(pool)
    asked = [*ids, *ids[:20], "no_such_order", "no_such_order"]  # repeats and unknowns too
    async with counted_pool(database_url, 2) as (counted, logged):
        reads = OrderReads(counted, batch=64, parallel=2)
        before = len(logged)
        answers = await asyncio.gather(*(reads.get(i) for i in asked))
        await asyncio.sleep(0)
        statements = _reads(logged[before:])
    async with pool.acquire() as conn:
        alone = [await orders.get_order(conn, i) for i in asked]
    assert answers == alone
    assert answers[-1] is None
    assert answers[0] is not None
    # The first read goes alone; the rest of the 82 reads wait for it and go together (one batch is 64).
    assert 2 <= len(statements) <= 4, [len(s) for s in statements]
    assert sorted({i for s in statements for i in s}) == sorted(set(asked))


async def test_a_read_asked_while_a_statement_runs_waits_for_the_next_one(
    database_url: str, pool: asyncpg.Pool
) -> None:
    """Freshness: a read never joins a statement already sent, whose snapshot may predate its asking."""
    ids = await _registered(pool)
    async with counted_pool(database_url, 1) as (counted, logged):
        reads = OrderReads(counted, parallel=1)
        first = asyncio.create_task(reads.get(ids[0]))
        await asyncio.sleep(0)  # its statement is on its way
        async with pool.acquire() as conn:  # a change committed after the first was sent
            await conn.execute("update orders set metadata = '{\"seen\": 1}' where id = $1", ids[0])
        second = await reads.get(ids[0])
        await first  # sent before the change or after: either answer is one a read alone could give
        await asyncio.sleep(0)
        statements = _reads(logged)
    assert second is not None
    assert second.metadata == {"seen": 1}
    assert statements == [[ids[0]], [ids[0]]]


async def test_one_read_given_up_leaves_the_others_of_its_statement_answered(
    database_url: str, pool: asyncpg.Pool
) -> None:
    ids = await _registered(pool)
    async with counted_pool(database_url, 1) as (counted, _):
        reads = OrderReads(counted, parallel=1)
        tasks = [asyncio.create_task(reads.get(ids[1])) for _ in range(5)]
        await asyncio.sleep(0)
        tasks[2].cancel()  # its client went away
        done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [d.id for i, d in enumerate(done) if i != 2] == [ids[1]] * 4  # type: ignore[union-attr]


async def test_a_database_error_is_every_waiting_reads_answer_and_the_next_reads_go_on(
    database_url: str, pool: asyncpg.Pool
) -> None:
    ids = await _registered(pool)
    broken = await db.create_pool(database_url, min_size=0, max_size=1)
    await broken.close()  # acquiring from it fails as an unreachable database would
    reads = OrderReads(broken, parallel=1)
    answers = await asyncio.wait_for(
        asyncio.gather(*(reads.get(i) for i in ids[:10]), return_exceptions=True), timeout=10
    )
    assert all(isinstance(a, asyncpg.InterfaceError) for a in answers), answers
    assert reads._reads.in_flight == 0  # nothing left counted in flight: later reads are sent
    healthy = OrderReads(pool)
    assert (await healthy.get(ids[3])) is not None


async def test_a_read_alone_goes_at_once(database_url: str, pool: asyncpg.Pool) -> None:
    ids = await _registered(pool)
    async with counted_pool(database_url, 1) as (counted, logged):
        order = await OrderReads(counted).get(ids[5])
        await asyncio.sleep(0)
        statements = _reads(logged)
    assert order is not None
    assert order.status is PaymentStatus.PENDING
    assert order.amount == 10_005
    assert statements == [[ids[5]]]
