"""The console's HTTP plumbing: who is signed in, what they may do, CSRF, and rendering a page.

Sign-in takes an API key with scope `recon:read` (actions need `recon:write`) and opens a
server-side session (service/ops/sessions.py); the browser holds only a random token in a cookie
that is `Secure`, `HttpOnly` and `SameSite=Strict`, scoped to `/ops`. Every form carries the
session's CSRF token (compared in constant time), and a POST whose `Origin` names another site is
refused before that, so a page elsewhere can neither read nor submit the console's forms.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template
from litestar.types import Guard

from service.apikeys import ApiKey
from service.ops import sessions

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

COOKIE = "payrecon_ops"
LOGIN_COOKIE = "payrecon_ops_login"  # the sign-in form's CSRF token (there is no session yet)
READ, WRITE = "recon:read", "recon:write"

# No script or style from anywhere but the service itself; never framed.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Operator(msgspec.Struct, frozen=True, kw_only=True):
    key: ApiKey
    csrf_token: str

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def can_act(self) -> bool:
        return self.key.allows(WRITE)


class SignInRequiredError(Exception):
    status_code = 401  # for litestar's exception logging: an expected answer, not a traceback

    def __init__(self, back_to: str) -> None:
        super().__init__("sign in first")
        self.back_to = back_to


class ForbiddenError(Exception):
    """Signed in, but the key lacks the scope, or the form's CSRF token is wrong."""

    status_code = 403


def session_cookie(token: str, *, max_age: int) -> Cookie:
    return Cookie(key=COOKIE, value=token, path="/ops", httponly=True, secure=True, samesite="strict", max_age=max_age)


def login_cookie(token: str) -> Cookie:
    return Cookie(
        key=LOGIN_COOKIE, value=token, path="/ops", httponly=True, secure=True, samesite="strict", max_age=900
    )


async def operator_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Operator | None:
    token = connection.cookies.get(COOKIE)
    if not token:
        return None
    async with connection.app.state.pool.acquire() as conn:
        found = await sessions.find(conn, token)
    return None if found is None else Operator(key=found.key, csrf_token=found.csrf_token)


def requires(scope: str) -> Guard:
    """A guard: a signed-in operator whose key holds `scope`, kept on `request.state.operator`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        op = await operator_of(connection)
        if op is None:
            query = connection.scope.get("query_string", b"").decode("latin-1")
            raise SignInRequiredError(connection.url.path + (f"?{query}" if query else ""))
        if not op.key.allows(scope):
            raise ForbiddenError(f"the key {op.key.prefix} ({op.key.name}) lacks scope {scope}")
        connection.state.operator = op

    return guard


def current(request: Request[Any, Any, Any]) -> Operator:
    op: Operator = request.state.operator
    return op


def same_origin(request: Request[Any, Any, Any]) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # "null": a sandboxed or cross-site context; absent: an older browser
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form, once its origin and CSRF token check out."""
    if not same_origin(request):
        raise ForbiddenError("this form was submitted from another site")
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    sent = values.get("csrf", "")
    if not hmac.compare_digest(sent.encode(), current(request).csrf_token.encode()):
        raise ForbiddenError("the form's CSRF token is missing or stale; reload the page and try again")
    return values


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (`//evil`, `/\\evil`) after sign-in."""
    if target and target.startswith("/ops") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return "/ops"


def render(
    request: Request[Any, Any, Any],
    name: str,
    *,
    status_code: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Template:
    op: Operator | None = getattr(request.state, "operator", None)
    return Template(
        template_name=name,
        context={"op": op, "csrf": op.csrf_token if op else "", "path": request.url.path, **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
        cookies=cookies,
    )


def to_login(request: Request[Any, Any, Any], exc: SignInRequiredError) -> Response[Any]:
    return Redirect(f"/ops/login?next={quote(exc.back_to, safe='/')}", status_code=303, headers=SECURITY_HEADERS)


def forbidden(request: Request[Any, Any, Any], exc: ForbiddenError) -> Response[Any]:
    return render(request, "error.html", status_code=403, title="Not allowed", message=str(exc))
