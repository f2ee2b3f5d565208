"""Claiming a run's candidates: `order_checks` leases taken with FOR UPDATE SKIP LOCKED (DESIGN.md §6 step 1).

`order_checks` is the reconciler's own scheduling state (the API never reads it), kept apart
from `orders` so the ledger stays the only writer of orders. A claim is one short transaction;
the gateway is asked after it commits, so no lock is ever held across an HTTP call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from providers.base import PaymentStatus
from service.db import Conn


class CandidateReference(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    account: str
    reference: str
    provider_data: dict[str, Any] = {}


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed order as the status query needs it (read after the claim committed: no lock held)."""

    id: str
    amount: int
    currency: str
    provider: str
    account: str
    reference: str  # the order's current attempt
    status: str
    provider_payment_id: str | None
    created_at: datetime
    references: list[CandidateReference]


# --- claiming candidates (order_checks) -----------------------------------------------------------

# Open orders past the grace period and inside the horizon, plus every order with an open anomaly;
# only orders holding a reference at a gateway this run can ask. `failed` is open too: it is the
# retry cycle of DESIGN.md §3 (the customer's next attempt may succeed). A sweep (`since` given)
# is an audit: every order created since then, whatever its status (paid ones included: that is
# how a ledger-paid order the gateway does not confirm, or a refund no webhook announced, is found).
# Parameters shared by every statement: $1 grace s, $2 horizon s, $3 since, $4 gateways.
OPEN_STATUSES = tuple(s.value for s in PaymentStatus if s.is_open)  # migrations/0031 indexes the same set
_CANDIDATES = f"""
    cand as (
        select o.id from orders o
        where $3::timestamptz is null
          and o.status in ({", ".join(f"'{s}'" for s in OPEN_STATUSES)})
          and o.created_at <= now() - make_interval(secs => $1)
          and o.created_at >= now() - make_interval(secs => $2)
        union
        select o.id from orders o
        where o.created_at >= $3::timestamptz and o.created_at <= now() - make_interval(secs => $1)
        union
        select a.order_id from anomalies a
        join orders o on o.id = a.order_id
        where a.status = 'open' and ($3::timestamptz is null or o.created_at >= $3::timestamptz)
    ),
    askable as (
        select cand.id from cand
        where exists (select 1 from order_references r where r.order_id = cand.id and r.provider = any($4::text[]))
    )"""

# A candidate's first check has no row yet: a participant creates the missing rows once, as it
# joins the run, so that claims only ever lock existing rows. (Creating them batch by batch inside
# the claims would let two claimers insert the same rows: the loser's claim would come back
# empty, which reads as "nothing left" while rowless candidates remain.) In steady state these are
# the orders that became candidates since the last run; orders that pass the grace period during
# the run wait for the next one.
_ENSURE_ROWS = f"""
    with {_CANDIDATES}
    insert into order_checks (order_id)
    select askable.id from askable
    where not exists (select 1 from order_checks c where c.order_id = askable.id)
    on conflict (order_id) do nothing"""

# SKIP LOCKED: concurrent claimers of one run take disjoint rows without waiting. The lease names
# the run, so a row is never claimed twice by one run (even after its lease is released), and is
# left alone by other runs until it is released or expires. A live run backs the order off
# (2 m, 5 m, 15 m, 1 h, 6 h); a dry run changes no schedule; a `since` sweep (an audit) claims
# whatever the schedule says, and when live steps it like any other check (it did ask the gateway).
# $5 batch, $6 run, $7 lease s, $8 dry run, $9 lease holder (the participant: reconciler.participants)
_BACKOFF = "now() + make_interval(secs => (array[120, 300, 900, 3600, 21600])[least(c.attempts + 1, 5)])"
_CLAIM = f"""
    with {_CANDIDATES},
    picked as (
        select c.order_id from order_checks c
        join askable on askable.id = c.order_id
        where ($3::timestamptz is not null or c.next_check_at <= now())
          and c.lease_run_id is distinct from $6
          and (c.lease_until is null or c.lease_until < now())
        order by c.next_check_at, md5(c.order_id)  -- hashed: a batch mixes gateways, not one gateway's ids
        limit $5
        for update of c skip locked
    )
    update order_checks c
    set lease_run_id = $6, lease_until = now() + make_interval(secs => $7), lease_holder = $9,
        attempts = case when $8 then c.attempts else c.attempts + 1 end,
        next_check_at = case when $8 then c.next_check_at else {_BACKOFF} end
    from picked where c.order_id = picked.order_id
    returning c.order_id"""

