"""Reconciliation runs, their findings and the reconciler's scheduling state: the SQL (DESIGN.md §6).

It lives in `service` because the REST API reads runs and findings and `service` never imports
`reconciler`; the reconciler calls these functions to claim orders and record what it found.
Nothing here writes `orders`: the ledger is its only writer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import msgspec

from service.db import Conn


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every candidate was checked and answered
    PARTIAL = "partial"  # some findings are errors or skipped candidates (or a catch-up failed)
    FAILED = "failed"  # the run could not do its job (aborted, or every gateway failed)


class Trigger(StrEnum):
    CRON = "cron"  # the PAYRECON_RECONCILE_EVERY slot: open orders and open anomalies
    AUDIT = "audit"  # the PAYRECON_RECONCILE_AUDIT_EVERY slot: every order inside the horizon, paid too
    API = "api"
    CLI = "cli"
    CONSOLE = "console"  # started from the ops console (migrations/0041)


class FindingKind(StrEnum):
    IN_SYNC = "in_sync"
    REPAIRED = "repaired"
    MISMATCH = "mismatch"  # the gateway says what the ledger will not accept (never auto-reversed)
    MISSING_AT_GATEWAY = "missing_at_gateway"
    ERROR = "error"
    SKIPPED = "skipped"  # a candidate the run could not check (leased elsewhere, breaker open, its checker gone)


class RunParams(msgspec.Struct, frozen=True, kw_only=True):
    provider: str | None = None  # only orders with a reference at this gateway
    since: datetime | None = None  # a sweep: every order created since, any status, whatever its backoff


class ReconcileRun(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    slot: datetime | None
    trigger: Trigger
    status: RunStatus
    params: RunParams
    dry_run: bool
    counts: dict[str, Any]
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    run_id: int
    order_id: str
    provider: str
    account: str
    kind: FindingKind
    from_status: str | None
    to_status: str | None
    gateway_status: str | None
    detail: str | None
    created_at: datetime


class NewFinding(msgspec.Struct, frozen=True, kw_only=True):
    """A finding about to be recorded (`record_findings`): what a check of one order concluded."""

    order_id: str
    provider: str
    account: str
    kind: FindingKind
    from_status: str | None = None
    to_status: str | None = None
    gateway_status: str | None = None
    detail: str | None = None


_RUN_COLUMNS = "id, slot, trigger, status, params, dry_run, counts, error, started_at, finished_at"
_FINDING_COLUMNS = (
    "id, run_id, order_id, provider, account, kind, from_status, to_status, gateway_status, detail, created_at"
)


def job_id(run: ReconcileRun, role: str = "lead") -> str:
    """The arq job id of a run's job: unique per run (a start time in µs: a recreated database's run 1
    must not collide with an old run 1's job result still kept in Redis)."""
    return f"reconcile:{role}:{run.id}:{int(run.started_at.timestamp() * 1_000_000)}"


def _run(record: asyncpg.Record | None) -> ReconcileRun | None:
    return None if record is None else msgspec.convert(dict(record), ReconcileRun, strict=False)


async def create_run(
    conn: Conn,
    *,
    trigger: Trigger,
    params: RunParams,
    dry_run: bool = False,
    slot: datetime | None = None,
) -> ReconcileRun | None:
    """A new `running` run; None when a `trigger` run for `slot` exists already (N workers, one run per slot)."""
    # (trigger, slot): an audit slot and the 5-minute slot on the same instant are two runs (0002)
    record = await conn.fetchrow(
        f"""insert into reconcile_runs (slot, trigger, params, dry_run) values ($1, $2, $3, $4)
            on conflict (trigger, slot) do nothing returning {_RUN_COLUMNS}""",
        slot,
        trigger.value,
        msgspec.to_builtins(params),
        dry_run,
    )
    return _run(record)


async def get_run(conn: Conn, run_id: int) -> ReconcileRun | None:
    return _run(await conn.fetchrow(f"select {_RUN_COLUMNS} from reconcile_runs where id = $1", run_id))


async def run_of_slot(conn: Conn, slot: datetime, trigger: Trigger) -> ReconcileRun | None:
    return _run(
        await conn.fetchrow(
            f"select {_RUN_COLUMNS} from reconcile_runs where trigger = $1 and slot = $2", trigger.value, slot
        )
    )


async def latest_run(conn: Conn, trigger: Trigger | None = None) -> ReconcileRun | None:
    found = await list_runs(conn, before_id=None, limit=1, trigger=trigger)
    return found[0] if found else None


