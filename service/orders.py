"""Reading orders, their audit trail and anomalies: the queries behind the REST API.

Writes live in `service.ledger` (the only writer of `orders`); everything here is a plain read.
Lists use keyset pagination on the index order ((updated_at, id) for orders, (created_at, id)
for anomalies; service/pages.py), so a page costs the same at any depth. `updated_at`
is its transaction's start time (`now()`), so a change may commit with a time slightly before
one already seen: a backend polling with `updated_since` should overlap by a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from providers.base import PaymentStatus
from service.db import Conn
from service.model import Failure, Order, OrderPayment, OrderReference, Transition
from service.pages import cut, decode_cursor

T = TypeVar("T")

_ORDER = """
select o.id, o.amount, o.currency, o.provider, o.account, o.reference, o.provider_data, o.metadata, o.status,
       o.refunded_amount, o.provider_payment_id, o.version, o.created_at, o.updated_at, o.paid_at,
       coalesce((select array_agg(row(r.provider, r.account, r.reference, r.provider_data, r.added_at)
                                  order by r.added_at, r.provider, r.account, r.reference)
                 from order_references r where r.order_id = o.id), '{}') as refs,
       (select row(e.status, e.reason, coalesce(e.occurred_at, e.received_at), e.id)
        from payment_events e
        where e.order_id = o.id and e.status in ('failed', 'canceled') and e.reason is not null
        order by coalesce(e.occurred_at, e.received_at) desc, e.id desc limit 1) as failure,
       coalesce((select array_agg(row(p.provider_payment_id, p.provider, p.account, p.amount, p.currency, p.status,
                                      p.refunded_amount, p.paid_at, p.first_seen_at, p.updated_at)
                                  order by p.first_seen_at, p.provider_payment_id)
                 from order_payments p where p.order_id = o.id), '{}') as payments
from orders o
"""


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A `payment_events` row as the audit trail shows it (raw bytes left out)."""

    id: int
    provider: str
    dedupe_key: str
    account: str
    reference: str
    claimed_order_id: str | None
    order_id: str | None
    status: PaymentStatus
    amount: int
    currency: str
    provider_payment_id: str | None
    refunded_amount: int | None
    occurred_at: datetime | None
    reason: str | None
    flag: str | None
    source: str
    outcome: str
    received_at: datetime
    applied_at: datetime | None
    payload: dict[str, Any] = {}


class AnomalyRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str
    order_id: str | None
    event_id: int | None
    detail: dict[str, Any]
    status: str
    created_at: datetime
    resolved_at: datetime | None


def _as(type_: type[T]) -> Callable[[asyncpg.Record], T]:
    return lambda row: msgspec.convert(dict(row), type_)


def _order(row: asyncpg.Record) -> Order:
    refs = [
        OrderReference(provider=r[0], account=r[1], reference=r[2], provider_data=r[3], added_at=r[4])
        for r in row["refs"]
    ]
    payments = [dict(zip(_PAYMENT_FIELDS, p, strict=True)) for p in row["payments"]]
    fields = {k: row[k] for k in row.keys() if k not in ("refs", "failure", "payments")}  # noqa: SIM118 (Record is not a dict)
    failure = row["failure"]
    last_failure = None if failure is None else Failure.from_reason(failure[0], failure[1], failure[2], failure[3])
    return msgspec.convert(
        {**fields, "references": refs, "last_failure": last_failure, "payments": payments}, Order, from_attributes=True
    )


_PAYMENT_FIELDS = OrderPayment.__struct_fields__


async def get_order(conn: Conn, order_id: str) -> Order | None:
    row = await conn.fetchrow(_ORDER + " where o.id = $1", order_id)
    return None if row is None else _order(row)


async def get_orders(conn: Conn, order_ids: Sequence[str]) -> dict[str, Order]:
    """The orders of `order_ids` that exist, by id: many single reads in one statement (service/order_reads.py)."""
    rows = await conn.fetch(_ORDER + " where o.id = any($1::text[])", order_ids)
    return {row["id"]: _order(row) for row in rows}