# A sweep (`since` given: an audit) claims in (created_at, id) order from where this participant's
# last claim ended, along orders_created_idx (0002): a claim costs a batch, not the whole window.
# (The statement above computes every candidate for each claim: for a sweep over a busy week, that
# is a quarter of a second per batch of 50 at 50k orders, and hours at 500k.) A row SKIP LOCKED
# passes over is being claimed by another participant of this run, or leased to another run that
# is checking it now: either way it is checked, and this walker need not come back for it.
# $1 grace s, $2 since, $3 gateways, $4 batch, $5 run, $6 lease s, $7 dry run, $8 after created_at, $9 after id,
# $10 lease holder
_SWEEP_CLAIM = f"""
    with picked as (
        select c.order_id, o.created_at from orders o
        join order_checks c on c.order_id = o.id
        where o.created_at >= $2 and o.created_at <= now() - make_interval(secs => $1)
          and ($8::timestamptz is null or (o.created_at, o.id) > ($8::timestamptz, $9::text))
          and exists (select 1 from order_references r where r.order_id = o.id and r.provider = any($3::text[]))
          and c.lease_run_id is distinct from $5
          and (c.lease_until is null or c.lease_until < now())
        order by o.created_at, o.id
        limit $4
        for update of c skip locked
    ),
    claimed as (
        update order_checks c
        set lease_run_id = $5, lease_until = now() + make_interval(secs => $6), lease_holder = $10,
            attempts = case when $7 then c.attempts else c.attempts + 1 end,
            next_check_at = case when $7 then c.next_check_at else {_BACKOFF} end
        from picked where c.order_id = picked.order_id
        returning c.order_id, picked.created_at
    )
    select order_id, created_at from claimed order by created_at, order_id"""

# $5 run
_COUNT_DUE = f"""
    with {_CANDIDATES}
    select count(*) from askable left join order_checks c on c.order_id = askable.id
    where ($3::timestamptz is not null or c.next_check_at is null or c.next_check_at <= now())
      and (c.lease_until is null or c.lease_until < now())
      and (c.order_id is null or c.lease_run_id is distinct from $5)"""


# The candidates a run sets out to check (its lead records them once, as it starts): at its end the
# ones without a finding are `skipped`, so `completed` can mean every candidate was checked.
# An order leased to another run is planned too: this run could not check it, and says so.
# Parameters as _COUNT_DUE: $1 grace s, $2 horizon s, $3 since, $4 gateways, $5 run.
_PLAN = f"""
    with {_CANDIDATES}
    insert into run_candidates (run_id, order_id)
    select $5, askable.id from askable join order_checks c on c.order_id = askable.id
    where ($3::timestamptz is not null or c.next_check_at <= now())
      and not exists (select 1 from run_candidates done where done.run_id = $5)
    on conflict do nothing"""

# Planned candidates nobody of this run has checked and nobody holds: released by a participant
# that is gone, or passed over by a sweep's cursor. The lead claims these until none is left.
# $1 run, $2 batch, $3 lease s, $4 holder, $5 dry run
_CLAIM_REMAINDER = f"""
    with picked as (
        select c.order_id from run_candidates rc
        join order_checks c on c.order_id = rc.order_id
        where rc.run_id = $1
          and c.lease_run_id is distinct from $1
          and (c.lease_until is null or c.lease_until < now())
        order by rc.order_id
        limit $2
        for update of c skip locked
    )
    update order_checks c
    set lease_run_id = $1, lease_until = now() + make_interval(secs => $3), lease_holder = $4,
        attempts = case when $5 then c.attempts else c.attempts + 1 end,
        next_check_at = case when $5 then c.next_check_at else {_BACKOFF} end
    from picked where c.order_id = picked.order_id
    returning c.order_id"""


