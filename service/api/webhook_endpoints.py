"""The shop's webhook endpoints over REST: register, list, change, enable/disable, rotate the secret,
read the delivery log, redeliver (issue 11). Deliveries themselves are `service.notify`'s."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Response

from service import pages, problems
from service.api.bodies import strictly
from service.api.paging import Cursor
from service.auth import SECURITY, requires
from service.db import BIGINT_MAX
from service.notify import deliveries, endpoints, jobs
from service.notify.deliveries import Delivery
from service.notify.endpoints import EVENT_TYPES, Endpoint, EndpointWithSecret

Url = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=2048,
        pattern=r"^https?://[^\s\x00-\x1f\x7f]+$",
        description="Where deliveries are POSTed (http or https).",
        examples=["https://shop.example/hooks/payrecon"],
    ),
]
EventTypes = Annotated[
    list[Literal[EVENT_TYPES]],  # type: ignore[valid-type]
    msgspec.Meta(max_length=len(EVENT_TYPES), description="Types to receive; empty or absent: every type."),
]
Description = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$", description="For people.")]
EndpointId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX, description="The endpoint's id.")]
# Smaller pages than the other lists (service/api/paging.py): each delivery carries all its attempts.
Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size (1–200).")]


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/webhook-endpoints`."""

    url: Url
    event_types: EventTypes = []
    description: Description = ""
    enabled: bool = True


class EndpointChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `PATCH /v1/webhook-endpoints/{id}`: only what changes. `enabled: true` also closes the circuit."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None


