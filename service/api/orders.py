"""Orders REST API for e-commerce backends (DESIGN.md §5): register, add references, read, list.

Bodies are decoded strictly before litestar's own decoding (which coerces "1" into 1): a wrong type, a
negative amount, a bad currency, an unknown field or oversized metadata is a 400 problem
document whose `extra[].key` names the field — never a 500.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Response

from providers.base import PaymentStatus
from providers.registry import adapter_classes
from service import ledger, orders
from service.auth import SECURITY, requires
from service.model import MAX_JSON_BYTES, NewOrder, NewReference, Order, Transition
from service.orders import CursorError, StoredEvent

T = TypeVar("T")

Limit = Annotated[int, Parameter(ge=1, le=500, description="Page size (1–500).")]


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[Order]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


class AuditTrail(msgspec.Struct, kw_only=True):
    order_id: str
    events: list[StoredEvent]  # every event matched to the order, with its outcome and source
    transitions: list[Transition]  # every step the order took, and the event that caused it


def invalid(request: Request[Any, Any, Any], key: str, message: str, source: str = "body") -> ValidationException:
    """A 400 shaped like litestar's own validation errors, naming the field."""
    return ValidationException(
        detail=f"Validation failed for {request.method} {request.url.path}",
        extra=[{"message": message, "key": key, "source": source}],
    )


async def strict_body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    try:
        return msgspec.json.decode(await request.body(), type=type_, strict=True)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        key = path.rstrip("`").lstrip(".") or _named_field(message) or "body"
        raise invalid(request, key, message) from None
    except msgspec.DecodeError as exc:
        raise invalid(request, "body", f"JSON is malformed: {exc}") from None


def strictly(type_: type[Any]) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A `before_request` hook: runs after the guards and before litestar's (lax) body decoding."""

    async def check(request: Request[Any, Any, Any]) -> None:
        await strict_body(request, type_)

    return check


def _named_field(message: str) -> str | None:
    # "Object contains unknown field `bogus`" / "Object missing required field `id`"
    return message.rsplit("`", 2)[1] if message.count("`") >= 2 and "field" in message else None


def check_json_fields(request: Request[Any, Any, Any], **fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        encoded = msgspec.json.encode(value)
        if len(encoded) > MAX_JSON_BYTES:
            raise invalid(request, key, f"at most {MAX_JSON_BYTES} bytes of JSON (got {len(encoded)})")
        if b"\\u0000" in encoded:  # PostgreSQL's jsonb cannot hold NUL characters
            raise invalid(request, key, "NUL characters are not allowed")


@functools.cache
def _installed_gateways() -> frozenset[str]:
    return frozenset(adapter_classes())


def check_provider(request: Request[Any, Any, Any], state: State, provider: str) -> None:
    known = set(state.gateways) | _installed_gateways()
    if provider not in known:
        raise invalid(request, "provider", f"unknown gateway {provider!r}; known: {', '.join(sorted(known))}")


@post(
    "/v1/orders",
    guards=[requires("orders:write")],
    security=SECURITY,
    operation_id="registerOrder",
    tags=["orders"],
    status_code=201,
    before_request=strictly(NewOrder),
)
async def register_order(request: Request[Any, Any, Any], state: State, data: JSONBody[NewOrder]) -> Response[Order]:
    """Register an expected payment: 201 when new, 200 for the same body again, 409 for another body."""
    new = data  # checked by `strictly(NewOrder)` first
    check_provider(request, state, new.provider)
    check_json_fields(request, provider_data=new.provider_data, metadata=new.metadata)
    registration = await ledger.register_order(state.pool, new)
    return Response(registration.order, status_code=201 if registration.created else 200)


@post(
    "/v1/orders/{order_id:str}/references",
    guards=[requires("orders:write")],
    security=SECURITY,
    operation_id="addOrderReference",
    tags=["orders"],
    status_code=201,
    before_request=strictly(NewReference),
)
async def add_reference(
    request: Request[Any, Any, Any], state: State, order_id: FromPath[str], data: JSONBody[NewReference]
) -> Response[Order]:
    """Add the gateway reference of a new payment attempt: 201 new, 200 already there, 409 another order's."""
    ref = data  # checked by `strictly(NewReference)` first
    check_provider(request, state, ref.provider)
    check_json_fields(request, provider_data=ref.provider_data)
    registration = await ledger.add_reference(state.pool, order_id, ref)
    return Response(registration.order, status_code=201 if registration.created else 200)


@get(
    "/v1/orders/{order_id:str}",
    guards=[requires("orders:read")],
    security=SECURITY,
    operation_id="getOrder",
    tags=["orders"],
)
async def get_order(state: State, order_id: FromPath[str]) -> Order:
    """The order: status, amounts, refunded amount, gateway ids and references, timestamps, version."""
    async with state.pool.acquire() as conn:
        order = await orders.get_order(conn, order_id)
    if order is None:
        raise ledger.OrderNotFoundError(f"no order {order_id}")
    return order


@get(
    "/v1/orders/{order_id:str}/events",
    guards=[requires("orders:read")],
    security=SECURITY,
    operation_id="getOrderEvents",
    tags=["orders"],
)
async def get_order_events(state: State, order_id: FromPath[str]) -> AuditTrail:
    """The audit trail: every event with its outcome and source, every transition."""
    async with state.pool.acquire() as conn:
        if await orders.get_order(conn, order_id) is None:
            raise ledger.OrderNotFoundError(f"no order {order_id}")
        events, transitions = await orders.order_events(conn, order_id)
    return AuditTrail(order_id=order_id, events=events, transitions=transitions)


@get("/v1/orders", guards=[requires("orders:read")], security=SECURITY, operation_id="listOrders", tags=["orders"])
async def list_orders(
    request: Request[Any, Any, Any],
    state: State,
    status: FromQuery[PaymentStatus | None] = None,
    provider: FromQuery[str | None] = None,
    updated_since: FromQuery[datetime | None] = None,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> OrderPage:
    """Orders by last update, oldest first; follow `next_cursor`. A time without zone is UTC."""
    try:
        async with state.pool.acquire() as conn:
            items, next_cursor = await orders.list_orders(
                conn,
                limit=limit,
                status=status,
                provider=provider,
                updated_since=as_utc(updated_since),
                cursor=cursor,
            )
    except CursorError as exc:
        raise invalid(request, "cursor", str(exc), source="query") from None
    return OrderPage(items=items, next_cursor=next_cursor)


def as_utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


routes = [register_order, add_reference, get_order, get_order_events, list_orders]
