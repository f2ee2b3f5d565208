"""`GET /metrics`: the Prometheus exposition, summed over every process in multiprocess mode (service/metrics.py)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Response

from service import metrics, metrics_state


@get("/metrics", exclude_from_auth=True, include_in_schema=False)
async def scrape(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Event counters of all processes plus the state gauges read from PostgreSQL and Redis now."""
    state = request.app.state
    snapshot = await metrics_state.snapshot(state.pool, state.redis, state.settings.queue_name)
    return Response(metrics.render([snapshot]), media_type=metrics.CONTENT_TYPE)


routes = [scrape]
