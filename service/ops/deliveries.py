"""Rejected and held webhook deliveries in the console: the list, one delivery's raw request, and replay.

Replay goes through `service.replay` (re-verify, re-parse, apply through the ledger with source
`manual`). The console asks for a dry run first: the real replay is offered, and accepted, only
after a dry run of the same delivery by the same key in the last hour got through.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from service import metrics, rejections
from service.ops import audit, web
from service.replay import NotReplayableError, UnknownRejectionError, replay

READ = [web.requires(web.READ)]
WRITE = [web.requires(web.WRITE)]
PAGE = 200
DRY_RUN_VALID = 3600  # seconds a dry run stays the go-ahead for the real replay


@get("/ops/rejected", guards=READ, name="ops:rejected")
async def rejected_page(
    request: Request[Any, Any, Any],
    provider: FromQuery[str | None] = None,
    reason: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    async with request.app.state.pool.acquire() as conn:
        try:
            found, next_cursor = await rejections.list_rejected(
                conn, limit=PAGE, provider=provider or None, reason=reason or None, cursor=cursor
            )
        except ValueError:  # a cursor this page did not give out
            found, next_cursor = [], None
        reasons = [r["reason"] for r in await conn.fetch("select distinct reason from rejected_deliveries order by 1")]
    return web.render(
        request,
        "rejected.html",
        deliveries=found,
        next_cursor=next_cursor,
        provider=provider or "",
        reason=reason or "",
        reasons=reasons,
        gateways=sorted(request.app.state.gateways),
    )


def body_text(body: bytes | None) -> str:
    """The raw body for people: UTF-8 where it is, escapes where it is not (autoescaped by the template)."""
    if body is None:
        return ""
    return body.decode("utf-8", errors="backslashreplace")


async def _dry_run_ok(conn: Any, rejected_id: int, key_id: int) -> bool:
    found = await conn.fetchval(
        """select 1 from operator_actions
           where rejected_delivery_id = $1 and key_id = $2 and action = $3
             and created_at > now() - make_interval(secs => $4) and (result ->> 'ok')::boolean
           limit 1""",
        rejected_id,
        key_id,
        audit.Action.REPLAY_DRY_RUN.value,
        DRY_RUN_VALID,
    )
    return found is not None


@get("/ops/rejected/{rejected_id:int}", guards=READ, name="ops:rejected-delivery")
async def rejected_delivery_page(request: Request[Any, Any, Any], rejected_id: FromPath[int]) -> Template:
    op = web.current(request)
    async with request.app.state.pool.acquire() as conn:
        row = await rejections.get(conn, rejected_id)
        if row is None:
            raise NotFoundException(f"no rejected delivery {rejected_id}")
        actions = await audit.list_actions(conn, rejected_delivery_id=rejected_id, limit=50)
        ready = await _dry_run_ok(conn, rejected_id, op.key.id)
    return web.render(
        request,
        "rejected_delivery.html",
        delivery=row,
        body=body_text(row.raw_body),
        actions=actions,
        ready=ready,
        configured=row.provider in request.app.state.gateways,
    )


@post("/ops/rejected/{rejected_id:int}/replay", guards=WRITE, name="ops:replay", status_code=303)
async def replay_delivery(request: Request[Any, Any, Any], rejected_id: FromPath[int]) -> Response[Any]:
    form = await web.form_of(request)
    try:
        note = audit.clean_note(form.get("note"))
    except audit.NoteError as exc:
        raise web.ForbiddenError(str(exc)) from None
    dry_run = form.get("mode") != "real"
    op = web.current(request)
    pool = request.app.state.pool
    if not dry_run:
        async with pool.acquire() as conn:
            if not await _dry_run_ok(conn, rejected_id, op.key.id):
                raise web.ForbiddenError("run a dry run of this delivery first (it shows what the replay would do)")
    try:
        result = await replay(pool, request.app.state.gateways, rejected_id, dry_run=dry_run)
        outcome: dict[str, Any] = {
            "ok": result.ok,
            "dry_run": result.dry_run,
            "outcomes": [str(o) for o in result.outcomes],
            "error": result.error,
        }
    except (UnknownRejectionError, NotReplayableError) as exc:
        outcome = {"ok": False, "dry_run": dry_run, "outcomes": [], "error": str(exc)}
    action = audit.Action.REPLAY_DRY_RUN if dry_run else audit.Action.REPLAY
    async with pool.acquire() as conn:
        await audit.record(conn, action, op.key, note, rejected_delivery_id=rejected_id, result=outcome)
    metrics.OPERATOR_ACTIONS.labels(action.value).inc()
    return Redirect(f"/ops/rejected/{rejected_id}", status_code=303, headers=web.SECURITY_HEADERS)


routes = [rejected_page, rejected_delivery_page, replay_delivery]
