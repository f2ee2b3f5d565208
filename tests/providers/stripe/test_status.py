"""fetch_status and catch_up: against the simulator, against recorded Stripe shapes, under faults."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from providers.base import PaymentStatus, StatusQuery
from providers.errors import GatewayRejectedError, GatewayUnavailableError, UnknownAccountError
from providers.http import RetryPolicy
from providers.simkit import Faults
from providers.stripe import Account, EventsFeed
from providers.stripe.sim.simulator import Simulator

S = PaymentStatus
ASKED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make(sim: Simulator, **account: Any) -> tuple[EventsFeed, httpx.AsyncClient, Sleeps]:
    sleeps = Sleeps()
    config = {**sim.gateway_config("http://sim.test"), **account}
    gateway = EventsFeed([Account(**config)], clock=lambda: ASKED, sleep=sleeps)
    return gateway, httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app())), sleeps


def query(reference: str, order_id: str = "ord_1", **fields: Any) -> StatusQuery:
    return StatusQuery(
        order_id=order_id,
        account="default",
        reference=reference,
        amount=2599,
        currency="USD",
        created_at=ASKED - timedelta(hours=1),
        **fields,
    )


@pytest.mark.parametrize(
    ("steps", "status", "amount", "refunded"),
    [
        ([], S.PENDING, 2599, None),  # requires_payment_method, no error
        ([S.PENDING], S.PENDING, 2599, None),  # requires_action
        ([S.PROCESSING], S.PROCESSING, 2599, None),
        ([S.AUTHORIZED], S.AUTHORIZED, 2599, None),  # requires_capture
        ([S.FAILED], S.FAILED, 2599, None),  # requires_payment_method + last_payment_error
        ([S.FAILED, S.PROCESSING], S.PROCESSING, 2599, None),  # a retry after a decline
        ([S.CANCELED], S.CANCELED, 2599, None),
        ([S.SUCCEEDED], S.SUCCEEDED, 2599, None),
        ([S.AUTHORIZED, S.SUCCEEDED], S.SUCCEEDED, 2599, None),  # captured
        ([S.SUCCEEDED, S.PARTIALLY_REFUNDED], S.PARTIALLY_REFUNDED, 2599, 1299),
        ([S.SUCCEEDED, S.REFUNDED], S.REFUNDED, 2599, 2599),
        ([S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED], S.REFUNDED, 2599, 2599),
    ],
)
async def test_fetch_status_against_the_simulator(steps: list[S], status: S, amount: int, refunded: int | None) -> None:
    sim = Simulator()
    gateway, client, _ = make(sim)
    pi = sim.create_payment(order_id="ord_1", amount=2599, currency="usd").reference
    for step in steps:
        sim.set_status(pi, step)
    async with client:
        ev = await gateway.fetch_status(query(pi), client)
        again = await gateway.fetch_status(query(pi), client)
    assert ev is not None
    assert (ev.status, ev.amount, ev.currency, ev.refunded_amount) == (status, amount, "USD", refunded)
    assert (ev.reference, ev.provider_payment_id, ev.order_id, ev.account) == (pi, pi, "ord_1", "default")
    assert ev.occurred_at == ASKED
    assert ev.dedupe_key == f"stripe:default:status:{pi}:{status}:{pi}:{refunded or 0}"
    assert again == ev  # same answer, same dedupe key: a duplicate for the ledger
    assert ev.payload["id"] == pi
    if status is S.FAILED:
        assert ev.reason == "stripe:generic_decline Your card was declined."


async def test_zero_decimal_amounts_come_back_unscaled() -> None:
    sim = Simulator()
    gateway, client, _ = make(sim)
    pi = sim.create_payment(order_id="ord_v", amount=150_000, currency="VND").reference
    sim.set_status(pi, S.SUCCEEDED)
    sim.refund(pi, 50_000)
    async with client:
        ev = await gateway.fetch_status(query(pi, "ord_v"), client)
    assert ev is not None
    assert (ev.amount, ev.currency, ev.refunded_amount, ev.status) == (150_000, "VND", 50_000, S.PARTIALLY_REFUNDED)


async def test_unknown_payment_is_none() -> None:
    sim = Simulator()
    gateway, client, _ = make(sim)
    async with client:
        assert await gateway.fetch_status(query("pi_3Unknown"), client) is None
        assert await gateway.fetch_status(query("ord_nobody", "ord_nobody"), client) is None


async def test_search_by_order_id_when_no_pi_is_known() -> None:
    sim = Simulator()
    gateway, client, _ = make(sim)
    failed = sim.create_payment(order_id="ord_s", amount=2599, currency="usd").reference
    sim.set_status(failed, S.CANCELED)
    paid = sim.create_payment(order_id="ord_s", amount=2599, currency="usd").reference
    sim.set_status(paid, S.SUCCEEDED)
    sim.create_payment(order_id="ord_other", amount=1, currency="usd")
    async with client:
        ev = await gateway.fetch_status(query("ord_s", "ord_s"), client)
        by_ppid = await gateway.fetch_status(query("ord_s", "ord_s", provider_payment_id=failed), client)
    assert ev is not None
    assert (ev.status, ev.provider_payment_id, ev.reference) == (S.SUCCEEDED, paid, "ord_s")  # the furthest attempt
    assert by_ppid is not None
    assert (by_ppid.status, by_ppid.provider_payment_id) == (S.CANCELED, failed)


async def test_search_uses_the_configured_metadata_key_and_escapes_quotes() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"object": "search_result", "data": [], "has_more": False})

    gateway = EventsFeed(
        [
            Account(
                api_base="https://api.example/",
                api_key="sk_test_x",
                webhook_secrets=["w"],
                order_id_metadata_key="shop_order",
            )
        ]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert await gateway.fetch_status(query("o'1", "o'1"), client) is None
    [req] = seen
    assert req.url.path == "/v1/payment_intents/search"
    assert req.url.params["query"] == "metadata['shop_order']:'o\\'1'"
    assert req.url.params.get_list("expand[]") == ["data.latest_charge"]
    assert req.headers["authorization"] == "Bearer sk_test_x"


# --- recorded response shapes (reference/stripe.md §4, §6) -------------------------------------------

RECORDED_PI: dict[str, Any] = {
    "id": "pi_3PRc0009USD",
    "object": "payment_intent",
    "amount": 2599,
    "amount_capturable": 0,
    "amount_details": {"tip": {}},
    "amount_received": 2599,
    "application": None,
    "automatic_payment_methods": None,
    "canceled_at": None,
    "cancellation_reason": None,
    "capture_method": "automatic",
    "client_secret": "pi_3PRc0009USD_secret_x",
    "confirmation_method": "automatic",
    "created": 1764000000,
    "currency": "usd",
    "customer": None,
    "description": None,
    "invoice": None,
    "last_payment_error": None,
    "latest_charge": {
        "id": "ch_3PRc0009USD",
        "object": "charge",
        "amount": 2599,
        "amount_captured": 2599,
        "amount_refunded": 0,
        "balance_transaction": "txn_1",
        "captured": True,
        "created": 1764000001,
        "currency": "usd",
        "disputed": False,
        "livemode": False,
        "metadata": {"order_id": "ord_9"},
        "paid": True,
        "payment_intent": "pi_3PRc0009USD",
        "refunded": False,
        "status": "succeeded",
    },
    "livemode": False,
    "metadata": {"order_id": "ord_9"},
    "next_action": None,
    "payment_method": "pm_1",
    "payment_method_types": ["card"],
    "status": "succeeded",
}


def recorded(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(RECORDED_PI))
    for key, value in changes.items():
        if key.startswith("charge_"):
            body["latest_charge"][key.removeprefix("charge_")] = value
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("body", "status", "amount", "refunded", "reason"),
    [
        (recorded(), S.SUCCEEDED, 2599, None, None),
        (recorded(charge_amount_refunded=599), S.PARTIALLY_REFUNDED, 2599, 599, None),
        (recorded(charge_amount_refunded=2599, charge_refunded=True), S.REFUNDED, 2599, 2599, None),
        (
            recorded(status="requires_payment_method", amount_received=0, latest_charge=None),
            S.PENDING,
            2599,
            None,
            None,
        ),
        (
            recorded(
                status="requires_payment_method",
                amount_received=0,
                last_payment_error={"code": "card_declined", "message": "Declined", "type": "card_error"},
            ),
            S.FAILED,
            2599,
            None,
            "stripe:card_declined Declined",
        ),
        (recorded(status="requires_confirmation", amount_received=0, latest_charge=None), S.PENDING, 2599, None, None),
        (recorded(status="requires_action", amount_received=0), S.PENDING, 2599, None, None),
        (recorded(status="processing", amount_received=0), S.PROCESSING, 2599, None, None),
        (
            recorded(status="requires_capture", amount_received=0, amount_capturable=2599),
            S.AUTHORIZED,
            2599,
            None,
            None,
        ),
        (
            recorded(status="canceled", cancellation_reason="expired", amount_received=0),
            S.CANCELED,
            2599,
            None,
            "stripe:canceled expired",
        ),
        (recorded(latest_charge="ch_3PRc0009USD"), S.SUCCEEDED, 2599, None, None),  # not expanded
    ],
)
async def test_recorded_payment_intent_shapes(
    body: dict[str, Any], status: S, amount: int, refunded: int | None, reason: str | None
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    gateway = EventsFeed(
        [Account(api_base="https://api.example", api_key="sk_test_x", webhook_secrets=["w"])], clock=lambda: ASKED
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        ev = await gateway.fetch_status(query("pi_3PRc0009USD", "ord_9"), client)
    assert ev is not None
    assert (ev.status, ev.amount, ev.refunded_amount, ev.reason) == (status, amount, refunded, reason)
    assert ev.payload == body  # the whole answer, unknown fields included
    [req] = seen
    assert str(req.url) == "https://api.example/v1/payment_intents/pi_3PRc0009USD?expand%5B%5D=latest_charge"
    assert req.headers["stripe-version"] == "2024-06-20"


async def test_unlisted_status_is_flagged() -> None:
    gateway = EventsFeed([Account(api_key="k", webhook_secrets=["w"])], clock=lambda: ASKED)
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=recorded(status="requires_source")))
    async with httpx.AsyncClient(transport=transport) as client:
        ev = await gateway.fetch_status(query("pi_3x"), client)
    assert ev is not None
    assert ev.status is S.PENDING
    assert ev.flag == "stripe: unlisted PaymentIntent status 'requires_source'"


ERROR_404 = {
    "error": {
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "message": "No such payment_intent: 'pi_x'",
        "param": "intent",
        "type": "invalid_request_error",
    }
}
ERROR_401 = {"error": {"message": "Invalid API Key provided: sk_test_****abcd", "type": "invalid_request_error"}}


@pytest.mark.parametrize(
    ("status_code", "body", "outcome"),
    [
        (404, ERROR_404, None),
        (401, ERROR_401, GatewayRejectedError),
        (403, {"error": {"type": "invalid_request_error", "message": "restricted key"}}, GatewayRejectedError),
        (400, {"error": {"type": "invalid_request_error", "code": "parameter_unknown"}}, GatewayRejectedError),
        (
            404,
            {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}},
            GatewayRejectedError,
        ),
        (200, "<html>proxy</html>", GatewayUnavailableError),
        (200, {"id": "pi_x"}, GatewayUnavailableError),
    ],
)
async def test_recorded_error_shapes(status_code: int, body: Any, outcome: type[Exception] | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status_code, text=body)
        return httpx.Response(status_code, json=body)

    gateway = EventsFeed([Account(api_key="k", webhook_secrets=["w"])])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        if outcome is None:
            assert await gateway.fetch_status(query("pi_x"), client) is None
        else:
            with pytest.raises(outcome):
                await gateway.fetch_status(query("pi_x"), client)


# --- faults ---------------------------------------------------------------------------------------


class ThrottledFirst(httpx.AsyncBaseTransport):
    """Answers 429 with Retry-After to the first `n` requests, then lets the simulator answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, n: int, retry_after: str) -> None:
        self.inner, self.n, self.retry_after = inner, n, retry_after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.n > 0:
            self.n -= 1
            return httpx.Response(
                429, headers={"Retry-After": self.retry_after}, json={"error": {"type": "rate_limit_error"}}
            )
        return await self.inner.handle_async_request(request)


