"""One event through one ledger transaction: dedupe insert, order lookup, row lock, the rules,
order update, audit row, payment, anomalies (DESIGN.md §3).

The common paths are one statement (`sql.APPLY`, the PL/pgSQL `ledger_apply`) in autocommit:
one round trip, its own transaction. An event that releases quarantined ones takes the general
path here, in an explicit transaction under the locks of `locks.py`, each step through
`sql.STEP`. The rules in SQL mirror `service.transitions.decide`, their tested oracle.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from providers.base import OutcomeKind, PaymentEvent, PaymentStatus
from service import metrics
from service.db import Conn
from service.ledger import sql
from service.ledger.locks import ORDER_LOCK, REFERENCE_LOCK, lock, reference_key
from service.model import Order, OrderState, Outcome, RawDelivery, Source
from service.orders import get_order as _get_order
from service.orders import has_provider, reference_owner
from service.storable import storable


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """One event's result inside a ledger transaction, with what to count once it commits."""

    outcome: Outcome
    provider: str
    source: str
    current: bool = False  # the event `apply` was called with (replays may come with it)
    new_anomalies: tuple[str, ...] = ()


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    """A stored event as the rules need it; `at` is its effective gateway time."""

    id: int
    provider: str
    account: str
    reference: str
    claimed_order_id: str | None
    status: PaymentStatus
    amount: int
    currency: str
    provider_payment_id: str | None
    refunded_amount: int | None
    at: datetime
    flag: str | None
    source: str


# A missing gateway time counts as the time we received the event (DESIGN.md §3, transitions.py).
_EVENT_COLUMNS = """id, provider, account, reference, claimed_order_id, status, amount, currency, provider_payment_id,
                    refunded_amount, coalesce(occurred_at, received_at) as at, flag, source"""

# Stored as quarantined (order_id null, outcome unknown_order) and resolved in the same transaction.
_INSERT_EVENT = f"""
insert into payment_events (provider, dedupe_key, account, reference, claimed_order_id, status, amount, currency,
                            provider_payment_id, refunded_amount, occurred_at, reason, flag, source, outcome,
                            payload, raw_body, raw_headers)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'unknown_order', $15, $16, $17)
on conflict (provider, dedupe_key) do nothing
returning {_EVENT_COLUMNS}
"""


# The quarantined events waiting for an order ($1) whose references are the rows of ($2, $3, $4):
# those under one of its references, and those claiming its id for one of its gateways. Two
# halves, each an index probe (payment_events_quarantine_idx per reference, then
# payment_events_quarantine_claimed_idx): written as one OR, no index serves the reference half,
# and PostgreSQL read the whole quarantine on every registration and release (bench/RESULTS.md,
# "Cost against history"). UNION, not UNION ALL: an event may be both under a reference and claiming.
_WAITING = f"""
select {_EVENT_COLUMNS} from payment_events
where order_id is null and (provider, account, reference) in (select * from unnest($2::text[], $3::text[], $4::text[]))
union
select {_EVENT_COLUMNS} from payment_events
where order_id is null and claimed_order_id = $1 and provider = any($2::text[])
"""

_STORED_OUTCOME = "select id, order_id, outcome from payment_events where provider = $1 and dedupe_key = $2"


