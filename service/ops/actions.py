"""Sign-in, sign-out and the console's actions (POST): each one audited with the key's name and a note.

Actions need `recon:write`. None writes `orders`: "check this order now" is a job that asks the
gateway and applies the answer through the ledger (source `operator`), a run is started as the
API starts one, and anomalies only change their review state.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from service import apikeys, metrics
from service.api.reconciliation import launch
from service.jobs import CHECK_ORDER_JOB
from service.ops import audit, sessions, web
from service.problems import UnavailableError
from service.runs import RunParams, Trigger

WRITE = [web.requires(web.WRITE)]
READ = [web.requires(web.READ)]
_DURATION = re.compile(r"^(\d{1,5})([mhd])$")


@get("/ops/login", name="ops:login")
async def login_form(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Template:
    token = secrets.token_urlsafe(24)
    return web.render(
        request, "login.html", login_csrf=token, next=web.safe_next(next), error=None, cookies=[web.login_cookie(token)]
    )


@post("/ops/login", name="ops:sign-in", exclude_from_auth=True, status_code=303)
async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    if not web.same_origin(request):
        raise web.ForbiddenError("this form was submitted from another site")
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    back_to = web.safe_next(form.get("next"))
    expected = request.cookies.get(web.LOGIN_COOKIE, "")
    sent = form.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _login_again(request, back_to, "The sign-in form expired; try again.", 400)
    async with request.app.state.pool.acquire() as conn:
        key = await apikeys.authenticate(conn, form.get("api_key", "").strip())
        if key is None:
            return _login_again(request, back_to, "That key is unknown or revoked.", 401)
        if not key.allows(web.READ):
            return _login_again(request, back_to, f"The key {key.prefix} lacks scope {web.READ}.", 403)
        token = await sessions.open_session(conn, key)
    session = web.session_cookie(token, max_age=int(sessions.LIFETIME.total_seconds()))
    return Redirect(back_to, status_code=303, headers=web.SECURITY_HEADERS, cookies=[session, web.login_cookie("")])


def _login_again(request: Request[Any, Any, Any], back_to: str, error: str, status: int) -> Template:
    token = secrets.token_urlsafe(24)
    return web.render(
        request,
        "login.html",
        status_code=status,
        login_csrf=token,
        next=back_to,
        error=error,
        cookies=[web.login_cookie(token)],
    )


@post("/ops/logout", guards=READ, name="ops:logout", status_code=303)
async def sign_out(request: Request[Any, Any, Any]) -> Redirect:
    await web.form_of(request)
    async with request.app.state.pool.acquire() as conn:
        await sessions.close(conn, request.cookies.get(web.COOKIE, ""))
    return Redirect(
        "/ops/login", status_code=303, headers=web.SECURITY_HEADERS, cookies=[web.session_cookie("", max_age=0)]
    )


def _back(target: str, error: str | None = None) -> Redirect:
    return Redirect(target + (f"?error={error}" if error else ""), status_code=303, headers=web.SECURITY_HEADERS)


async def _noted(request: Request[Any, Any, Any]) -> tuple[dict[str, str], str]:
    form = await web.form_of(request)
    try:
        return form, audit.clean_note(form.get("note"))
    except audit.NoteError as exc:
        raise web.ForbiddenError(str(exc)) from None


def _counted(action: audit.Action) -> None:
    metrics.OPERATOR_ACTIONS.labels(action.value).inc()


@post("/ops/anomalies/{anomaly_id:int}/acknowledge", guards=WRITE, name="ops:acknowledge", status_code=303)
async def acknowledge(request: Request[Any, Any, Any], anomaly_id: FromPath[int]) -> Redirect:
    _, note = await _noted(request)
    async with request.app.state.pool.acquire() as conn:
        done = await audit.acknowledge(conn, anomaly_id, web.current(request).key, note)
    if done is not None:
        _counted(audit.Action.ACKNOWLEDGE_ANOMALY)
    return _back(f"/ops/anomalies/{anomaly_id}", None if done else "not-open")


@post("/ops/anomalies/{anomaly_id:int}/resolve", guards=WRITE, name="ops:resolve", status_code=303)
async def resolve(request: Request[Any, Any, Any], anomaly_id: FromPath[int]) -> Redirect:
    _, note = await _noted(request)
    async with request.app.state.pool.acquire() as conn:
        done = await audit.resolve(conn, anomaly_id, web.current(request).key, note)
    if done is not None:
        _counted(audit.Action.RESOLVE_ANOMALY)
    return _back(f"/ops/anomalies/{anomaly_id}", None if done else "not-open")


@post("/ops/orders/{order_id:str}/check", guards=WRITE, name="ops:check-order", status_code=303)
async def check_order(request: Request[Any, Any, Any], order_id: FromPath[str]) -> Redirect:
    """Ask the order's gateways now (a worker job) and apply the answers through the ledger."""
    form, note = await _noted(request)
    pool, redis = request.app.state.pool, request.app.state.redis
    async with pool.acquire() as conn:
        if await conn.fetchval("select 1 from orders where id = $1", order_id) is None:
            raise NotFoundException(f"no order {order_id}")
        anomaly_id = int(form["anomaly_id"]) if form.get("anomaly_id", "").isdigit() else None
        action = await audit.record(
            conn, audit.Action.CHECK_ORDER, web.current(request).key, note, order_id=order_id, anomaly_id=anomaly_id
        )
    # arq's own job id (a uuid): an id made of ours (the action's) could meet a kept result of another
    # database's action in a shared Redis and be silently dropped as a duplicate.
    try:
        job = await redis.enqueue_job(CHECK_ORDER_JOB, action.id, order_id)
        failure = None if job is not None else "the job queue refused the check"
    except Exception as exc:  # Redis down: the action ends now, saying so, instead of waiting forever
        failure = f"could not enqueue the check: {exc}"
    if failure is not None:
        async with pool.acquire() as conn:
            await audit.finish(conn, action.id, {"error": failure})
    _counted(audit.Action.CHECK_ORDER)
    back = form.get("back", "")
    return _back(back if web.safe_next(back) == back else f"/ops/orders/{order_id}")