async def test_429_retry_after_is_waited_out() -> None:
    sim = Simulator()
    gateway, _, sleeps = make(sim)
    pi = sim.create_payment(order_id="ord_1", amount=2599, currency="usd").reference
    sim.set_status(pi, S.SUCCEEDED)
    transport = ThrottledFirst(httpx.ASGITransport(app=sim.asgi_app()), 2, "3")
    async with httpx.AsyncClient(transport=transport) as client:
        ev = await gateway.fetch_status(query(pi), client)
    assert ev is not None
    assert ev.status is S.SUCCEEDED
    assert sleeps.waits == [3.0, 3.0]


async def test_simulator_throttle_knob_gives_unavailable_with_retry_after() -> None:
    sim = Simulator(faults=Faults(api_throttle_rate=1.0, retry_after=2.5, seed=1))
    gateway, client, sleeps = make(sim)
    async with client:
        with pytest.raises(GatewayUnavailableError) as caught:
            await gateway.fetch_status(query("pi_3x"), client)
    assert sleeps.waits == [2.5, 2.5, 2.5]  # 4 attempts (DEFAULT_POLICY), Retry-After honoured between them
    assert caught.value.retry_after == 2.5


async def test_permanent_5xx_is_unavailable_after_the_budget() -> None:
    sim = Simulator(faults=Faults(api_error_rate=1.0, seed=1))
    sleeps = Sleeps()
    gateway = EventsFeed(
        [Account(**sim.gateway_config("http://sim.test"))], retry=RetryPolicy(attempts=3, base_delay=0.1), sleep=sleeps
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app())) as client:
        with pytest.raises(GatewayUnavailableError, match="HTTP 503 after 3 attempt"):
            await gateway.fetch_status(query("pi_3x"), client)
    assert len(sleeps.waits) == 2
    assert all(0 <= w <= 0.2 for w in sleeps.waits)