async def apply(
    pool: asyncpg.Pool,
    event: PaymentEvent,
    source: Source,
    *,
    raw: RawDelivery | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Apply one event in one transaction: dedupe insert, row lock, amount check, transition, audit.

    `dry_run` does all of it and rolls back, so the reconciler can report what it would repair.
    Raises asyncpg / OSError errors when the database is unavailable (the caller answers "retry").
    """
    started = time.perf_counter()
    source = Source(source)
    # Whatever its path (webhook, reconciler, catch-up, replay), an event is stored as PostgreSQL can
    # store it: NUL spelled out, integers within bigint (UnstorableError otherwise).
    event = storable(event)
    async with pool.acquire() as conn:
        if dry_run:
            tx = conn.transaction()
            await tx.start()
            try:
                done = await _apply_in(conn, event, source, raw)
            finally:
                await tx.rollback()
        else:
            done = await _apply_in(conn, event, source, raw)
    outcome = next(a.outcome for a in done if a.current)
    if not dry_run:
        metrics.LEDGER_APPLY_SECONDS.observe(time.perf_counter() - started)
        count_outcomes(done)
    return outcome


async def _apply_in(conn: Conn, event: PaymentEvent, source: Source, raw: RawDelivery | None) -> list[Applied]:
    """One statement for the common paths; the general path when it refuses (nothing committed then)."""
    try:
        row = await conn.fetchrow(sql.APPLY, *apply_arguments(event, source, raw))
    except asyncpg.PostgresError as error:
        if error.sqlstate != sql.SLOW_PATH:
            raise
    else:
        assert row is not None
        return [applied_of(row, event.provider, source, current=True)]
    async with conn.transaction():
        return await _apply(conn, event, source, raw)


def apply_arguments(event: PaymentEvent, source: Source, raw: RawDelivery | None) -> tuple[Any, ...]:
    """sql.APPLY_PARAMETERS, in order."""
    return (
        event.provider,
        event.dedupe_key,
        event.account,
        event.reference,
        event.order_id,
        event.status,
        event.amount,
        event.currency,
        event.provider_payment_id,
        event.refunded_amount,
        event.occurred_at,
        event.reason,
        event.flag,
        source,
        event.payload,
        None if raw is None else raw.body,
        None if raw is None else _raw_headers(raw),
    )


def applied_of(row: asyncpg.Record, provider: str, source: str, *, current: bool) -> Applied:
    """An APPLY or STEP row as the ledger's result."""
    kind = OutcomeKind(row["kind"])
    before = after = None
    if row["before_version"] is not None:
        before = OrderState(
            status=PaymentStatus(row["before_status"]),
            refunded_amount=row["before_refunded"],
            provider_payment_id=row["before_ppid"],
            version=row["before_version"],
        )
        after = OrderState(
            status=PaymentStatus(row["after_status"]),
            refunded_amount=row["after_refunded"],
            provider_payment_id=row["after_ppid"],
            version=row["after_version"],
        )
    outcome = Outcome(
        kind=kind,
        order_id=row["order_id"],
        event_id=row["event_id"],
        before=before,
        after=after,
        anomalies=list(row["anomalies"] or ()),
        stored=None if row["stored"] is None else OutcomeKind(row["stored"]),
    )
    new = tuple(row["new_anomalies"] or ())
    return Applied(outcome=outcome, provider=provider, source=source, current=current, new_anomalies=new)


async def _apply(conn: Conn, event: PaymentEvent, source: Source, raw: RawDelivery | None) -> list[Applied]:
    """The general path of `apply`, inside the caller's transaction: this event's Applied (and any it released).

    The dedupe insert comes before the reference lock, as in `ledger_apply`: two deliveries of one
    event then always meet at the insert first, never each holding what the other waits for.
    """
    row = await conn.fetchrow(_INSERT_EVENT, *apply_arguments(event, source, raw))
    if row is None:
        # A redelivery: nothing changes, and its answer is built from the stored event's outcome as
        # it now stands (DESIGN.md §3 step 1), so it never hears what the first delivery did not.
        # (The conflicting row is committed — ON CONFLICT waited for it — so this statement sees it.)
        first = await conn.fetchrow(_STORED_OUTCOME, event.provider, event.dedupe_key)
        outcome = Outcome(kind=OutcomeKind.DUPLICATE)
        if first is not None:
            outcome = Outcome(
                kind=OutcomeKind.DUPLICATE,
                order_id=first["order_id"],
                event_id=first["id"],
                stored=OutcomeKind(first["outcome"]),
            )
        return [Applied(outcome=outcome, provider=event.provider, source=source, current=True)]
    stored = msgspec.convert(dict(row), _Event)
    await lock(conn, REFERENCE_LOCK, [reference_key(event.provider, event.account, event.reference)])
    order_id = await reference_owner(conn, event.provider, event.account, event.reference)
    if order_id is None:
        # Lock every order this reference may come to belong to: the one the event claims, and
        # those its quarantined siblings claim (an unclaimed Stripe charge event shares its
        # PaymentIntent reference with claimed ones): a registration of such an order may be
        # adding this very reference right now. Then look again.
        claims = await _sibling_claims(conn, event.provider, event.account, event.reference)
        await lock(conn, ORDER_LOCK, claims | ({event.order_id} if event.order_id else set()))
        order_id = await reference_owner(conn, event.provider, event.account, event.reference)
    if order_id is not None:
        return [await _step(conn, order_id, stored, current=True)]
    if event.order_id is not None and await has_provider(conn, event.order_id, event.provider):
        # The claim matches (DESIGN.md §5): the reference joins the order, and with it every event
        # that waited under it, all applied in gateway time order.
        done = await replay(conn, event.order_id, current=stored.id)
        if any(a.current for a in done):
            return done
    outcome = Outcome(kind=OutcomeKind.UNKNOWN_ORDER, event_id=stored.id)
    return [Applied(outcome=outcome, provider=event.provider, source=source, current=True)]


async def _step(conn: Conn, order_id: str, event: _Event, *, current: bool = False) -> Applied:
    """Apply one stored event to one order (`ledger_step`): rules, order update, payment, audit row, anomalies."""
    row = await conn.fetchrow(sql.STEP, order_id, event.id)
    assert row is not None
    return applied_of(row, event.provider, event.source, current=current)


async def replay(conn: Conn, order_id: str, *, current: int | None = None) -> list[Applied]:
    """Apply the quarantined events that now match the order, in gateway time order.

    They match by one of the order's references, or by claiming the order's id for a gateway
    the order has a reference of; a claimed event's reference then joins the order, which may
    release more events (hence the loop). The caller holds the order's advisory lock.
    """
    await conn.execute("select 1 from orders where id = $1 for update", order_id)
    while True:
        refs = await conn.fetch(
            "select provider, account, reference from order_references where order_id = $1", order_id
        )
        held = {(r["provider"], r["account"], r["reference"]) for r in refs}
        rows = await conn.fetch(
            _WAITING,
            order_id,
            [r[0] for r in held],
            [r[1] for r in held],
            [r[2] for r in held],
        )
        waiting = [msgspec.convert(dict(r), _Event) for r in rows]
        added = False
        for event in waiting:
            if (event.provider, event.account, event.reference) not in held:
                added |= await insert_reference(conn, order_id, event.provider, event.account, event.reference, {})
        if not added:
            break
    done = []
    for event in sorted(waiting, key=lambda e: (e.at, e.id)):
        # Lock it, and re-check: another order's registration may have taken it meanwhile.
        still = await conn.fetchval(
            "select 1 from payment_events where id = $1 and order_id is null for update", event.id
        )
        if still and await reference_owner(conn, event.provider, event.account, event.reference) == order_id:
            done.append(await _step(conn, order_id, event, current=event.id == current))
    return done


async def _sibling_claims(conn: Conn, provider: str, account: str, reference: str) -> set[str]:
    rows = await conn.fetch(
        """select distinct claimed_order_id from payment_events
           where provider = $1 and account = $2 and reference = $3
             and order_id is null and claimed_order_id is not null""",
        provider,
        account,
        reference,
    )
    return {r[0] for r in rows}


async def insert_reference(
    conn: Conn, order_id: str, provider: str, account: str, reference: str, data: dict[str, Any]
) -> bool:
    added = await conn.fetchval(
        """insert into order_references (provider, account, reference, order_id, provider_data)
           values ($1, $2, $3, $4, $5) on conflict (provider, account, reference) do nothing returning true""",
        provider,
        account,
        reference,
        order_id,
        data,
    )
    return bool(added)


async def announce(conn: Conn, order_id: str, status: PaymentStatus) -> None:
    """Write the outbox row of a transition the caller just made, with the order as it now is.

    In the ledger's transaction (issue 11): what commits is announced, what rolls back is not.
    """
    await conn.execute(
        """insert into notifications (type, order_id, order_version, data)
           select $2, o.id, o.version, to_jsonb(o) from orders o where o.id = $1""",
        order_id,
        notification_type(status),
    )


def notification_type(status: PaymentStatus) -> str:
    """The shop-facing event type of a transition to `status` (the outbox's type check lists them)."""
    return f"order.{status}"


def _raw_headers(raw: RawDelivery) -> dict[str, str]:
    # VNPay signs the query string of a GET: keep it beside the headers, as a pseudo-header.
    return {**raw.headers, ":query_string": raw.query_string} if raw.query_string else dict(raw.headers)


async def record_anomaly(
    conn: Conn,
    kind: str,
    *,
    order_id: str | None,
    event_id: int | None,
    detail: dict[str, Any],
    count: bool = True,
) -> bool:
    """Record an anomaly once per (kind, order, event); True when it is new.

    `count=False` leaves the metric to the caller (the ledger counts after its commit).
    """
    new = await conn.fetchval(
        # The unique index on (kind, order, event) makes a redelivered anomaly a no-op. A new one is
        # announced to the shop through the outbox in the same statement (and so the same transaction).
        """with opened as (
               insert into anomalies (kind, order_id, event_id, detail) values ($1, $2, $3, $4)
               on conflict do nothing returning id, order_id),
           announced as (
               insert into notifications (type, order_id, order_version, anomaly_id, data)
               select 'anomaly.opened', o.id, o.version, opened.id, to_jsonb(o)
               from opened join orders o on o.id = opened.order_id)
           select true from opened""",
        kind,
        order_id,
        event_id,
        detail,
    )
    if new and count:
        metrics.ANOMALIES.labels(kind).inc()
    return bool(new)


async def get_order(conn: Conn, order_id: str) -> Order | None:
    return await _get_order(conn, order_id)


def count_outcomes(done: list[Applied]) -> None:
    for applied in done:
        metrics.LEDGER_OUTCOMES.labels(applied.provider, str(applied.source), applied.outcome.kind).inc()
        for kind in applied.new_anomalies:
            metrics.ANOMALIES.labels(kind).inc()
