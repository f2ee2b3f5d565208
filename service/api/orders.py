"""Orders REST API for e-commerce backends (DESIGN.md §5): register, add references, read, list.

Bodies are decoded strictly (`service.api.bodies`) and checked against the gateway
(`service.admission`) before the ledger sees them: a wrong type, an unknown field, a currency
the gateway does not take, an account not configured… is a 400 problem whose `errors[].field`
names the field — never a 500.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Response

from providers.base import PaymentStatus
from providers.gateway import Connected
from providers.registry import gateways as installed_gateways
from service import admission, ledger, orders, problems
from service.api.bodies import check_json_fields, since_param, strictly
from service.api.paging import Cursor, Limit
from service.auth import SECURITY, requires
from service.model import NewOrder, NewReference, Order, Transition
from service.order_reads import OrderReads
from service.orders import StoredEvent

Since = Annotated[
    str | None,
    Parameter(description="RFC 3339 time (UTC when no offset is given) or a duration back from now: `90m`, `2d`."),
]


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[Order]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


class AuditTrail(msgspec.Struct, kw_only=True):
    order_id: str
    events: list[StoredEvent]  # every event matched to the order, with its outcome and source
    transitions: list[Transition]  # every step the order took, and the event that caused it


def _known_provider(gateways: dict[str, Connected], provider: str) -> None:
    """A list filter must name a gateway this deployment knows (configured, or installed)."""
    known = set(gateways) | set(installed_gateways())
    if provider not in known:
        raise problems.invalid("provider", f"unknown gateway {provider[:64]!r}; known: {', '.join(sorted(known))}")


@post(
    "/v1/orders",
    opt=requires("orders:write"),
    security=SECURITY,
    operation_id="registerOrder",
    tags=["orders"],
    status_code=201,
    before_request=strictly(NewOrder),
    responses={
        200: ResponseSpec(data_container=Order, description="Already registered with this same body."),
        **problems.responses(409, 413),
    },
)
async def register_order(state: State, data: JSONBody[NewOrder]) -> Response[Order]:
    """Register an expected payment: 201 when new, 200 for the same body again, 409 for another body.

    The gateway must be configured here for the account, take the currency and the amount, and get
    the provider data its status API needs later (VNPay: `vnp_create_date`); otherwise 400.
    """
    new = data  # checked by `strictly(NewOrder)` first
    check_json_fields(provider_data=new.provider_data, metadata=new.metadata)
    admission.check_order(
        state.gateways,
        provider=new.provider,
        account=new.account,
        amount=new.amount,
        currency=new.currency,
        provider_data=new.provider_data,
    )
    registration = await ledger.register_order(state.pool, new)
    return Response(registration.order, status_code=201 if registration.created else 200)


@post(
    "/v1/orders/{order_id:str}/references",
    opt=requires("orders:write"),
    security=SECURITY,
    operation_id="addOrderReference",
    tags=["orders"],
    status_code=201,
    before_request=strictly(NewReference),
    responses={
        200: ResponseSpec(data_container=Order, description="The order already holds this reference."),
        **problems.responses(404, 409, 413),
    },
)
async def add_reference(state: State, order_id: FromPath[str], data: JSONBody[NewReference]) -> Response[Order]:
    """Add the gateway reference of a new payment attempt: 201 new, 200 already there, 409 another order's.

    The attempt's gateway must be configured for the account and take the order's currency and amount.
    """
    ref = data  # checked by `strictly(NewReference)` first
    check_json_fields(provider_data=ref.provider_data)
    async with state.pool.acquire() as conn:
        order = await orders.get_order(conn, order_id)
    if order is None:
        raise ledger.OrderNotFoundError(f"no order {order_id}")
    admission.check_reference(
        state.gateways,
        provider=ref.provider,
        account=ref.account,
        provider_data=ref.provider_data,
        order_amount=order.amount,
        order_currency=order.currency,
    )
    registration = await ledger.add_reference(state.pool, order_id, ref)
    return Response(registration.order, status_code=201 if registration.created else 200)


@get(
    "/v1/orders/{order_id:str}",
    opt=requires("orders:read"),
    security=SECURITY,
    operation_id="getOrder",
    tags=["orders"],
    responses=problems.responses(404),
)
async def get_order(state: State, order_id: FromPath[str]) -> Order:
    """The order: status, amounts, refunded amount, gateway ids and references, timestamps, version."""
    reads: OrderReads = state.order_reads
    order = await reads.get(order_id)
    if order is None:
        raise ledger.OrderNotFoundError(f"no order {order_id}")
    return order


@get(
    "/v1/orders/{order_id:str}/events",
    opt=requires("orders:read"),
    security=SECURITY,
    operation_id="getOrderEvents",
    tags=["orders"],
    responses=problems.responses(404),
)
async def get_order_events(state: State, order_id: FromPath[str]) -> AuditTrail:
    """The audit trail: every event with its outcome and source, every transition."""
    async with state.pool.acquire() as conn:
        if await orders.get_order(conn, order_id) is None:
            raise ledger.OrderNotFoundError(f"no order {order_id}")
        events, transitions = await orders.order_events(conn, order_id)
    return AuditTrail(order_id=order_id, events=events, transitions=transitions)


@get(
    "/v1/orders",
    opt=requires("orders:read"),
    security=SECURITY,
    operation_id="listOrders",
    tags=["orders"],
    responses=problems.responses(),
)
async def list_orders(
    state: State,
    status: FromQuery[PaymentStatus | None] = None,
    provider: Annotated[str | None, Parameter(description="Only orders registered at this gateway.")] = None,
    reference: Annotated[
        str | None,
        Parameter(
            description="Only the order holding this gateway reference (VNPay vnp_TxnRef, MoMo orderId, "
            "Stripe PaymentIntent id), whichever attempt it was."
        ),
    ] = None,
    provider_payment_id: Annotated[
        str | None, Parameter(description="Only the order paid by this gateway payment id (PaymentIntent, transId).")
    ] = None,
    updated_since: Since = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> OrderPage:
    """Orders by last update, oldest first; follow `next_cursor`. Filters combine."""
    if provider is not None:
        _known_provider(state.gateways, provider)
    async with state.pool.acquire() as conn:
        items, next_cursor = await orders.list_orders(
            conn,
            limit=limit,
            status=status,
            provider=provider,
            reference=reference,
            provider_payment_id=provider_payment_id,
            updated_since=since_param("updated_since", updated_since),
            cursor=cursor,
        )
    return OrderPage(items=items, next_cursor=next_cursor)


routes = [register_order, add_reference, get_order, get_order_events, list_orders]