async def list_runs(
    conn: Conn, *, before_id: int | None, limit: int, trigger: Trigger | None = None
) -> list[ReconcileRun]:
    """Newest first, optionally of one trigger (the daily audits among the 5-minute runs); keyset on id."""
    records = await conn.fetch(
        f"""select {_RUN_COLUMNS} from reconcile_runs
            where ($1::bigint is null or id < $1) and ($3::text is null or trigger = $3)
            order by id desc limit $2""",
        before_id,
        limit,
        None if trigger is None else trigger.value,
    )
    return [run for run in map(_run, records) if run is not None]


async def iter_runs(
    pool: asyncpg.Pool, *, before_id: int | None = None, trigger: Trigger | None = None, page: int = 500
) -> AsyncIterator[ReconcileRun]:
    """Every run (before `before_id`), newest first, in keyset pages, as `iter_findings`."""
    before = before_id
    while True:
        async with pool.acquire() as conn:
            found = await list_runs(conn, before_id=before, limit=page, trigger=trigger)
        for run in found:
            yield run
        if len(found) < page:
            return
        before = found[-1].id


async def finish_run(
    conn: Conn,
    run_id: int,
    status: RunStatus,
    counts: dict[str, Any],
    error: str | None = None,
    *,
    lead: str | None = None,
) -> ReconcileRun | None:
    """End a running run once; None when it had ended already, or `lead` no longer leads it (taken over).

    Its plan (`run_candidates`) goes with it: an ended run's findings say all there is to say.
    """
    return _run(
        await conn.fetchrow(
            f"""with ended as (
                    update reconcile_runs set status = $2, counts = $3, error = $4, finished_at = now()
                    where id = $1 and status = 'running' and ($5::text is null or lead is not distinct from $5)
                    returning {_RUN_COLUMNS}
                ), dropped as (delete from run_candidates where run_id in (select id from ended))
                select * from ended""",
            run_id,
            status.value,
            counts,
            error,
            lead,
        )
    )


async def record_skipped(conn: Conn, run_id: int) -> tuple[int, int]:
    """A `skipped` finding for each planned candidate the run did not check; returns (planned, skipped).

    The plan is `run_candidates`, written as the run starts (reconciler.candidates.prepare) and dropped
    when the run ends (finish_run).
    """
    skipped = await conn.fetch(
        """insert into reconcile_findings (run_id, order_id, provider, account, kind, detail)
           select rc.run_id, o.id, o.provider, o.account, 'skipped',
                  case when c.lease_until > now() and c.lease_run_id is distinct from rc.run_id
                       then 'not checked: leased by run ' || c.lease_run_id || ' until ' || c.lease_until
                       else 'not checked by this run' end
           from run_candidates rc
           join orders o on o.id = rc.order_id
           left join order_checks c on c.order_id = rc.order_id
           where rc.run_id = $1
             and not exists (select 1 from reconcile_findings f where f.run_id = rc.run_id and f.order_id = rc.order_id)
           on conflict (run_id, order_id) do nothing
           returning id""",
        run_id,
    )
    planned = await conn.fetchval("select count(*) from run_candidates where run_id = $1", run_id)
    return int(planned), len(skipped)


async def fail_abandoned(conn: Conn, older_than: float, quiet: float = 600.0) -> list[int]:
    """Fail runs nobody is finishing: running for long, no live lease, no finding for `quiet` seconds.

    A long run (an audit of a busy week) holds no lease once its last order is checked, while its
    lead ends it (Stripe catch-up): its recent findings say it is alive.
    """
    records = await conn.fetch(
        """update reconcile_runs r set status = 'failed', finished_at = now(),
               error = 'abandoned: no worker finished it (worker stopped or lost)'
           where r.status = 'running' and r.started_at < now() - make_interval(secs => $1)
             and not exists (select 1 from order_checks c where c.lease_run_id = r.id and c.lease_until > now())
             and not exists (select 1 from reconcile_findings f
                             where f.run_id = r.id and f.created_at > now() - make_interval(secs => $2))
           returning r.id""",
        older_than,
        quiet,
    )
    return [r["id"] for r in records]


async def finding_counts(conn: Conn, run_id: int) -> list[tuple[str, str, int]]:
    """(gateway, kind, count) of a run's findings."""
    records = await conn.fetch(
        "select provider, kind, count(*) as n from reconcile_findings where run_id = $1 group by 1, 2 order by 1, 2",
        run_id,
    )
    return [(r["provider"], r["kind"], r["n"]) for r in records]


async def list_findings(
    conn: Conn,
    run_id: int,
    *,
    kind: FindingKind | None,
    after_id: int | None,
    limit: int,
    provider: str | None = None,
) -> list[Finding]:
    records = await conn.fetch(
        f"""select {_FINDING_COLUMNS} from reconcile_findings
            where run_id = $1 and ($2::text is null or kind = $2) and ($3::bigint is null or id > $3)
              and ($5::text is null or provider = $5)
            order by id limit $4""",
        run_id,
        None if kind is None else kind.value,
        after_id,
        limit,
        provider,
    )
    return msgspec.convert([dict(r) for r in records], list[Finding], strict=False)


