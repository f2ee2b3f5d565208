"""Anomalies REST API (DESIGN.md §5): what ops must look at, oldest first, keyset-paginated.

Besides the anomaly rows, the events waiting in quarantine for an unregistered order.
"""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.params import FromQuery

from service import orders, problems
from service.api.bodies import since_param
from service.api.orders import Since
from service.api.paging import Cursor, Limit
from service.auth import SECURITY, requires
from service.model import AnomalyKind
from service.orders import AnomalyRecord, StoredEvent


class AnomalyPage(msgspec.Struct, kw_only=True):
    items: list[AnomalyRecord]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


@get(
    "/v1/anomalies",
    opt=requires("orders:read"),
    security=SECURITY,
    operation_id="listAnomalies",
    tags=["anomalies"],
    responses=problems.responses(),
)
async def list_anomalies(
    state: State,
    kind: FromQuery[AnomalyKind | None] = None,
    since: Since = None,
    order_id: FromQuery[str | None] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AnomalyPage:
    """Amount mismatches, late and missed successes, excessive refunds, double payments, gateway flags."""
    async with state.pool.acquire() as conn:
        items, next_cursor = await orders.list_anomalies(
            conn, limit=limit, kind=kind, since=since_param("since", since), order_id=order_id, cursor=cursor
        )
    return AnomalyPage(items=items, next_cursor=next_cursor)


class QuarantinePage(msgspec.Struct, kw_only=True):
    items: list[StoredEvent]
    next_cursor: str | None


@get(
    "/v1/anomalies/quarantined",
    opt=requires("orders:read"),
    security=SECURITY,
    operation_id="listQuarantinedEvents",
    tags=["anomalies"],
    responses=problems.responses(),
)
async def list_quarantined(
    state: State,
    provider: FromQuery[str | None] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> QuarantinePage:
    """Events waiting for an order or reference to be registered (they apply when it is)."""
    async with state.pool.acquire() as conn:
        items, next_cursor = await orders.list_quarantined(conn, limit=limit, provider=provider, cursor=cursor)
    return QuarantinePage(items=items, next_cursor=next_cursor)


routes = [list_anomalies, list_quarantined]
