"""Ingest when a gateway adapter itself misbehaves: still never a 500, still never an unstored acknowledgement.

Gateways are pluggable (entry points), so a third-party adapter may crash, fail to build
its own answer, or hand the ledger an event PostgreSQL refuses. The adapters below are such
gateways, plugged into a real app through `create_app(gateways=…)` like any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import ClassVar

import asyncpg
import httpx
import msgspec
import pytest

from providers.base import (
    Ack,
    GatewayAccount,
    OutcomeKind,
    PaymentEvent,
    PaymentStatus,
    StatusQuery,
    WebhookRequest,
    utcnow,
)
from providers.errors import MalformedError, ReplayError, SignatureError, UnknownAccountError
from providers.gateway import Gateway
from service.app import create_app
from service.ingest import BodyTooLargeError, UnknownProviderError, raw_delivery, reason_of
from service.serving import serving
from service.settings import Settings
from tests.e2e.harness import events_of, order_row, register, rejected


class FlakyAdapter:
    """A gateway whose adapter fails in the way its name says (`mode`)."""

    name: ClassVar[str] = "flaky"
    Account: ClassVar[type[GatewayAccount]] = GatewayAccount

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.acknowledged: list[list[OutcomeKind]] = []

    def verify(self, request: WebhookRequest) -> None:
        if self.mode == "crash":
            raise KeyError("verify blew up on a field it assumed")

    def parse(self, request: WebhookRequest) -> list[PaymentEvent]:
        currency = "usd" if self.mode == "bad_event" else "USD"  # lower case: the schema's CHECK refuses it
        return [
            PaymentEvent(
                provider=self.name,
                dedupe_key=f"flaky:{request.body.decode()}",
                account="default",
                reference="ord_f1",
                status=PaymentStatus.SUCCEEDED,
                amount=500,
                currency=currency,
            )
        ]

    def acknowledge(self, outcomes: Sequence[OutcomeKind]) -> Ack:
        if self.mode == "ack_crash":
            raise RuntimeError("cannot build the acknowledgement")
        self.acknowledged.append(list(outcomes))
        return Ack(202, b"ok", "text/plain")

    def reject(self, error: Exception) -> Ack:
        if self.mode == "crash" and isinstance(error, KeyError):
            raise ValueError("and the rejection crashes too")
        return Ack(422, str(error).encode(), "text/plain")

    def retry_later(self) -> Ack:
        return Ack(503, b"later", "text/plain")

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        return None


class App(msgspec.Struct):
    http: httpx.AsyncClient
    adapter: FlakyAdapter


StartApp = Callable[[str], Awaitable[App]]


@pytest.fixture
async def make_app(settings: Settings) -> AsyncIterator[StartApp]:
    async with AsyncExitStack() as stack:

        async def start(mode: str) -> App:
            adapter = FlakyAdapter(mode)
            flaky = Gateway(
                name="flaky",
                account=GatewayAccount,
                adapter=lambda _accounts: adapter,
                status=lambda _accounts, **_: adapter,
                simulator=lambda **_: pytest.fail("no simulator here"),
            )
            gateways = {"flaky": flaky.connect([])}
            base = await stack.enter_async_context(serving(create_app(settings, gateways=gateways)))
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=base))
            return App(http=http, adapter=adapter)

        yield start


async def test_an_adapter_crash_is_a_refusal_not_a_500(make_app: StartApp, pool: asyncpg.Pool) -> None:
    app: App = await make_app("crash")

    response = await app.http.post("/webhooks/flaky", content=b"1")

    # verify raised KeyError, then reject raised too: the fallback refusal, never a 500
    assert response.status_code == 400
    rows = await rejected(pool)
    assert [(r["provider"], r["reason"]) for r in rows] == [("flaky", "adapter_error")]
    assert rows[0]["detail"].startswith("KeyError")


async def test_an_event_the_database_refuses_is_held_not_retried(make_app: StartApp, pool: asyncpg.Pool) -> None:
    # A retry of the same bytes meets the same CHECK: "retry later" would loop until the gateway gives
    # up. The raw delivery is stored (replayable once the adapter is fixed) and the gateway told to stop.
    app: App = await make_app("bad_event")
    await register(pool, "ord_f1", provider="flaky", amount=500, currency="USD")

    response = await app.http.post("/webhooks/flaky", content=b"2")
    again = await app.http.post("/webhooks/flaky", content=b"2")

    assert (response.status_code, response.content) == (202, b"ok")
    assert again.status_code == 202
    assert app.adapter.acknowledged == [[], []]  # "nothing applied", final
    assert await events_of(pool, "flaky") == []
    assert (await order_row(pool, "ord_f1"))["status"] == "pending"
    [row] = await rejected(pool)
    assert (row["reason"], row["verified"], row["raw_body"], row["deliveries"]) == ("unstorable", True, b"2", 2)


async def test_an_acknowledgement_that_cannot_be_built_is_not_a_500(make_app: StartApp, pool: asyncpg.Pool) -> None:
    app: App = await make_app("ack_crash")
    await register(pool, "ord_f1", provider="flaky", amount=500, currency="USD")

    response = await app.http.post("/webhooks/flaky", content=b"3")

    assert response.status_code == 503  # stored, but the gateway hears "again": its redelivery is a duplicate
    assert (await order_row(pool, "ord_f1"))["status"] == "succeeded"


async def test_a_healthy_flaky_gateway_gets_its_outcomes(make_app: StartApp, pool: asyncpg.Pool) -> None:
    app: App = await make_app("fine")
    await register(pool, "ord_f1", provider="flaky", amount=500, currency="USD")

    first = await app.http.post("/webhooks/flaky", content=b"4")
    again = await app.http.post("/webhooks/flaky", content=b"4")

    assert (first.status_code, again.status_code) == (202, 202)
    assert app.adapter.acknowledged == [[OutcomeKind.APPLIED], [OutcomeKind.DUPLICATE]]


def test_reason_slugs() -> None:
    assert [
        reason_of(e)
        for e in (
            SignatureError("x"),
            ReplayError("x"),
            MalformedError("x"),
            UnknownAccountError("x"),
            BodyTooLargeError("x"),
            UnknownProviderError("x"),
            ValueError("x"),
        )
    ] == ["signature", "replay", "malformed", "unknown_account", "body_too_large", "unknown_provider", "adapter_error"]


def test_raw_delivery_keeps_only_what_verification_needs() -> None:
    request = WebhookRequest(
        method="POST",
        body=b"{}",
        headers={"content-type": "application/json", "stripe-signature": "t=1", "x-forwarded-for": "1.2.3.4"},
        query_string="a=1",
        received_at=utcnow(),
    )
    raw = raw_delivery(request)
    assert raw.headers == {"content-type": "application/json", "stripe-signature": "t=1"}
    assert (raw.body, raw.query_string) == (b"{}", "a=1")
