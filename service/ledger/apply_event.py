"""One event through one ledger transaction: dedupe insert, order lookup, row lock, the pure
rules of `service.transitions`, order update, audit row, anomalies (DESIGN.md §3)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from providers.base import OutcomeKind, PaymentEvent, PaymentStatus
from service import metrics
from service.db import Conn
from service.ledger.locks import ORDER_LOCK, REFERENCE_LOCK, lock, reference_key
from service.model import AnomalyKind, Order, OrderState, Outcome, RawDelivery, Source
from service.orders import get_order as _get_order
from service.orders import has_provider, reference_owner
from service.transitions import Anomaly, Facts, News, Payment, decide


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
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            done = await _apply(conn, event, Source(source), raw)
        except BaseException:
            await tx.rollback()
            raise
        if dry_run:
            await tx.rollback()
        else:
            await tx.commit()
    outcome = next(a.outcome for a in done if a.current)
    if not dry_run:
        metrics.LEDGER_APPLY_SECONDS.observe(time.perf_counter() - started)
        count_outcomes(done)
    return outcome


async def _apply(conn: Conn, event: PaymentEvent, source: Source, raw: RawDelivery | None) -> list[Applied]:
    """The work of `apply`: this event's Applied (and any it released)."""
    await lock(conn, REFERENCE_LOCK, [reference_key(event.provider, event.account, event.reference)])
    row = await conn.fetchrow(
        _INSERT_EVENT,
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


_FACTS = """
select o.amount, o.currency, o.status, o.status_at, o.refunded_amount, o.provider_payment_id, o.paid_at, o.version,
       (select row(p.status, p.status_at, p.refunded_amount, p.paid_at) from order_payments p
        where p.order_id = o.id and p.provider_payment_id = $2) as payment,
       (select row(p.status, p.status_at, p.refunded_amount, p.paid_at) from order_payments p
        where p.order_id = o.id and p.provider_payment_id = o.provider_payment_id) as paying
from orders o where o.id = $1
for update of o
"""

# The event's payment as the rules left it: one row per (order, provider_payment_id).
_RECORD_PAYMENT = """
insert into order_payments as p (order_id, provider_payment_id, provider, account, amount, currency, status,
                                 status_at, refunded_amount, paid_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
on conflict (order_id, provider_payment_id) do update
set status = excluded.status, status_at = excluded.status_at, refunded_amount = excluded.refunded_amount,
    paid_at = excluded.paid_at, updated_at = now()
"""

# A fully refunded duplicate (or one found to be the paying payment) settles its double_payment.
_RESOLVE_DOUBLE_PAYMENT = """
update anomalies set status = 'resolved', resolved_at = now()
where order_id = $1 and kind = 'double_payment' and status = 'open' and detail ->> 'provider_payment_id' = $2
"""


def _payment(record: asyncpg.Record | None) -> Payment | None:
    if record is None:
        return None
    status, status_at, refunded_amount, paid_at = record
    return Payment(status=PaymentStatus(status), status_at=status_at, refunded_amount=refunded_amount, paid_at=paid_at)


async def _step(conn: Conn, order_id: str, event: _Event, *, current: bool = False) -> Applied:
    """Apply one stored event to one order: rules, order update, payment, audit row, anomalies."""
    row = await conn.fetchrow(_FACTS, order_id, event.provider_payment_id)
    assert row is not None  # every caller found the order under its lock, and orders are never deleted
    facts = Facts(
        amount=row["amount"],
        currency=row["currency"],
        status=PaymentStatus(row["status"]),
        status_at=row["status_at"],
        refunded_amount=row["refunded_amount"],
        provider_payment_id=row["provider_payment_id"],
        paid_at=row["paid_at"],
        payment=_payment(row["payment"]),
        paying=_payment(row["paying"]),
    )
    news = News(
        status=event.status,
        at=event.at,
        amount=event.amount,
        currency=event.currency,
        refunded_amount=event.refunded_amount,
        provider_payment_id=event.provider_payment_id,
    )
    decision = decide(facts, news)
    before = OrderState(
        status=facts.status,
        refunded_amount=facts.refunded_amount,
        provider_payment_id=facts.provider_payment_id,
        version=row["version"],
    )
    after = before
    if decision.moved:
        new = decision.after
        version = await conn.fetchval(
            """update orders set status = $2, status_at = $3, refunded_amount = $4, provider_payment_id = $5,
                                 paid_at = $6, version = version + 1, updated_at = now()
               where id = $1 returning version""",
            order_id,
            new.status,
            new.status_at,
            new.refunded_amount,
            new.provider_payment_id,
            new.paid_at,
        )
        # unique (order_id, to_version): two writers can never both step from one version
        await conn.execute(
            """insert into transitions (order_id, event_id, from_status, to_status, from_version, to_version,
                                        refunded_amount, source, provider_payment_id)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            order_id,
            event.id,
            facts.status,
            new.status,
            before.version,
            version,
            new.refunded_amount,
            event.source,
            event.provider_payment_id,
        )
        await announce(conn, order_id, new.status)
        after = OrderState(
            status=new.status,
            refunded_amount=new.refunded_amount,
            provider_payment_id=new.provider_payment_id,
            version=version,
        )
    if decision.payment is not None:
        paid = decision.payment
        await conn.execute(
            _RECORD_PAYMENT,
            order_id,
            event.provider_payment_id,
            event.provider,
            event.account,
            event.amount,
            event.currency,
            paid.status,
            paid.status_at,
            paid.refunded_amount,
            paid.paid_at,
        )
    if decision.resolves_double_payment:
        await conn.execute(_RESOLVE_DOUBLE_PAYMENT, order_id, event.provider_payment_id)
    await conn.execute(
        """update payment_events set order_id = $2, outcome = $3,
                  applied_at = case when $3 = 'applied' then now() end
           where id = $1""",
        event.id,
        order_id,
        decision.kind,
    )
    anomalies = list(decision.anomalies)
    if event.flag:  # a gateway-side condition ops must see; the event is otherwise applied normally
        anomalies.append(Anomaly(AnomalyKind.GATEWAY_FLAG, {"flag": event.flag, "status": str(event.status)}))
    recorded = [
        a.kind
        for a in anomalies
        if await record_anomaly(conn, a.kind, order_id=order_id, event_id=event.id, detail=a.detail, count=False)
    ]
    outcome = Outcome(
        kind=decision.kind,
        order_id=order_id,
        event_id=event.id,
        before=before,
        after=after,
        anomalies=[a.kind for a in anomalies],
    )
    return Applied(
        outcome=outcome, provider=event.provider, source=event.source, current=current, new_anomalies=tuple(recorded)
    )


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
            f"""select {_EVENT_COLUMNS} from payment_events
                where order_id is null
                  and ((provider, account, reference) in (select * from unnest($2::text[], $3::text[], $4::text[]))
                       or (claimed_order_id = $1 and provider = any($2::text[])))""",
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
