"""The simulator: signed webhooks through our adapter, its retry rule and faults, its REST and control API."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest

from providers.base import PaymentEvent, PaymentStatus, WebhookRequest
from providers.errors import GatewayError, SignatureError
from providers.simkit import Faults
from providers.stripe import Account, Adapter
from providers.stripe.signing import parse_header
from providers.stripe.sim.simulator import TEST_API_KEY, Simulator, SimulatorError

S = PaymentStatus
HOOK = "http://payrecon.test/webhooks/stripe"


class Receiver:
    """A payrecon-like endpoint: our adapter's verify + parse, then its acknowledge / reject."""

    def __init__(self, adapter: Adapter, *, unavailable_first: int = 0, answer: int | None = None) -> None:
        self.adapter = adapter
        self.unavailable_first = unavailable_first
        self.answer = answer
        self.events: list[PaymentEvent] = []
        self.errors: list[GatewayError] = []
        self.headers: list[str] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        req = WebhookRequest(
            method=request.method,
            body=request.content,
            headers={k.lower(): v for k, v in request.headers.items()},
            query_string=request.url.query.decode(),
            received_at=datetime.now(UTC),
        )
        self.headers.append(req.headers["stripe-signature"])
        self.bodies.append(req.body)
        if self.answer is not None:
            return httpx.Response(self.answer)
        try:
            self.adapter.verify(req)
            events = self.adapter.parse(req)
        except GatewayError as exc:
            self.errors.append(exc)
            ack = self.adapter.reject(exc)
        else:
            if self.unavailable_first > 0:
                self.unavailable_first -= 1
                ack = self.adapter.retry_later()
            else:
                self.events.extend(events)
                ack = self.adapter.acknowledge([])
        return httpx.Response(ack.status_code, content=ack.body, headers={"content-type": ack.content_type or ""})


def wire(receiver_kwargs: dict[str, Any] | None = None, **sim_kwargs: Any) -> tuple[Simulator, Receiver]:
    sim = Simulator(webhook_url=HOOK, **sim_kwargs)
    receiver = Receiver(Adapter([Account(**sim.gateway_config("http://sim.test"))]), **(receiver_kwargs or {}))
    sim.dispatcher._client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    return sim, receiver


async def test_signed_webhooks_verify_and_parse() -> None:
    sim, receiver = wire()
    pi = sim.create_payment(order_id="ord_1", amount=150_000, currency="VND").reference
    for status in (S.PENDING, S.PROCESSING, S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED):
        sim.set_status(pi, status)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert receiver.errors == []
    got = sorted(receiver.events, key=lambda e: [f"stripe:default:{x['id']}" for x in sim.events].index(e.dedupe_key))
    assert [e.status for e in got] == [S.PENDING, S.PROCESSING, S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED]
    assert [e.refunded_amount for e in got] == [None, None, None, 75_000, 150_000]
    assert {(e.reference, e.order_id, e.currency, e.amount) for e in got} == {(pi, "ord_1", "VND", 150_000)}
    assert all(b.startswith(b'{\n  "id": "evt_') for b in receiver.bodies)  # pretty-printed like Stripe
    assert all(parse_header(h).schemes == ["v1", "v0"] for h in receiver.headers)  # test mode: a v0 decoy
    assert all(d.accepted and d.attempt == 1 for d in sim.dispatcher.deliveries)


async def test_every_simulated_change_reaches_the_right_status() -> None:
    sim, receiver = wire()
    seen = {}
    for status in (S.AUTHORIZED, S.FAILED, S.CANCELED):
        pi = sim.create_payment(order_id=f"ord_{status}", amount=500, currency="jpy").reference
        sim.set_status(pi, status)
        seen[pi] = status
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert {e.reference: e.status for e in receiver.events} == seen


