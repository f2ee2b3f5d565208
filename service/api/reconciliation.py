"""Reconciliation runs for ops: start one, list them, read one and its findings, export CSV (DESIGN.md §5).

The API never runs a reconciliation itself: it creates the run row and enqueues the job by its
name (`service.jobs.RECONCILE_JOB`), so `service` does not import `reconciler`. A worker leads
the run; until then it reads `running` with no counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import msgspec
from arq import ArqRedis
from litestar import Request, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, RawBody
from litestar.response import Response, Stream

from service import pages, problems, runs
from service.api.bodies import decode, since_param
from service.api.paging import Cursor, Limit
from service.auth import SECURITY, requires
from service.jobs import RECONCILE_JOB
from service.problems import NotFoundError, UnavailableError
from service.runs import Finding, FindingKind, ReconcileRun, RunParams, RunStatus, Trigger

CSV = "text/csv"


class StartRun(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The optional body of `POST /v1/reconciliation/runs`."""

    provider: str | None = None  # only orders with a reference at this gateway
    # audit every order created since: RFC 3339 (UTC without offset) or a duration back from now (`2d`)
    since: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    dry_run: bool = False  # record findings, change no order


class RunPage(msgspec.Struct, frozen=True):
    items: list[ReconcileRun]
    next_cursor: str | None


class FindingPage(msgspec.Struct, frozen=True):
    items: list[Finding]
    next_cursor: str | None


def _wants_csv(request: Request[Any, Any, Any]) -> bool:
    return request.accept.best_match(["application/json", CSV], default="application/json") == CSV


def _csv(rows: AsyncIterator[str], filename: str) -> Stream:
    return Stream(
        rows,
        media_type=f"{CSV}; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@post(
    "/v1/reconciliation/runs",
    status_code=202,
    opt=requires("recon:run"),
    security=SECURITY,
    operation_id="startReconciliationRun",
    tags=["reconciliation"],
    responses=problems.responses(413),
)
async def start_run(request: Request[Any, Any, Any], body: RawBody) -> Response[ReconcileRun]:
    """Start a run now: 202 with the run; a worker leads it. Body (optional): provider, since, dry_run."""
    wanted = decode(body, StartRun) if body.strip() else StartRun()
    configured = sorted(request.app.state.gateways)
    if wanted.provider is not None and wanted.provider not in configured:
        raise problems.invalid(
            "provider",
            f"gateway {wanted.provider[:64]!r} is not configured (configured: {', '.join(configured) or 'none'})",
        )
    since = since_param("since", wanted.since)
    run = await launch(
        request.app.state.pool,
        request.app.state.redis,
        trigger=Trigger.API,
        params=RunParams(provider=wanted.provider, since=since),
        dry_run=wanted.dry_run,
    )
    return Response(run, status_code=202, headers={"location": f"/v1/reconciliation/runs/{run.id}"})


async def launch(
    pool: asyncpg.Pool, redis: ArqRedis, *, trigger: Trigger, params: RunParams, dry_run: bool
) -> ReconcileRun:
    """Create a run and enqueue the job that leads it (the API's and the ops console's way to start one)."""
    async with pool.acquire() as conn:
        run = await runs.create_run(conn, trigger=trigger, params=params, dry_run=dry_run)
    assert run is not None  # no slot: never a conflict
    try:
        await redis.enqueue_job(RECONCILE_JOB, run.id, _job_id=runs.job_id(run))
    except Exception as exc:  # Redis down: say so, and do not leave a run nobody will lead
        async with pool.acquire() as conn:
            await runs.finish_run(conn, run.id, RunStatus.FAILED, {}, error=f"could not enqueue: {exc}")
        raise UnavailableError("the job queue (Redis) is unreachable; try again") from None
    return run


