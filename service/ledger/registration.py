"""Registering orders and their gateway references; each releases the events that waited for it."""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import msgspec

from service.db import Conn
from service.ledger.apply_event import count_outcomes, insert_reference, replay
from service.ledger.locks import ORDER_LOCK, REFERENCE_LOCK, lock, reference_key
from service.model import NewOrder, NewReference, Order, Outcome
from service.orders import get_order as _get_order
from service.orders import reference_owner
from service.problems import ConflictError, NotFoundError


class OrderConflictError(ConflictError):
    """The same order id registered with a different body."""


class ReferenceTakenError(ConflictError):
    """A gateway reference already belongs to another order."""


class OrderNotFoundError(NotFoundError):
    pass


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    order: Order
    created: bool  # False: the same registration again (idempotent)
    replayed: list[Outcome] = []  # quarantined events applied by this registration


_FIELDS = ("amount", "currency", "provider", "account", "reference", "provider_data", "metadata")


def request_hash(new: NewOrder) -> str:
    return hashlib.sha256(msgspec.json.encode(new.normalized(), order="sorted")).hexdigest()


async def register_order(pool: asyncpg.Pool, new: NewOrder) -> Registration:
    """Register an expected payment; the same body again is a no-op, another body a conflict."""
    new = new.normalized()
    assert new.reference is not None
    async with pool.acquire() as conn, conn.transaction():
        await lock(conn, REFERENCE_LOCK, [reference_key(new.provider, new.account, new.reference)])
        await lock(conn, ORDER_LOCK, [new.id])
        inserted = await conn.fetchval(
            """insert into orders (id, amount, currency, provider, account, reference, provider_data, metadata,
                                   request_hash)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (id) do nothing returning id""",
            new.id,
            new.amount,
            new.currency,
            new.provider,
            new.account,
            new.reference,
            new.provider_data,
            new.metadata,
            request_hash(new),
        )
        if inserted is None:
            existing = await _get_order(conn, new.id)
            assert existing is not None
            differing = [f for f in _FIELDS if getattr(existing, f) != getattr(new, f)]
            if differing:
                raise OrderConflictError(
                    f"order {new.id} is registered with a different {', '.join(differing)}", fields=differing
                )
            return Registration(order=existing, created=False)
        await _add_reference(conn, new.id, new.provider, new.account, new.reference, new.provider_data)
        done = await replay(conn, new.id)
        order = await _get_order(conn, new.id)
    count_outcomes(done)
    assert order is not None
    return Registration(order=order, created=True, replayed=[a.outcome for a in done])


async def add_reference(pool: asyncpg.Pool, order_id: str, ref: NewReference) -> Registration:
    """Add a payment attempt's gateway reference to an order (idempotent for the same order)."""
    async with pool.acquire() as conn, conn.transaction():
        await lock(conn, REFERENCE_LOCK, [reference_key(ref.provider, ref.account, ref.reference)])
        await lock(conn, ORDER_LOCK, [order_id])
        if await conn.fetchval("select 1 from orders where id = $1 for update", order_id) is None:
            raise OrderNotFoundError(f"no order {order_id}")
        owner = await reference_owner(conn, ref.provider, ref.account, ref.reference)
        if owner == order_id:
            order = await _get_order(conn, order_id)
            assert order is not None
            return Registration(order=order, created=False)
        await _add_reference(conn, order_id, ref.provider, ref.account, ref.reference, ref.provider_data)
        await conn.execute("update orders set updated_at = now() where id = $1", order_id)
        done = await replay(conn, order_id)
        order = await _get_order(conn, order_id)
    count_outcomes(done)
    assert order is not None
    return Registration(order=order, created=True, replayed=[a.outcome for a in done])


async def _add_reference(
    conn: Conn, order_id: str, provider: str, account: str, reference: str, data: dict[str, Any]
) -> None:
    if not await insert_reference(conn, order_id, provider, account, reference, data):
        owner = await reference_owner(conn, provider, account, reference)
        raise ReferenceTakenError(
            f"{provider} reference {reference!r} (account {account!r}) belongs to order {owner}",
            field="reference",
            order_id=owner,
        )
