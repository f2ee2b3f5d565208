"""API-key authentication and scopes. (Interface fixed; implementation lands with the orders API.)"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.types import Guard

SCOPES = ("orders:read", "orders:write", "recon:read", "recon:run")


def requires(scope: str) -> Guard:
    """A guard that lets through only requests whose API key holds `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        return None

    return guard


def middleware() -> list[DefineMiddleware]:
    """The API-key authentication middleware for every route not excluded from auth."""
    return []