async def test_wrong_api_key_is_rejected() -> None:
    sim = Simulator()
    gateway, client, sleeps = make(sim, api_key="sk_test_wrong")
    pi = sim.create_payment(order_id="ord_1", amount=1, currency="usd").reference
    async with client:
        with pytest.raises(GatewayRejectedError, match=r"HTTP 401 .*Invalid API Key.*api_key right"):
            await gateway.fetch_status(query(pi), client)
        with pytest.raises(GatewayRejectedError):
            await gateway.catch_up("default", None, client)
    assert sleeps.waits == []  # a refusal is not retried


async def test_unknown_account_for_status() -> None:
    gateway = EventsFeed([Account(api_key="k", webhook_secrets=["w"])])
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        with pytest.raises(UnknownAccountError):
            await gateway.fetch_status(
                StatusQuery(order_id="o", account="nope", reference="pi_1", amount=1, currency="USD", created_at=ASKED),
                client,
            )


# --- catch-up -------------------------------------------------------------------------------------


def feed(start: datetime) -> tuple[Simulator, Clock, EventsFeed, httpx.AsyncClient]:
    clock = Clock(start)
    sim = Simulator(clock=clock)
    gateway = EventsFeed([Account(**sim.gateway_config("http://sim.test"))], clock=clock)
    return sim, clock, gateway, httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app()))