def parse_since(text: str, now: datetime) -> datetime | None:
    """A window start: empty (open orders only), a duration back (90m, 12h, 2d) or an ISO time."""
    text = text.strip()
    if not text:
        return None
    found = _DURATION.match(text)
    if found:
        amount, unit = int(found.group(1)), found.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@post("/ops/runs", guards=WRITE, name="ops:start-run", status_code=303)
async def start_run(request: Request[Any, Any, Any]) -> Response[Any]:
    form, note = await _noted(request)
    gateway = form.get("provider") or None
    if gateway is not None and gateway not in request.app.state.gateways:
        raise web.ForbiddenError(f"gateway {gateway!r} is not configured")
    try:
        since = parse_since(form.get("since", ""), datetime.now(UTC))
    except ValueError:
        raise web.ForbiddenError("the window start is a duration back (90m, 12h, 2d) or an ISO time") from None
    pool = request.app.state.pool
    try:
        run = await launch(
            pool,
            request.app.state.redis,
            trigger=Trigger.CONSOLE,
            params=RunParams(provider=gateway, since=since),
            dry_run=form.get("dry_run") == "on",
        )
    except UnavailableError as exc:
        return web.render(request, "error.html", status_code=503, title="Not started", message=str(exc))
    async with pool.acquire() as conn:
        await audit.record(
            conn,
            audit.Action.START_RUN,
            web.current(request).key,
            note,
            run_id=run.id,
            result={"provider": gateway, "since": since.isoformat() if since else None, "dry_run": run.dry_run},
        )
    _counted(audit.Action.START_RUN)
    return _back(f"/ops/runs/{run.id}")


routes = [login_form, sign_in, sign_out, acknowledge, resolve, check_order, start_run]
