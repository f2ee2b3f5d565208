"""Liveness and readiness probes (no API key: orchestrators call them)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, get
from litestar.response import Response

PROBE_TIMEOUT = 2.0


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


@get("/healthz", exclude_from_auth=True, operation_id="healthz", tags=["health"])
async def healthz() -> Health:
    """The process is alive and serving."""
    return Health(status="ok")


@get("/readyz", exclude_from_auth=True, operation_id="readyz", tags=["health"])
async def readyz(request: Request[Any, Any, Any]) -> Response[Health]:
    """PostgreSQL and Redis are reachable; 503 naming what is not."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await request.app.state.pool.fetchval("select 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure here means "not ready", never a 500
        checks["database"] = f"unreachable: {type(exc).__name__}: {exc}".strip()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}: {exc}".strip()
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ready" if ready else "unavailable", checks=checks)
    return Response(body, status_code=200 if ready else 503)


routes = [healthz, readyz]