async def test_catch_up_pages_oldest_first_and_moves_the_cursor() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sim, clock, gateway, client = feed(start)
    refs = []
    for i in range(130):  # two pages of 100
        clock.now = start + timedelta(seconds=i)
        pi = sim.create_payment(order_id=f"ord_{i}", amount=100 + i, currency="eur").reference
        sim.set_status(pi, S.SUCCEEDED)
        refs.append(pi)
    clock.now = start + timedelta(hours=1)
    async with client:
        events, cursor = await gateway.catch_up("default", None, client)
        assert [e.reference for e in events] == refs
        assert [e.dedupe_key for e in events] == [f"stripe:default:{e['id']}" for e in sim.events]
        assert cursor == int((start + timedelta(seconds=129)).timestamp())
        assert all(e.status is S.SUCCEEDED and e.currency == "EUR" for e in events)

        again, same = await gateway.catch_up("default", cursor, client)  # nothing new: overlap only
        assert same == cursor
        assert {e.dedupe_key for e in again} <= {e.dedupe_key for e in events}  # duplicates the ledger absorbs

        clock.now = start + timedelta(hours=2)
        sim.refund(refs[0], 10)
        newer, cursor2 = await gateway.catch_up("default", cursor, client)
    assert newer[-1].status is S.PARTIALLY_REFUNDED
    assert newer[-1].refunded_amount == 10
    assert cursor2 == int(clock.now.timestamp())
    assert len(newer) == 1 + len(again)


