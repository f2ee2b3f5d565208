"""The console's pages (GET): overview, runs and findings, anomalies, quarantine, orders, the audit log.

Every page needs a signed-in key with `recon:read`; reading goes through the same query
functions as the REST API (service/orders.py, service/runs.py, service/rejections.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream, Template

from service import orders, pages, runs
from service.notify import deliveries
from service.ops import audit, overview, web
from service.ops.chart import runs_chart
from service.runs import FindingKind, RunStatus, Trigger

PAGE = 200
READ = [web.requires(web.READ)]
ANOMALY_STATES = ("open", "acknowledged", "resolved")


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 18 else None


def _kind(value: str | None) -> FindingKind | None:
    return FindingKind(value) if value in {k.value for k in FindingKind} else None


@get("/ops", guards=READ, name="ops:overview")
async def overview_page(request: Request[Any, Any, Any]) -> Template:
    async with request.app.state.pool.acquire() as conn:
        seen = await overview.overview(conn)
    finished = [r for r in reversed(seen.runs) if r.status is not RunStatus.RUNNING]
    chart = runs_chart(
        [(r.id, overview.finding_count(r, "repaired"), overview.finding_count(r, "in_sync")) for r in finished]
    )
    return web.render(request, "overview.html", seen=seen, chart=chart, count=overview.finding_count)


@get("/ops/runs", guards=READ, name="ops:runs")
async def runs_page(request: Request[Any, Any, Any], before: FromQuery[str | None] = None) -> Template:
    async with request.app.state.pool.acquire() as conn:
        page = await runs.list_runs(conn, before_id=_int(before), limit=PAGE)
    return web.render(
        request,
        "runs.html",
        runs=page,
        more=len(page) == PAGE,
        gateways=sorted(request.app.state.gateways),
        count=overview.finding_count,
    )


@get("/ops/runs/{run_id:int}", guards=READ, name="ops:run")
async def run_page(
    request: Request[Any, Any, Any],
    run_id: FromPath[int],
    kind: FromQuery[str | None] = None,
    provider: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
) -> Template:
    wanted_kind, wanted_provider = _kind(kind), provider or None
    async with request.app.state.pool.acquire() as conn:
        run = await runs.get_run(conn, run_id)
        if run is None:
            raise NotFoundException(f"no run {run_id}")
        counts = await runs.finding_counts(conn, run_id)
        found = await runs.list_findings(
            conn, run_id, kind=wanted_kind, after_id=_int(after), limit=PAGE, provider=wanted_provider
        )
    return web.render(
        request,
        "run.html",
        run=run,
        findings=found,
        more=len(found) == PAGE,
        kinds=[k.value for k in FindingKind],
        providers=sorted({p for p, _, _ in counts}),
        counts=counts,
        kind=wanted_kind.value if wanted_kind else "",
        provider=wanted_provider or "",
        refresh=3 if run.status is RunStatus.RUNNING else None,
    )


@get("/ops/runs/{run_id:int}/findings.csv", guards=READ, name="ops:findings-csv")
async def findings_csv(
    request: Request[Any, Any, Any],
    run_id: FromPath[int],
    kind: FromQuery[str | None] = None,
    provider: FromQuery[str | None] = None,
) -> Stream:
    """The filtered findings as CSV, streamed in keyset pages (the same export as the REST API's)."""
    pool = request.app.state.pool
    wanted_kind, wanted_provider = _kind(kind), provider or None

    async def rows() -> AsyncIterator[str]:
        yield runs.csv_line(runs.FINDING_CSV_HEADER)
        async for finding in runs.iter_findings(pool, run_id, kind=wanted_kind, provider=wanted_provider):
            yield runs.csv_line(runs.finding_csv_values(finding))

    # The filter goes into the file's name when it is a plain word (a gateway name from the URL may not be).
    parts = [wanted_kind.value if wanted_kind else "", wanted_provider or ""]
    name = "-".join([f"run-{run_id}-findings", *(p for p in parts if p and p.replace("_", "").isalnum())]) + ".csv"
    return Stream(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"', **web.SECURITY_HEADERS},
    )


@get("/ops/anomalies", guards=READ, name="ops:anomalies")
async def anomalies_page(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = "open",
    kind: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
) -> Template:
    state = status if status in ANOMALY_STATES else None
    async with request.app.state.pool.acquire() as conn:
        found = await audit.list_anomalies(conn, status=state, kind=kind or None, before_id=_int(before), limit=PAGE)
        kinds = [r["kind"] for r in await conn.fetch("select distinct kind from anomalies order by kind")]
    return web.render(
        request,
        "anomalies.html",
        anomalies=found,
        more=len(found) == PAGE,
        status=state or "",
        kind=kind or "",
        kinds=kinds,
        states=ANOMALY_STATES,
    )


@get("/ops/anomalies/{anomaly_id:int}", guards=READ, name="ops:anomaly")
async def anomaly_page(request: Request[Any, Any, Any], anomaly_id: FromPath[int]) -> Template:
    async with request.app.state.pool.acquire() as conn:
        found = await audit.anomaly(conn, anomaly_id)
        if found is None:
            raise NotFoundException(f"no anomaly {anomaly_id}")
        order = await orders.get_order(conn, found.order_id) if found.order_id else None
        events, _ = await orders.order_events(conn, found.order_id) if found.order_id else ([], [])
        evidence = [e for e in events if e.id == found.event_id]
        if found.event_id is not None and not evidence:  # an event that matched no order (yet)
            evidence = [e for e in (await orders.list_quarantined(conn, limit=500))[0] if e.id == found.event_id]
        actions = await audit.list_actions(conn, anomaly_id=anomaly_id)
    return web.render(request, "anomaly.html", anomaly=found, order=order, evidence=evidence, actions=actions)


@get("/ops/quarantine", guards=READ, name="ops:quarantine")
async def quarantine_page(
    request: Request[Any, Any, Any], provider: FromQuery[str | None] = None, cursor: FromQuery[str | None] = None
) -> Template:
    async with request.app.state.pool.acquire() as conn:
        try:
            events, next_cursor = await orders.list_quarantined(
                conn, limit=PAGE, provider=provider or None, cursor=cursor
            )
        except pages.CursorError:
            events, next_cursor = [], None
    return web.render(
        request,
        "quarantine.html",
        events=events,
        next_cursor=next_cursor,
        provider=provider or "",
        gateways=sorted(request.app.state.gateways),
    )


@get("/ops/orders", guards=READ, name="ops:find-order")
async def find_order(q: FromQuery[str | None] = None) -> Redirect:
    target = (q or "").strip()
    return Redirect(f"/ops/orders/{target}" if target and "/" not in target else "/ops", status_code=303)


@get("/ops/orders/{order_id:str}", guards=READ, name="ops:order")
async def order_page(request: Request[Any, Any, Any], order_id: FromPath[str]) -> Template:
    async with request.app.state.pool.acquire() as conn:
        order = await orders.get_order(conn, order_id)
        if order is None:
            return web.render(
                request, "error.html", status_code=404, title="No such order", message=f"no order {order_id!r}"
            )
        events, transitions = await orders.order_events(conn, order_id)
        anomalies, _ = await orders.list_anomalies(conn, limit=100, order_id=order_id)
        notifications = await deliveries.for_order(conn, order_id)
        actions = await audit.list_actions(conn, order_id=order_id, limit=50)
    pending = any(a.action is audit.Action.CHECK_ORDER and a.finished_at is None for a in actions)
    return web.render(
        request,
        "order.html",
        order=order,
        events=events,
        transitions=transitions,
        anomalies=anomalies,
        notifications=notifications,
        actions=actions,
        payments=getattr(order, "payments", []),
        refresh=2 if pending else None,
    )


@get("/ops/audit", guards=READ, name="ops:audit")
async def audit_page(
    request: Request[Any, Any, Any], action: FromQuery[str | None] = None, before: FromQuery[str | None] = None
) -> Template:
    wanted = audit.Action(action) if action in {a.value for a in audit.Action} else None
    async with request.app.state.pool.acquire() as conn:
        found = await audit.list_actions(conn, action=wanted, before_id=_int(before), limit=PAGE)
    return web.render(
        request,
        "audit.html",
        actions=found,
        more=len(found) == PAGE,
        action=wanted.value if wanted else "",
        choices=[a.value for a in audit.Action],
    )


TRIGGERS = [t.value for t in Trigger]
routes = [
    overview_page,
    runs_page,
    run_page,
    findings_csv,
    anomalies_page,
    anomaly_page,
    quarantine_page,
    find_order,
    order_page,
    audit_page,
]