async def iter_findings(
    pool: asyncpg.Pool,
    run_id: int,
    *,
    kind: FindingKind | None = None,
    after_id: int | None = None,
    page: int = 500,
    provider: str | None = None,
) -> AsyncIterator[Finding]:
    """Every finding of a run (after `after_id`) in keyset pages: an export's memory does not grow with the run."""
    after = after_id
    while True:
        async with pool.acquire() as conn:
            found = await list_findings(conn, run_id, kind=kind, after_id=after, limit=page, provider=provider)
        for finding in found:
            yield finding
        if len(found) < page:
            return
        after = found[-1].id


async def record_finding(
    conn: Conn,
    run_id: int,
    *,
    order_id: str,
    provider: str,
    account: str,
    kind: FindingKind,
    from_status: str | None = None,
    to_status: str | None = None,
    gateway_status: str | None = None,
    detail: str | None = None,
) -> bool:
    """One finding per (run, order): False when the order has one in this run already."""
    found = NewFinding(
        order_id=order_id,
        provider=provider,
        account=account,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        gateway_status=gateway_status,
        detail=detail,
    )
    return await record_findings(conn, run_id, [found]) == 1


async def record_findings(conn: Conn, run_id: int, findings: Sequence[NewFinding]) -> int:
    """Several orders' findings in one statement, one per (run, order); returns how many were new.

    An order with a finding in this run already keeps its first. Rows go in in order id order: two
    batches meeting on the same orders (a participant declared gone, and the one checking its
    orders again) wait for each other in one direction only, never in a cycle.
    """
    rows = sorted(findings, key=lambda f: f.order_id)
    added = await conn.fetchval(
        """with added as (
               insert into reconcile_findings
                   (run_id, order_id, provider, account, kind, from_status, to_status, gateway_status, detail)
               select $1, f.order_id, f.provider, f.account, f.kind, f.from_status, f.to_status, f.gateway_status,
                      f.detail
               from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                           $9::text[]) with ordinality
                    as f (order_id, provider, account, kind, from_status, to_status, gateway_status, detail, n)
               order by f.n
               on conflict (run_id, order_id) do nothing
               returning 1)
           select count(*) from added""",
        run_id,
        [f.order_id for f in rows],
        [f.provider for f in rows],
        [f.account for f in rows],
        [f.kind.value for f in rows],
        [f.from_status for f in rows],
        [f.to_status for f in rows],
        [f.gateway_status for f in rows],
        [f.detail for f in rows],
    )
    return int(added)


FINDING_CSV_HEADER = (
    "run_id",
    "order_id",
    "provider",
    "account",
    "kind",
    "from_status",
    "to_status",
    "gateway_status",
    "detail",
    "created_at",
)
RUN_CSV_HEADER = ("id", "trigger", "status", "dry_run", "provider", "since", "started_at", "finished_at", "error")


def csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(["" if v is None else _csv_value(v) for v in values])
    return buffer.getvalue()


def _csv_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet must not run a gateway's text as a formula
    return value


def finding_csv_values(finding: Finding) -> tuple[object, ...]:
    f = finding
    return (
        f.run_id,
        f.order_id,
        f.provider,
        f.account,
        f.kind.value,
        f.from_status,
        f.to_status,
        f.gateway_status,
        f.detail,
        f.created_at,
    )


def run_csv_values(run: ReconcileRun) -> tuple[object, ...]:
    p = run.params
    return (
        run.id,
        run.trigger.value,
        run.status.value,
        run.dry_run,
        p.provider,
        p.since,
        run.started_at,
        run.finished_at,
        run.error,
    )


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    return csv_line(header) + "".join(csv_line(row) for row in rows)


# --- Stripe catch-up cursors ----------------------------------------------------------------------


async def get_cursor(conn: Conn, provider: str, account: str) -> int | None:
    cursor: int | None = await conn.fetchval(
        "select cursor from catch_up_cursors where provider = $1 and account = $2", provider, account
    )
    return cursor


async def save_cursor(conn: Conn, provider: str, account: str, cursor: int) -> None:
    # greatest(): two runs racing never move the cursor backwards
    await conn.execute(
        """insert into catch_up_cursors (provider, account, cursor) values ($1, $2, $3)
           on conflict (provider, account) do update
           set cursor = greatest(catch_up_cursors.cursor, excluded.cursor), updated_at = now()""",
        provider,
        account,
        cursor,
    )