async def test_wrong_key_fault_fails_signature_and_is_retried_then_given_up() -> None:
    sim, receiver = wire(faults=Faults(wrong_key=True), retry_delays=(0.0, 0.0))
    pi = sim.create_payment(order_id="ord_1", amount=100, currency="usd").reference
    sim.set_status(pi, S.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert receiver.events == []
    assert len(receiver.errors) == 3
    assert all(isinstance(e, SignatureError) for e in receiver.errors)
    assert [(d.attempt, d.status_code, d.accepted) for d in sim.dispatcher.deliveries] == [
        (1, 400, False),
        (2, 400, False),
        (3, 400, False),
    ]


async def test_retried_until_accepted_and_signed_anew_each_attempt() -> None:
    ticks = iter(range(1_764_000_000, 1_764_001_000))
    sim, receiver = wire(
        {"unavailable_first": 2}, retry_delays=(0.0, 0.0, 0.0), clock=lambda: datetime.fromtimestamp(next(ticks), UTC)
    )
    receiver.adapter = Adapter([Account(**sim.gateway_config("x"), tolerance_s=10**9)])  # the sim clock is in 2025
    pi = sim.create_payment(order_id="ord_1", amount=100, currency="usd").reference
    sim.set_status(pi, S.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert [(d.attempt, d.status_code, d.accepted) for d in sim.dispatcher.deliveries] == [
        (1, 503, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert len({parse_header(h).timestamp for h in receiver.headers}) == 3  # a new t and v1 per attempt
    assert len(set(receiver.bodies)) == 1
    assert [e.status for e in receiver.events] == [S.SUCCEEDED]


@pytest.mark.parametrize(
    ("code", "accepted"), [(200, True), (204, True), (299, True), (302, False), (404, False), (500, False)]
)
async def test_only_2xx_counts_as_delivered(code: int, accepted: bool) -> None:
    sim, _ = wire({"answer": code}, retry_delays=(0.0,))
    pi = sim.create_payment(order_id="o", amount=1, currency="usd").reference
    sim.set_status(pi, S.PROCESSING)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert [d.accepted for d in sim.dispatcher.deliveries] == ([True] if accepted else [False, False])


async def test_connection_errors_are_retried() -> None:
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200)

    sim = Simulator(
        webhook_url=HOOK, retry_delays=(0.0,), client=httpx.AsyncClient(transport=httpx.MockTransport(flaky))
    )
    pi = sim.create_payment(order_id="o", amount=1, currency="usd").reference
    sim.set_status(pi, S.PROCESSING)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert [(d.status_code, d.accepted) for d in sim.dispatcher.deliveries] == [(None, False), (200, True)]


async def test_drop_and_duplicate_rates_are_seeded() -> None:
    def run(faults: Faults) -> tuple[Simulator, Receiver]:
        sim, receiver = wire(faults=faults)
        for i in range(40):
            pi = sim.create_payment(order_id=f"o{i}", amount=1, currency="usd").reference
            sim.set_status(pi, S.SUCCEEDED)
        return sim, receiver

    sim, receiver = run(Faults(drop_rate=0.5, seed=7))
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert 5 < len(sim.dispatcher.dropped) < 35
    assert len(receiver.events) == 40 - len(sim.dispatcher.dropped)
    again, _ = run(Faults(drop_rate=0.5, seed=7))
    assert again.dispatcher.dropped == sim.dispatcher.dropped  # same seed, same losses
    await again.dispatcher.drain()
    await again.dispatcher.aclose()

    dup, dup_receiver = run(Faults(duplicate_rate=1.0, seed=7))
    await dup.dispatcher.drain()
    await dup.dispatcher.aclose()
    keys = [e.dedupe_key for e in dup_receiver.events]
    assert len(keys) == 80
    assert len(set(keys)) == 40  # the same Event id twice: the ledger dedupes on it


async def test_rotation_signs_one_v1_per_secret() -> None:
    new, old = "whsec_new_for_test", "whsec_old_for_test"
    sim, receiver = wire(webhook_secrets=[new, old], test_mode=False)
    receiver.adapter = Adapter([Account(api_key="k", webhook_secrets=[old])])  # payrecon not rolled yet
    pi = sim.create_payment(order_id="o", amount=1, currency="usd").reference
    sim.set_status(pi, S.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert parse_header(receiver.headers[0]).schemes == ["v1", "v1"]
    assert len(receiver.events) == 1


# --- REST and control API ---------------------------------------------------------------------------


def api(sim: Simulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.asgi_app()),
        base_url="http://sim.test",
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
    )


async def test_auth_errors_have_stripes_shape() -> None:
    sim = Simulator()
    async with api(sim) as client:
        missing = await client.get("/v1/events", headers={"Authorization": ""})
        wrong = await client.get("/v1/payment_intents/pi_x", headers={"Authorization": "Bearer sk_test_nope"})
        basic = base64.b64encode(f"{TEST_API_KEY}:".encode()).decode()
        ok = await client.get("/v1/events", headers={"Authorization": f"Basic {basic}"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "Invalid API Key provided" in wrong.json()["error"]["message"]
    assert ok.status_code == 200


async def test_payment_intent_expand_and_404() -> None:
    sim = Simulator()
    pi = sim.create_payment(order_id="o", amount=10, currency="USD").reference
    sim.set_status(pi, S.SUCCEEDED)
    async with api(sim) as client:
        plain = (await client.get(f"/v1/payment_intents/{pi}")).json()
        expanded = (await client.get(f"/v1/payment_intents/{pi}", params={"expand[]": "latest_charge"})).json()
        missing = await client.get("/v1/payment_intents/pi_nope")
    assert isinstance(plain["latest_charge"], str)
    assert plain["latest_charge"].startswith("ch_")
    assert expanded["latest_charge"]["id"] == plain["latest_charge"]
    assert (plain["currency"], plain["metadata"], plain["status"]) == ("usd", {"order_id": "o"}, "succeeded")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"


async def test_search() -> None:
    sim = Simulator()
    a = sim.create_payment(order_id="it's", amount=1, currency="usd").reference
    sim.create_payment(order_id="other", amount=1, currency="usd")
    async with api(sim) as client:
        found = (
            await client.get("/v1/payment_intents/search", params={"query": "metadata['order_id']:'it\\'s'"})
        ).json()
        both = await client.get("/v1/payment_intents/search", params={"query": "status:'requires_payment_method'"})
        bad = await client.get("/v1/payment_intents/search", params={"query": "order_id = 1"})
    assert found["object"] == "search_result"
    assert [p["id"] for p in found["data"]] == [a]
    assert len(both.json()["data"]) == 2
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"


async def test_events_feed_filters_and_cursors() -> None:
    clock_now = [datetime(2026, 1, 1, tzinfo=UTC)]
    sim = Simulator(clock=lambda: clock_now[0])
    for i in range(5):
        clock_now[0] += timedelta(seconds=10)
        pi = sim.create_payment(order_id=f"o{i}", amount=10, currency="usd").reference
        sim.set_status(pi, S.SUCCEEDED)
        sim.refund(pi, 1)
    ids = [e["id"] for e in sim.events]  # oldest first, 10 events
    t0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    async with api(sim) as client:

        async def listing(**params: Any) -> dict[str, Any]:
            response = await client.get("/v1/events", params=params)
            assert response.status_code == 200, response.text
            return response.json()

        everything = await listing(limit=100)
        assert [e["id"] for e in everything["data"]] == ids[::-1]  # newest first
        assert everything["has_more"] is False
        first = await listing(limit=3)
        assert ([e["id"] for e in first["data"]], first["has_more"]) == (ids[::-1][:3], True)
        second = await listing(limit=3, starting_after=first["data"][-1]["id"])
        assert [e["id"] for e in second["data"]] == ids[::-1][3:6]
        back = await listing(limit=2, ending_before=second["data"][0]["id"])
        assert [e["id"] for e in back["data"]] == ids[::-1][1:3]
        assert len((await listing(limit=100, **{"created[gte]": t0 + 30}))["data"]) == 6
        assert len((await listing(limit=100, **{"created[gt]": t0 + 30}))["data"]) == 4
        assert len((await listing(limit=100, **{"created[lt]": t0 + 30}))["data"]) == 4
        assert len((await listing(limit=100, **{"created[lte]": t0 + 30}))["data"]) == 6
        assert {e["type"] for e in (await listing(limit=100, type="charge.*"))["data"]} == {"charge.refunded"}
        typed = await listing(limit=100, **{"types[]": "payment_intent.succeeded"})
        assert len(typed["data"]) == 5
        assert len((await listing())["data"]) == 10  # default limit 10
        for params in (
            {"limit": 0},
            {"limit": 101},
            {"limit": "x"},
            {"starting_after": "evt_nope"},
            {"type": "a", "types[]": "b"},
        ):
            response = await client.get("/v1/events", params=params)
            assert response.status_code == 400, params
            assert response.json()["error"]["type"] == "invalid_request_error"
        one = await client.get(f"/v1/events/{ids[0]}")
        assert one.json()["id"] == ids[0]
        assert (await client.get("/v1/events/evt_nope")).status_code == 404


async def test_control_api_drives_the_simulation() -> None:
    sim, receiver = wire()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app()), base_url="http://sim.test") as c:
        made = await c.post("/_sim/payments", json={"order_id": "ord_c", "amount": 2000, "currency": "usd"})
        assert made.status_code == 201
        ref = made.json()["reference"]
        assert (await c.post(f"/_sim/payments/{ref}/status", json={"status": "succeeded"})).json()[
            "status"
        ] == "succeeded"
        refunded = (await c.post(f"/_sim/payments/{ref}/refunds", json={"amount": 500})).json()
        assert refunded["latest_charge"]["amount_refunded"] == 500
        assert (await c.get(f"/_sim/payments/{ref}")).json()["id"] == ref
        too_much = await c.post(f"/_sim/payments/{ref}/refunds", json={"amount": 5000})
        assert too_much.status_code == 400
        backwards = await c.post(f"/_sim/payments/{ref}/status", json={"status": "failed"})
        assert backwards.status_code == 409
        assert (await c.post("/_sim/payments/pi_nope/status", json={"status": "failed"})).status_code == 404
        assert (await c.post(f"/_sim/payments/{ref}/status", json={"status": "bogus"})).status_code == 400
        faults = (await c.put("/_sim/faults", json={"api_error_rate": 1.0, "seed": 3})).json()
        assert faults["api_error_rate"] == 1.0
        assert sim.faults.api_error_rate == 1.0
        assert sim.dispatcher.faults is sim.faults
        assert (await c.get("/_sim/faults")).json()["seed"] == 3
        outage = await c.get(f"/v1/payment_intents/{ref}", headers={"Authorization": f"Bearer {TEST_API_KEY}"})
        assert outage.status_code == 503
        await sim.dispatcher.drain()
        deliveries = (await c.get("/_sim/deliveries")).json()
    await sim.dispatcher.aclose()
    assert [d["accepted"] for d in deliveries["deliveries"]] == [True, True]
    assert [e.status for e in receiver.events] == [S.SUCCEEDED, S.PARTIALLY_REFUNDED]


def test_stripe_rules_are_enforced() -> None:
    sim = Simulator()
    pi = sim.create_payment(order_id="o", amount=100, currency="usd").reference
    with pytest.raises(SimulatorError, match="no succeeded charge"):
        sim.refund(pi, 1)
    sim.set_status(pi, S.FAILED)
    sim.set_status(pi, S.SUCCEEDED)  # a failed attempt is retryable on the same PaymentIntent
    with pytest.raises(SimulatorError, match="cannot become canceled"):
        sim.set_status(pi, S.CANCELED)
    sim.refund(pi, 100)
    with pytest.raises(SimulatorError, match="greater than unrefunded"):
        sim.refund(pi, 1)
    with pytest.raises(SimulatorError):
        sim.create_payment(order_id="o", amount=0, currency="usd")


def test_gateway_config_is_a_valid_account_table() -> None:
    config = Simulator().gateway_config("http://127.0.0.1:9000")
    account = msgspec.convert(config, Account)
    assert account.api_base == "http://127.0.0.1:9000"
    assert account.webhook_secrets == ["whsec_payreconTEST7f3a9c1e5b2d4f608a1c3e5f7b9d0a2c"]
    assert json.loads(json.dumps(config)) == config