class ClaimRule(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    grace: float  # seconds
    horizon: float  # seconds
    since: datetime | None
    gateways: list[str]
    batch: int
    lease: float  # seconds
    dry_run: bool
    holder: str | None = None  # the participant taking the leases (released at once if it is gone)

    def _shared(self) -> tuple[object, ...]:
        return (self.grace, self.horizon, self.since, self.gateways)

    def ensure_args(self) -> tuple[object, ...]:
        return self._shared()

    def claim_args(self) -> tuple[object, ...]:
        return (*self._shared(), self.batch, self.run_id, self.lease, self.dry_run, self.holder)

    def count_args(self) -> tuple[object, ...]:
        return (*self._shared(), self.run_id)

    def sweep_args(self, after: Cursor | None) -> tuple[object, ...]:
        at, order_id = after or (None, None)
        shared = (self.grace, self.since, self.gateways, self.batch, self.run_id, self.lease, self.dry_run)
        return (*shared, at, order_id, self.holder)


Cursor = tuple[datetime, str]  # (created_at, id) of the last order a sweep's participant claimed


async def prepare(pool: asyncpg.Pool, rule: ClaimRule) -> None:
    """Create the scheduling rows of candidates seen for the first time (see _ENSURE_ROWS)."""
    async with pool.acquire() as conn:
        await conn.execute(_ENSURE_ROWS, *rule.ensure_args())


async def count_due(conn: Conn, rule: ClaimRule) -> int:
    """How many orders a run would check now (a progress bar's total; claims may differ slightly)."""
    return int(await conn.fetchval(_COUNT_DUE, *rule.count_args()))


async def claim(
    pool: asyncpg.Pool, rule: ClaimRule, after: Cursor | None = None
) -> tuple[list[Candidate], Cursor | None]:
    """Lease a batch of due candidates to the run in one short transaction; read them after it commits.

    Also returns where a sweep goes on from (its next claim's `after`).
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            if rule.since is None:
                rows = await conn.fetch(_CLAIM, *rule.claim_args())
            else:
                rows = await conn.fetch(_SWEEP_CLAIM, *rule.sweep_args(after))
                after = (rows[-1]["created_at"], rows[-1]["order_id"]) if rows else after
        ids = [r["order_id"] for r in rows]
        return await _read(conn, ids), after


async def plan(pool: asyncpg.Pool, rule: ClaimRule) -> None:
    """Record the run's candidates once (see _PLAN); a lead taking over a run keeps the first plan."""
    async with pool.acquire() as conn:
        await conn.execute(_PLAN, *rule.count_args())


async def claim_remainder(pool: asyncpg.Pool, rule: ClaimRule) -> list[Candidate]:
    """Lease a batch of planned candidates nobody of the run has checked or holds (see _CLAIM_REMAINDER)."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            rows = await conn.fetch(_CLAIM_REMAINDER, rule.run_id, rule.batch, rule.lease, rule.holder, rule.dry_run)
        return await _read(conn, [r["order_id"] for r in rows])


async def remainder(pool: asyncpg.Pool, rule: ClaimRule) -> AsyncIterator[Candidate]:
    while batch := await claim_remainder(pool, rule):
        for candidate in batch:
            yield candidate


async def _read(conn: Conn, ids: list[str]) -> list[Candidate]:
    if not ids:
        return []
    records = await conn.fetch(
        """select o.id, o.amount, o.currency, o.provider, o.account, o.reference, o.status, o.provider_payment_id,
                      o.created_at,
                      coalesce((select jsonb_agg(jsonb_build_object('provider', r.provider, 'account', r.account,
                                    'reference', r.reference, 'provider_data', r.provider_data) order by r.added_at)
                                from order_references r where r.order_id = o.id), '[]') as references
               from orders o where o.id = any($1::text[]) order by o.id""",
        ids,
    )
    return msgspec.convert([dict(r) for r in records], list[Candidate], strict=False)


async def load(conn: Conn, ids: list[str]) -> list[Candidate]:
    """Orders as a status query needs them, outside any claim (one an operator asked about)."""
    return await _read(conn, ids)


async def release(conn: Conn, run_id: int, order_id: str, *, failed: bool, dry_run: bool) -> None:
    """End the lease (the row keeps naming the run: it is not claimed again by it).

    A failed query taught us nothing, so a live run undoes that claim's backoff step and asks
    again soon: a gateway outage must not push its orders out to hours.
    """
    await conn.execute(
        """update order_checks set lease_until = null, lease_holder = null, last_checked_at = now(),
               attempts = case when $3 then greatest(attempts - 1, 0) else attempts end,
               next_check_at = case when $3 then least(next_check_at, now() + interval '2 minutes')
                   else next_check_at end
           where order_id = $2 and lease_run_id = $1""",
        run_id,
        order_id,
        failed and not dry_run,
    )


async def live_leases(conn: Conn, run_id: int) -> int:
    """Orders of the run some worker still holds (claimed, no finding yet, lease not expired)."""
    return int(
        await conn.fetchval(
            "select count(*) from order_checks where lease_run_id = $1 and lease_until > now()",
            run_id,
        )
    )


async def order_status(conn: Conn, order_id: str) -> str | None:
    status: str | None = await conn.fetchval("select status from orders where id = $1", order_id)
    return status


async def stream(pool: asyncpg.Pool, rule: ClaimRule, *, prepared: bool = False) -> AsyncIterator[Candidate]:
    """Claimed candidates, a batch at a time until none is due: memory holds one batch, not the run."""
    if not prepared:
        await prepare(pool, rule)
    after: Cursor | None = None
    while True:
        batch, after = await claim(pool, rule, after)
        if not batch:
            return
        for candidate in batch:
            yield candidate
