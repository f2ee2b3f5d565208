"""API-key authentication (middleware) and scopes (guards) for the `/v1` API (DESIGN.md §5).

The middleware answers 401 for a missing, unknown or revoked key on every route except the
public ones below (webhooks authenticate by signature; probes, metrics and the schema are
open) and handlers marked `exclude_from_auth=True`. A route then names the scope it needs
with `opt=requires("orders:read")`: 403 for a valid key without it.

The scope is checked here, right after the key, not by a litestar guard: litestar hands every guard
a copy of the route handler, made per request (16 µs, a tenth of a status read's own CPU).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from service.apikeys import SCOPES, ApiKey

# /ops: the console signs in with its own session cookie (service/ops/web.py), not a bearer key.
PUBLIC_PATHS = [r"^/webhooks(/|$)", r"^/healthz$", r"^/readyz$", r"^/metrics$", r"^/schema(/|$)", r"^/ops(/|$)"]

# The OpenAPI security requirement of a keyed route (the scheme is declared in service.app).
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]

SCOPE = "payrecon_scope"  # the route option `requires` sets

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="payrecon"'}


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = _authorization(connection.scope["headers"])
        if not header:
            raise NotAuthorizedException("missing API key: send Authorization: Bearer <key>", headers=_CHALLENGE)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("the Authorization header must be: Bearer <key>", headers=_CHALLENGE)
        key: ApiKey | None = await connection.app.state.apikeys.authenticate(connection.app.state.pool, token.strip())
        if key is None:
            raise NotAuthorizedException("invalid or revoked API key", headers=_CHALLENGE)
        scope = scope_of(connection.route_handler)
        if scope is not None and not key.allows(scope):
            raise PermissionDeniedException(f"API key {key.prefix} lacks scope {scope}")
        return AuthenticationResult(user=key.name, auth=key)


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The Authorization header, read off the ASGI scope: litestar's `connection.headers` parses them all."""
    for name, value in headers:
        if name == b"authorization":  # ASGI servers give header names in lower case
            return value.decode("latin-1")
    return None


def requires(scope: str) -> dict[str, str]:
    """The route option that lets through only requests whose API key holds `scope`: `opt=requires(…)`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return {SCOPE: scope}


def scope_of(handler: BaseRouteHandler) -> str | None:
    """The scope a route requires, if it names one."""
    scope: str | None = handler.opt.get(SCOPE)
    return scope


def middleware() -> list[DefineMiddleware]:
    """The API-key authentication middleware for every route not excluded from auth."""
    return [DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS)]