class Rotation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of a secret rotation: how long the old secret keeps signing beside the new one."""

    overlap_seconds: Annotated[
        int, msgspec.Meta(ge=0, le=int(endpoints.MAX_OVERLAP.total_seconds()), description="0 to 7 days.")
    ] = 86400


class EndpointPage(msgspec.Struct, kw_only=True):
    items: list[Endpoint]


class DeliveryPage(msgspec.Struct, kw_only=True):
    items: list[Delivery]
    next_cursor: str | None  # pass as `cursor` for the next (older) page


async def _endpoint_or_404(state: State, endpoint_id: int) -> Endpoint:
    async with state.pool.acquire() as conn:
        found = await endpoints.get(conn, endpoint_id)
    if found is None:
        raise problems.NotFoundError(f"no webhook endpoint {endpoint_id}")
    return found


@post(
    "/v1/webhook-endpoints",
    opt=requires("webhooks:write"),
    security=SECURITY,
    operation_id="createWebhookEndpoint",
    tags=["webhooks"],
    status_code=201,
    before_request=strictly(NewEndpoint),
    responses=problems.responses(413),
)
async def create_endpoint(state: State, data: JSONBody[NewEndpoint]) -> EndpointWithSecret:
    """Register an endpoint. The answer holds its signing secret (`whsec_…`), shown this once.

    It receives every notification committed from now on whose type it lists (none listed: all).
    """
    async with state.pool.acquire() as conn:
        return await endpoints.create(
            conn, url=data.url, event_types=list(data.event_types), description=data.description, enabled=data.enabled
        )


@get(
    "/v1/webhook-endpoints",
    opt=requires("webhooks:read"),
    security=SECURITY,
    operation_id="listWebhookEndpoints",
    tags=["webhooks"],
    responses=problems.responses(),
)
async def list_endpoints(state: State) -> EndpointPage:
    """Every endpoint, its state and its circuit; never its secrets."""
    async with state.pool.acquire() as conn:
        return EndpointPage(items=await endpoints.list_endpoints(conn))


@get(
    "/v1/webhook-endpoints/{endpoint_id:int}",
    opt=requires("webhooks:read"),
    security=SECURITY,
    operation_id="getWebhookEndpoint",
    tags=["webhooks"],
    responses=problems.responses(404),
)
async def get_endpoint(state: State, endpoint_id: FromPath[EndpointId]) -> Endpoint:
    """One endpoint."""
    return await _endpoint_or_404(state, endpoint_id)


@patch(
    "/v1/webhook-endpoints/{endpoint_id:int}",
    opt=requires("webhooks:write"),
    security=SECURITY,
    operation_id="updateWebhookEndpoint",
    tags=["webhooks"],
    before_request=strictly(EndpointChange),
    responses=problems.responses(404, 413),
)
async def update_endpoint(
    request: Request[object, object, State],
    state: State,
    endpoint_id: FromPath[EndpointId],
    data: JSONBody[EndpointChange],
) -> Endpoint:
    """Change the URL, the types, the description; disable (`enabled: false`) or enable it again.

    While disabled nothing is sent to it and new notifications are not queued for it; enabling it
    resumes the deliveries still pending and closes its circuit.
    """
    async with state.pool.acquire() as conn:
        changed = await endpoints.update(
            conn,
            endpoint_id,
            url=data.url,
            event_types=None if data.event_types is None else list(data.event_types),
            description=data.description,
            enabled=data.enabled,
        )
    if changed is None:
        raise problems.NotFoundError(f"no webhook endpoint {endpoint_id}")
    if data.enabled:
        await jobs.enqueue(request.app.state.redis)
    return changed


@delete(
    "/v1/webhook-endpoints/{endpoint_id:int}",
    opt=requires("webhooks:write"),
    security=SECURITY,
    operation_id="deleteWebhookEndpoint",
    tags=["webhooks"],
    responses=problems.responses(404),
)
async def delete_endpoint(state: State, endpoint_id: FromPath[EndpointId]) -> None:
    """Delete the endpoint: nothing more is sent to it, pending deliveries included (204). Its log is kept."""
    async with state.pool.acquire() as conn:
        if not await endpoints.delete(conn, endpoint_id):
            raise problems.NotFoundError(f"no webhook endpoint {endpoint_id}")


@post(
    "/v1/webhook-endpoints/{endpoint_id:int}/secret/rotate",
    opt=requires("webhooks:write"),
    security=SECURITY,
    operation_id="rotateWebhookSecret",
    tags=["webhooks"],
    status_code=200,
    before_request=strictly(Rotation),
    responses=problems.responses(404, 413),
)
async def rotate_secret(
    state: State, endpoint_id: FromPath[EndpointId], data: JSONBody[Rotation]
) -> EndpointWithSecret:
    """A new signing secret, shown this once. The old one keeps signing for `overlap_seconds` (default a
    day): each delivery meanwhile carries both signatures, so the shop can switch without losing any."""
    async with state.pool.acquire() as conn:
        rotated = await endpoints.rotate_secret(conn, endpoint_id, timedelta(seconds=data.overlap_seconds))
    if rotated is None:
        raise problems.NotFoundError(f"no webhook endpoint {endpoint_id}")
    return rotated


@get(
    "/v1/webhook-endpoints/{endpoint_id:int}/deliveries",
    opt=requires("webhooks:read"),
    security=SECURITY,
    operation_id="listWebhookDeliveries",
    tags=["webhooks"],
    responses=problems.responses(404),
)
async def list_deliveries(
    state: State,
    endpoint_id: FromPath[EndpointId],
    status: FromQuery[Literal["pending", "delivered", "failed"] | None] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeliveryPage:
    """The delivery log, newest first: each delivery's status and every attempt (HTTP code, latency, error)."""
    _, before = pages.decode_cursor(cursor, int)
    await _endpoint_or_404(state, endpoint_id)
    async with state.pool.acquire() as conn:
        found = await deliveries.list_deliveries(conn, endpoint_id, status=status, before_id=before, limit=limit + 1)
    items, next_cursor = pages.cut(found, limit, lambda delivery: (delivery.created_at, delivery.id))
    return DeliveryPage(items=items, next_cursor=next_cursor)


@post(
    "/v1/webhook-endpoints/{endpoint_id:int}/deliveries/{delivery_id:int}/redeliver",
    opt=requires("webhooks:write"),
    security=SECURITY,
    operation_id="redeliverWebhook",
    tags=["webhooks"],
    status_code=202,
    responses=problems.responses(404),
)
async def redeliver(
    request: Request[object, object, State],
    state: State,
    endpoint_id: FromPath[EndpointId],
    delivery_id: FromPath[Annotated[int, Parameter(ge=1, le=BIGINT_MAX, description="The delivery's id.")]],
) -> Response[Delivery]:
    """Send a delivery again now (delivered or failed alike), with the same `webhook-id` and a fresh retry schedule."""
    async with state.pool.acquire() as conn:
        again = await deliveries.redeliver(conn, endpoint_id, delivery_id)
    if again is None:
        raise problems.NotFoundError(f"no delivery {delivery_id} of webhook endpoint {endpoint_id}")
    await jobs.enqueue(request.app.state.redis)
    return Response(again, status_code=202)


routes = [
    create_endpoint,
    list_endpoints,
    get_endpoint,
    update_endpoint,
    delete_endpoint,
    rotate_secret,
    list_deliveries,
    redeliver,
]