async def list_orders(
    conn: Conn,
    *,
    limit: int,
    status: PaymentStatus | None = None,
    provider: str | None = None,
    reference: str | None = None,
    provider_payment_id: str | None = None,
    updated_since: datetime | None = None,
    cursor: str | None = None,
) -> tuple[list[Order], str | None]:
    """Orders by (updated_at, id) ascending: a backend polling with `updated_since` sees every change.

    `reference` matches any attempt's gateway reference (order_references, whatever the account);
    `provider_payment_id` the payment that paid the order.
    """
    after_at, after_id = decode_cursor(cursor, str)
    rows = await conn.fetch(
        _ORDER
        + """ where ($1::text is null or o.status = $1)
              and ($2::text is null or o.provider = $2)
              and ($3::timestamptz is null or o.updated_at >= $3)
              and ($4::timestamptz is null or (o.updated_at, o.id) > ($4, $5::text))
              and ($7::text is null or o.id in (select order_id from order_references where reference = $7))
              and ($8::text is null or o.provider_payment_id = $8)
            order by o.updated_at, o.id
            limit $6""",
        status,
        provider,
        updated_since,
        after_at,
        after_id,
        limit + 1,
        reference,
        provider_payment_id,
    )
    return cut([_order(r) for r in rows], limit, lambda o: (o.updated_at, o.id))


async def order_events(conn: Conn, order_id: str) -> tuple[list[StoredEvent], list[Transition]]:
    """Every event matched to the order (with its outcome and source) and every transition."""
    events = await conn.fetch(
        """select id, provider, dedupe_key, account, reference, claimed_order_id, order_id, status, amount,
                  currency, provider_payment_id, refunded_amount, occurred_at, reason, flag, source, outcome,
                  received_at, applied_at, payload
           from payment_events where order_id = $1 order by id""",
        order_id,
    )
    steps = await conn.fetch(
        """select event_id, from_status, to_status, from_version, to_version, refunded_amount, source, created_at,
                  provider_payment_id
           from transitions where order_id = $1 order by to_version""",
        order_id,
    )
    return (
        msgspec.convert([dict(r) for r in events], list[StoredEvent]),
        msgspec.convert([dict(r) for r in steps], list[Transition]),
    )


async def list_anomalies(
    conn: Conn,
    *,
    limit: int,
    kind: str | None = None,
    since: datetime | None = None,
    order_id: str | None = None,
    cursor: str | None = None,
) -> tuple[list[AnomalyRecord], str | None]:
    after_at, after_id = decode_cursor(cursor, int)
    rows = await conn.fetch(
        """select id, kind, order_id, event_id, detail, status, created_at, resolved_at from anomalies
           where ($1::text is null or kind = $1)
             and ($2::timestamptz is null or created_at >= $2)
             and ($3::text is null or order_id = $3)
             and ($4::timestamptz is null or (created_at, id) > ($4, $5::bigint))
           order by created_at, id
           limit $6""",
        kind,
        since,
        order_id,
        after_at,
        after_id,
        limit + 1,
    )
    return cut(list(map(_as(AnomalyRecord), rows)), limit, lambda a: (a.created_at, a.id))


async def reference_owner(conn: Conn, provider: str, account: str, reference: str) -> str | None:
    """The order a gateway reference belongs to, if any."""
    owner: str | None = await conn.fetchval(
        "select order_id from order_references where provider = $1 and account = $2 and reference = $3",
        provider,
        account,
        reference,
    )
    return owner


async def has_provider(conn: Conn, order_id: str, provider: str) -> bool:
    """Whether the order holds a reference of this gateway (then a claim of its id matches)."""
    found = await conn.fetchval(
        "select 1 from order_references where order_id = $1 and provider = $2 limit 1", order_id, provider
    )
    return found is not None


async def list_quarantined(
    conn: Conn, *, limit: int, provider: str | None = None, cursor: str | None = None
) -> tuple[list[StoredEvent], str | None]:
    """Events no registered order matches yet (outcome `unknown_order`), oldest first."""
    _, after_id = decode_cursor(cursor, int)  # the id alone orders this list; the time keeps one cursor shape
    rows = await conn.fetch(
        """select id, provider, dedupe_key, account, reference, claimed_order_id, order_id, status, amount,
                  currency, provider_payment_id, refunded_amount, occurred_at, reason, flag, source, outcome,
                  received_at, applied_at, payload
           from payment_events
           where order_id is null and ($1::text is null or provider = $1) and ($2::bigint is null or id > $2)
           order by id limit $3""",
        provider,
        after_id,
        limit + 1,
    )
    return cut(list(map(_as(StoredEvent), rows)), limit, lambda e: (e.received_at, e.id))
