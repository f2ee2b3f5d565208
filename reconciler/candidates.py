"""Claiming a run's candidates: its plan, walked in leases taken with FOR UPDATE SKIP LOCKED (DESIGN.md §6 step 1).

A run writes its plan once (`run_candidates`); participants claim from it a batch at a time, as
`order_checks` leases. `order_checks` is the reconciler's own scheduling state (the API never
reads it), kept apart from `orders` so the ledger stays the only writer of orders. A claim is one
statement in autocommit; the gateway is asked after it returns, so no lock is ever held across
an HTTP call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
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
    """A claimed order as the status query needs it (read by the claim's statement: no lock held after it)."""

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
# Parameters of the statements using it: $1 grace s, $2 horizon s, $3 since, $4 gateways.
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

# The run's plan: the candidates it sets out to check, written once as it starts, by whichever
# participant prepares first (later ones find it written: a lead taking over keeps the first plan).
# The same statement creates the scheduling rows of candidates seen for the first time, so claims
# only ever lock existing rows. At the run's end, planned candidates without a finding are
# `skipped`, so `completed` can mean every candidate was checked. An order leased to another run is
# planned too: this run could not check it, and says so. One set-based statement: a million
# candidates cost one pass over them, not one per claim. (A sweep, `since` given, plans whatever
# the schedule says; the data-modifying CTE runs to completion though the insert never reads it,
# and rows it creates are due now: the insert sees them missing, as `c.order_id is null`.)
# Parameters as _COUNT_DUE: $1 grace s, $2 horizon s, $3 since, $4 gateways, $5 run.
_PREPARE = f"""
    with {_CANDIDATES},
    created as (
        insert into order_checks (order_id)
        select askable.id from askable
        where not exists (select 1 from order_checks c where c.order_id = askable.id)
        on conflict (order_id) do nothing
    )
    insert into run_candidates (run_id, turn, order_id)
    select $5, hashtext(askable.id), askable.id from askable
    left join order_checks c on c.order_id = askable.id
    where c.order_id is null or $3::timestamptz is not null or c.next_check_at <= now()
    order by 2, 3
    on conflict do nothing"""

# Two planners inserting overlapping order_checks rows could each wait for a row the other
# inserted (a deadlock): plans are written one at a time (a run's plan is one statement, written
# once per run). The namespace is the reconciler's own: no ledger transaction takes it.
PLAN_LOCK = 0x5052_5000  # "PRP"

_PLANNED = "select exists (select 1 from run_candidates where run_id = $1)"
PREPARE_TIMEOUT = 600.0  # seconds: a million candidates take tens of seconds on a busy server (the pool says 30)

# What a status query needs of an order (`o`): its amounts, its current attempt, every reference.
_ORDER_COLUMNS = """o.id, o.amount, o.currency, o.provider, o.account, o.reference, o.status, o.provider_payment_id,
    o.created_at,
    coalesce((select jsonb_agg(jsonb_build_object('provider', r.provider, 'account', r.account,
                  'reference', r.reference, 'provider_data', r.provider_data) order by r.added_at)
              from order_references r where r.order_id = o.id), '[]') as references"""

# A claim walks the plan from where this participant's last claim ended (a keyset cursor along the
# primary key (run_id, turn, order_id), migration 0075): it costs a batch, whatever the plan's
# size. The plan's rows drive the walk (LATERAL: each row's order_checks row is looked up by its
# key, in the walk's order) so the cost cannot turn quadratic under a plan that scans
# order_checks and probes the plan for each row. SKIP LOCKED: concurrent claimers of one run take
# disjoint rows without waiting; a row it passes over is being claimed by another participant of
# this run, or leased to another run that is checking it now. The lease names the run, so a row
# is never claimed twice by one run (even after its lease is released), and is left alone by
# other runs until it is released or expires. A walk from the start again (the lead's last
# stretch) claims what is left: orders released by a participant that is gone, or by another run
# since. A live run backs the order off (2 m, 5 m, 15 m, 1 h, 6 h); a dry run changes no
# schedule. The claimed orders come back in the same statement, as the status query needs them:
# one round trip, in autocommit, and no lock is held once it returns.
# $1 run, $2 batch, $3 lease s, $4 lease holder (the participant: reconciler.participants), $5 dry run,
# $6 $7 the cursor: (turn, order_id) of the last order this walk claimed
_BACKOFF = "now() + make_interval(secs => (array[120, 300, 900, 3600, 21600])[least(c.attempts + 1, 5)])"
_CLAIM = f"""
    with picked as (
        select rc.turn, rc.order_id from run_candidates rc
        cross join lateral (
            select 1 from order_checks c
            where c.order_id = rc.order_id
              and c.lease_run_id is distinct from $1
              and (c.lease_until is null or c.lease_until < now())
            for update skip locked
        ) free
        where rc.run_id = $1 and (rc.turn, rc.order_id) > ($6::integer, $7::text)
        order by rc.turn, rc.order_id
        limit $2
    ),
    claimed as (
        update order_checks c
        set lease_run_id = $1, lease_until = now() + make_interval(secs => $3), lease_holder = $4,
            attempts = case when $5 then c.attempts else c.attempts + 1 end,
            next_check_at = case when $5 then c.next_check_at else {_BACKOFF} end
        from picked where c.order_id = picked.order_id
        returning picked.turn, c.order_id
    )
    select claimed.turn, {_ORDER_COLUMNS}
    from claimed join orders o on o.id = claimed.order_id
    order by claimed.turn, claimed.order_id"""

# $5 run
_COUNT_DUE = f"""
    with {_CANDIDATES}
    select count(*) from askable left join order_checks c on c.order_id = askable.id
    where ($3::timestamptz is not null or c.next_check_at is null or c.next_check_at <= now())
      and (c.lease_until is null or c.lease_until < now())
      and (c.order_id is null or c.lease_run_id is distinct from $5)"""

# Ends leases of checked orders, a batch at a time. SKIP LOCKED: a row another transaction holds is
# no longer this participant's (it was declared gone and its leases are being released): waiting
# for it could close a lock cycle with that release. A failed query taught us nothing, so a live
# run undoes that claim's backoff step and asks again soon: a gateway outage must not push its
# orders out to hours. The row keeps naming the run: the run does not claim it again.
# $1 run, $2 order ids, $3 failed (per order; false in a dry run), $4 lease holder
_RELEASE = """
    with mine as (
        select c.order_id, r.failed from order_checks c
        join unnest($2::text[], $3::boolean[]) as r (order_id, failed) on r.order_id = c.order_id
        where c.lease_run_id = $1 and c.lease_holder is not distinct from $4
        for update of c skip locked
    )
    update order_checks c set lease_until = null, lease_holder = null, last_checked_at = now(),
        attempts = case when mine.failed then greatest(c.attempts - 1, 0) else c.attempts end,
        next_check_at = case when mine.failed then least(c.next_check_at, now() + interval '2 minutes')
            else c.next_check_at end
    from mine where c.order_id = mine.order_id"""


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

    def count_args(self) -> tuple[object, ...]:
        return (self.grace, self.horizon, self.since, self.gateways, self.run_id)

    def claim_args(self, after: Cursor) -> tuple[object, ...]:
        return (self.run_id, self.batch, self.lease, self.holder, self.dry_run, *after)


Cursor = tuple[int, str]  # (turn, order_id) of the last order a walk of the plan claimed
START: Cursor = (-(2**31), "")  # before every plan row: turn is an int4 hash, no order id is empty


async def prepare(pool: asyncpg.Pool, rule: ClaimRule) -> None:
    """Write the run's plan, unless it has one, with the scheduling rows it needs (see _PREPARE)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1, 0)", PLAN_LOCK)
        if not await conn.fetchval(_PLANNED, rule.run_id):
            await conn.execute(_PREPARE, *rule.count_args(), timeout=PREPARE_TIMEOUT)
            # The plan's statistics as of now: sampled while it held another run's rows (or none),
            # they can tell the planner this run has next to no candidates.
            await conn.execute("analyze run_candidates", timeout=PREPARE_TIMEOUT)


async def count_due(conn: Conn, rule: ClaimRule) -> int:
    """How many orders a run would check now (a progress bar's total; claims may differ slightly)."""
    return int(await conn.fetchval(_COUNT_DUE, *rule.count_args()))


async def claim(pool: asyncpg.Pool, rule: ClaimRule, after: Cursor = START) -> tuple[list[Candidate], Cursor]:
    """Lease the next batch of the run's plan after `after`, in one statement; and where the walk goes on from."""
    async with pool.acquire() as conn:
        records = await conn.fetch(_CLAIM, *rule.claim_args(after))
    if records:
        after = (records[-1]["turn"], records[-1]["id"])
    return _candidates(records), after


async def stream(pool: asyncpg.Pool, rule: ClaimRule, *, prepared: bool = False) -> AsyncIterator[Candidate]:
    """The plan's candidates this participant claims, walked once from the start, a batch at a time.

    Memory holds one batch, not the run. Walked again, it yields what is left to check.
    """
    if not prepared:
        await prepare(pool, rule)
    after = START
    while True:
        batch, after = await claim(pool, rule, after)
        if not batch:
            return
        for candidate in batch:
            yield candidate


def _candidates(records: list[asyncpg.Record]) -> list[Candidate]:
    return msgspec.convert([dict(r) for r in records], list[Candidate], strict=False)


async def load(conn: Conn, ids: list[str]) -> list[Candidate]:
    """Orders as a status query needs them, outside any claim (one an operator asked about)."""
    if not ids:
        return []
    return _candidates(
        await conn.fetch(f"select {_ORDER_COLUMNS} from orders o where o.id = any($1::text[]) order by o.id", ids)
    )


async def release(conn: Conn, run_id: int, checked: Sequence[tuple[str, bool]], *, holder: str | None) -> None:
    """End the leases of checked orders, given as (order id, whether its check failed): see _RELEASE.

    `failed` must be False in a dry run: it changes no schedule.
    """
    await conn.execute(_RELEASE, run_id, [order_id for order_id, _ in checked], [f for _, f in checked], holder)


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


async def order_statuses(conn: Conn, order_ids: Sequence[str]) -> dict[str, str]:
    """The current status of each order (one statement for a batch of checks)."""
    rows = await conn.fetch("select id, status from orders where id = any($1::text[])", list(order_ids))
    return {r["id"]: r["status"] for r in rows}