@get(
    "/v1/reconciliation/runs",
    opt=requires("recon:read"),
    security=SECURITY,
    operation_id="listReconciliationRuns",
    tags=["reconciliation"],
    responses={
        200: ResponseSpec(
            data_container=RunPage, description="A page of runs (or, with `Accept: text/csv`, all as CSV)."
        ),
        **problems.responses(),
    },
)
async def list_runs(
    request: Request[Any, Any, Any],
    limit: Limit = 50,
    cursor: Cursor = None,
    trigger: FromQuery[Trigger | None] = None,
) -> Response[Any]:
    """Runs, newest first, with keyset pagination (`next_cursor`); `Accept: text/csv` exports them all.

    `trigger` keeps one kind: `cron` (every PAYRECON_RECONCILE_EVERY: open orders), `audit` (every
    PAYRECON_RECONCILE_AUDIT_EVERY: every order inside the horizon, paid ones too), `api` or `cli`.
    """
    pool = request.app.state.pool
    _, before = pages.decode_cursor(cursor, int)
    if _wants_csv(request):

        async def rows() -> AsyncIterator[str]:
            yield runs.csv_line(runs.RUN_CSV_HEADER)
            async for run in runs.iter_runs(pool, before_id=before, trigger=trigger):
                yield runs.csv_line(runs.run_csv_values(run))

        return _csv(rows(), "reconciliation-runs.csv")
    async with pool.acquire() as conn:
        found = await runs.list_runs(conn, before_id=before, limit=limit + 1, trigger=trigger)
    items, next_cursor = pages.cut(found, limit, lambda run: (run.started_at, run.id))
    return Response(RunPage(items=items, next_cursor=next_cursor))


async def _run_or_404(request: Request[Any, Any, Any], run_id: int) -> ReconcileRun:
    async with request.app.state.pool.acquire() as conn:
        run = await runs.get_run(conn, run_id)
    if run is None:
        raise NotFoundError(f"no reconciliation run {run_id}")
    return run


@get(
    "/v1/reconciliation/runs/{run_id:int}",
    opt=requires("recon:read"),
    security=SECURITY,
    operation_id="getReconciliationRun",
    tags=["reconciliation"],
    responses=problems.responses(404),
)
async def get_run(request: Request[Any, Any, Any], run_id: FromPath[int]) -> ReconcileRun:
    """One run: parameters, status, timing and counts per gateway and finding kind."""
    return await _run_or_404(request, run_id)


@get(
    "/v1/reconciliation/runs/{run_id:int}/findings",
    opt=requires("recon:read"),
    security=SECURITY,
    operation_id="listReconciliationFindings",
    tags=["reconciliation"],
    responses={
        200: ResponseSpec(
            data_container=FindingPage, description="A page of findings (or, with `Accept: text/csv`, all as CSV)."
        ),
        **problems.responses(404),
    },
)
async def list_findings(
    request: Request[Any, Any, Any],
    run_id: FromPath[int],
    kind: FromQuery[FindingKind | None] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response[Any]:
    """A run's findings in order, optionally of one kind; `Accept: text/csv` exports them all."""
    _, after = pages.decode_cursor(cursor, int)
    await _run_or_404(request, run_id)
    pool = request.app.state.pool
    if _wants_csv(request):

        async def rows() -> AsyncIterator[str]:
            yield runs.csv_line(runs.FINDING_CSV_HEADER)
            async for finding in runs.iter_findings(pool, run_id, kind=kind, after_id=after):
                yield runs.csv_line(runs.finding_csv_values(finding))

        suffix = f"-{kind.value}" if kind else ""
        return _csv(rows(), f"run-{run_id}-findings{suffix}.csv")
    async with pool.acquire() as conn:
        found = await runs.list_findings(conn, run_id, kind=kind, after_id=after, limit=limit + 1)
    items, next_cursor = pages.cut(found, limit, lambda finding: (finding.created_at, finding.id))
    return Response(FindingPage(items=items, next_cursor=next_cursor))


routes = [start_run, list_runs, get_run, list_findings]