async def test_catch_up_overlap_and_horizon() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sim, clock, gateway, client = feed(start)
    old = sim.create_payment(order_id="old", amount=1, currency="usd").reference
    sim.set_status(old, S.SUCCEEDED)  # at start
    clock.now = start + timedelta(days=31)
    recent = sim.create_payment(order_id="recent", amount=1, currency="usd").reference
    sim.set_status(recent, S.PROCESSING)
    cursor = int(clock.now.timestamp())
    clock.now += timedelta(seconds=599)
    sim.set_status(recent, S.SUCCEEDED)
    clock.now += timedelta(days=1)
    async with client:
        first, _ = await gateway.catch_up("default", None, client)
        assert [e.reference for e in first] == [recent, recent]  # the 31-day-old event is past the horizon
        later, _ = await gateway.catch_up("default", cursor + 601, client)  # overlap 600 s reaches back 1 s
        assert [e.status for e in later] == [S.SUCCEEDED]
        empty, kept = await gateway.catch_up("default", cursor + 10_000, client)
    assert (empty, kept) == ([], cursor + 10_000)


async def test_catch_up_from_nothing_keeps_no_cursor() -> None:
    _sim, _, gateway, client = feed(datetime(2026, 1, 1, tzinfo=UTC))
    async with client:
        assert await gateway.catch_up("default", None, client) == ([], None)


async def test_catch_up_skips_an_unreadable_event_but_moves_on() -> None:
    sim, clock, gateway, client = feed(datetime(2026, 1, 1, tzinfo=UTC))
    pi = sim.create_payment(order_id="o", amount=5, currency="usd").reference
    sim.set_status(pi, S.SUCCEEDED)
    sim.events[0]["data"]["object"]["amount"] = "lots"  # a shape we cannot read
    sim.refund(pi, 1)
    async with client:
        events, cursor = await gateway.catch_up("default", None, client)
    assert [e.status for e in events] == [S.PARTIALLY_REFUNDED]
    assert cursor == int(clock.now.timestamp())


async def test_catch_up_requests_the_tracked_types() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"object": "list", "data": [], "has_more": False, "url": "/v1/events"})

    gateway = EventsFeed([Account(api_key="k", webhook_secrets=["w"])], clock=lambda: ASKED)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert await gateway.catch_up("default", 1_000_000, client) == ([], 1_000_000)
    [req] = seen
    assert req.url.path == "/v1/events"
    assert req.url.params["created[gte]"] == str(1_000_000 - 600)
    assert req.url.params["limit"] == "100"
    types = req.url.params.get_list("types[]")
    assert "payment_intent.succeeded" in types
    assert "charge.refunded" in types
    assert len(types) <= 20
