"""The simulator as VNPay: IPN delivery and retry rule (through our adapter), its merchant and control APIs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import msgspec
import pytest
from litestar import Litestar, Request, Response, get

from providers.base import OutcomeKind, PaymentEvent, PaymentStatus, WebhookRequest
from providers.errors import GatewayError, SignatureError
from providers.simkit import Faults
from providers.vnpay import Account, Adapter
from providers.vnpay.signing import sign_pipe
from providers.vnpay.sim.signing import signed_query_string
from providers.vnpay.sim.simulator import TEST_HASH_SECRET, TEST_TMN_CODE, Simulator, accepts_vnpay
from providers.vnpay.sim.wire import RefundRequest
from providers.vnpay.wire import API_PATH, ApiResponse

from .helpers import vector

P = PaymentStatus
Decide = Callable[[int, list[PaymentEvent]], list[OutcomeKind]]


class Receiver:
    """A tiny shop: our adapter's verify + parse, and an outcome chosen per delivery."""

    def __init__(self, decide: Decide = lambda n, events: [OutcomeKind.APPLIED]) -> None:
        self.adapter = Adapter([Account(tmn_code=TEST_TMN_CODE, hash_secrets=[TEST_HASH_SECRET])])
        self.decide = decide
        self.events: list[PaymentEvent] = []
        self.errors: list[GatewayError] = []
        self.calls = 0

        @get("/webhooks/vnpay")
        async def ipn(request: Request) -> Response[bytes]:
            self.calls += 1
            delivery = WebhookRequest(
                method=request.method,
                body=b"",
                headers={},
                query_string=request.scope["query_string"].decode("latin-1"),
                received_at=datetime.now(UTC),
            )
            try:
                self.adapter.verify(delivery)
                events = self.adapter.parse(delivery)
            except GatewayError as exc:
                self.errors.append(exc)
                ack = self.adapter.reject(exc)
            else:
                self.events.extend(events)
                ack = self.adapter.acknowledge(self.decide(self.calls, events))
            return Response(ack.body, status_code=ack.status_code, media_type=ack.content_type)

        self.app = Litestar(route_handlers=[ipn])

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))


def _sim(receiver: Receiver, faults: Faults | None = None, url: str = "http://shop.test/webhooks/vnpay") -> Simulator:
    return Simulator(webhook_url=url, faults=faults, client=receiver.client(), retry_delays=(0.0,) * 9)


async def test_signed_ipn_verifies_and_is_accepted_once() -> None:
    receiver = Receiver()
    sim = _sim(receiver)
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    await sim.dispatcher.drain()
    [event] = receiver.events
    assert (event.status, event.amount, event.reference) == (P.SUCCEEDED, 150000, "o1")
    assert event.provider_payment_id is not None
    assert [(d.attempt, d.accepted) for d in sim.dispatcher.deliveries] == [(1, True)]
    await sim.dispatcher.aclose()


@pytest.mark.parametrize(
    ("status", "expected"),
    [(P.FAILED, P.FAILED), (P.CANCELED, P.CANCELED), (P.PROCESSING, P.PROCESSING)],
)
async def test_each_outcome_arrives_as_its_status(status: PaymentStatus, expected: PaymentStatus) -> None:
    receiver = Receiver()
    sim = _sim(receiver)
    payment = sim.create_payment(order_id="o1", amount=36000, currency="VND")
    sim.set_status(payment.reference, status)
    await sim.dispatcher.drain()
    [event] = receiver.events
    assert event.status is expected
    await sim.dispatcher.aclose()


async def test_pending_and_refunds_send_no_ipn() -> None:
    receiver = Receiver()
    sim = _sim(receiver)
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.PENDING)
    sim.set_status(payment.reference, P.SUCCEEDED)
    sim.refund(payment.reference, 1000)
    await sim.dispatcher.drain()
    assert [e.status for e in receiver.events] == [P.SUCCEEDED]
    await sim.dispatcher.aclose()


async def test_ipn_query_string_is_built_like_vnpay() -> None:
    sim = Simulator(clock=lambda: datetime(2025, 11, 24, 10, 1, 12, tzinfo=UTC))
    payment = sim.create_payment(order_id="ord1001", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    [query] = sim.ipns
    keys = [pair.split("=", 1)[0] for pair in query.split("&")]
    assert keys[-1] == "vnp_SecureHash"
    assert keys[:-1] == sorted(keys[:-1])
    assert "vnp_OrderInfo=Thanh+toan+don+hang+ord1001" in query
    assert "vnp_PayDate=20251124170112" in query
    assert "vnp_Amount=15000000" in query


async def test_wrong_key_fault_is_a_signature_error_and_retried_to_the_limit() -> None:
    receiver = Receiver()
    sim = _sim(receiver, Faults(wrong_key=True))
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    await sim.dispatcher.drain()
    assert receiver.events == []
    assert len(receiver.errors) == 10  # VNPay: at most 10 calls
    assert all(isinstance(e, SignatureError) for e in receiver.errors)
    assert not any(d.accepted for d in sim.dispatcher.deliveries)
    await sim.dispatcher.aclose()


@pytest.mark.parametrize(
    ("first", "attempts"),
    [
        (OutcomeKind.UNKNOWN_ORDER, 3),  # 01: retried while the shop registers the order
        (OutcomeKind.AMOUNT_MISMATCH, 3),  # 04: retried
        (OutcomeKind.DUPLICATE, 1),  # 02: final
        (OutcomeKind.STALE, 1),  # 02: final
        (OutcomeKind.APPLIED, 1),  # 00: final
    ],
)
async def test_retry_rule_follows_rspcode(first: OutcomeKind, attempts: int) -> None:
    receiver = Receiver(lambda n, events: [first] if n < 3 else [OutcomeKind.APPLIED])
    sim = _sim(receiver)
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    await sim.dispatcher.drain()
    assert len(sim.dispatcher.deliveries) == attempts
    assert sim.dispatcher.deliveries[-1].accepted
    await sim.dispatcher.aclose()


def test_acceptance_rule() -> None:
    def answer(status: int, body: bytes) -> httpx.Response:
        return httpx.Response(status, content=body)

    assert accepts_vnpay(answer(200, b'{"RspCode":"00","Message":"Confirm Success"}'))
    assert accepts_vnpay(answer(200, b'{"RspCode":"02","Message":"Order already confirmed"}'))
    for code in ("01", "04", "97", "99"):
        assert not accepts_vnpay(answer(200, f'{{"RspCode":"{code}"}}'.encode()))
    assert not accepts_vnpay(answer(503, b"Service Unavailable"))
    assert not accepts_vnpay(answer(200, b"[]"))


async def test_webhook_url_with_account_parameter_verifies() -> None:
    receiver = Receiver()
    sim = _sim(receiver, url="http://shop.test/webhooks/vnpay?account=default")
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    await sim.dispatcher.drain()
    assert len(receiver.events) == 1
    assert receiver.errors == []
    await sim.dispatcher.aclose()


async def _run_batch(faults: Faults, count: int = 30) -> tuple[Simulator, Receiver]:
    receiver = Receiver(lambda n, events: [OutcomeKind.APPLIED])
    sim = _sim(receiver, faults)
    for i in range(count):
        payment = sim.create_payment(order_id=f"o{i}", amount=1000, currency="VND")
        sim.set_status(payment.reference, P.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    return sim, receiver


async def test_drop_rate_is_seeded_and_dropped_ipns_never_arrive() -> None:
    sim, receiver = await _run_batch(Faults(drop_rate=0.5, seed=11))
    again, _ = await _run_batch(Faults(drop_rate=0.5, seed=11))
    assert sim.dispatcher.dropped == again.dispatcher.dropped
    assert 5 < len(sim.dispatcher.dropped) < 25
    arrived = {e.reference for e in receiver.events}
    assert arrived == {f"o{n - 1}" for n in range(1, 31) if n not in sim.dispatcher.dropped}


async def test_duplicates_arrive_twice_with_one_dedupe_key() -> None:
    _, receiver = await _run_batch(Faults(duplicate_rate=1.0, seed=3), count=5)
    keys = [e.dedupe_key for e in receiver.events]
    assert len(keys) == 10
    assert len(set(keys)) == 5


# --- merchant API ------------------------------------------------------------------------------


def _refund_body(**overrides: str) -> dict[str, str]:
    fields = {**vector("vnpay-11")["input"]["fields"], **overrides}
    request = RefundRequest(**fields)
    return {**fields, "vnp_SecureHash": sign_pipe(request.signed_values(), TEST_HASH_SECRET)}


async def test_refund_api_follows_the_reference() -> None:
    sim = Simulator(clock=lambda: datetime(2025, 11, 24, 9, 59, 55, tzinfo=UTC))
    payment = sim.create_payment(order_id="ord1001", amount=150000, currency="VND")
    assert payment.provider_data["vnp_create_date"] == "20251124165955"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app()), base_url="http://sim") as c:

        async def call(body: dict[str, str]) -> dict[str, str]:
            response = await c.post(API_PATH, json=body)
            assert response.status_code == 200
            return msgspec.json.decode(response.content)

        assert (await call(_refund_body()))["vnp_ResponseCode"] == "95"  # not paid yet
        sim.set_status(payment.reference, P.SUCCEEDED)
        assert (await call(_refund_body()))["vnp_ResponseCode"] == "94"  # RequestId reused
        answer = await call(_refund_body(vnp_RequestId="refund2"))
        assert answer["vnp_ResponseCode"] == "00"
        assert (answer["vnp_Amount"], answer["vnp_TransactionType"]) == ("5000000", "03")
        signed = msgspec.convert(answer, ApiResponse)
        assert answer["vnp_SecureHash"] == sign_pipe(signed.refund_signed_values(), TEST_HASH_SECRET)
        too_much = _refund_body(vnp_RequestId="refund3", vnp_Amount="20000000")
        assert (await call(too_much))["vnp_ResponseCode"] == "93"
        bad_sig = {**_refund_body(vnp_RequestId="refund4"), "vnp_SecureHash": "00"}
        assert (await call(bad_sig))["vnp_ResponseCode"] == "97"
        unknown = _refund_body(vnp_RequestId="refund5", vnp_TxnRef="nope")
        assert (await call(unknown))["vnp_ResponseCode"] == "91"
        other_terminal = {**_refund_body(vnp_RequestId="refund6"), "vnp_TmnCode": "OTHER"}
        assert (await call(other_terminal))["vnp_ResponseCode"] == "02"
        assert (await call({"vnp_Command": "refund", "vnp_TmnCode": TEST_TMN_CODE}))["vnp_ResponseCode"] == "03"
        bad_json = await c.post(API_PATH, content=b"{")
        assert msgspec.json.decode(bad_json.content)["vnp_ResponseCode"] == "03"
    assert sim.payments["ord1001"].refunded == 50000


async def test_control_api() -> None:
    sim = Simulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app()), base_url="http://sim") as c:
        created = await c.post("/_sim/payments", json={"order_id": "o9", "amount": 20000, "reference": "r9"})
        assert created.status_code == 201
        assert created.json()["reference"] == "r9"
        assert len(created.json()["provider_data"]["vnp_create_date"]) == 14
        assert (
            await c.post("/_sim/payments", json={"order_id": "o9", "amount": 1, "currency": "USD"})
        ).status_code == 400
        moved = await c.post("/_sim/payments/r9/status", json={"status": "succeeded"})
        assert moved.json()["transaction_status"] == "00"
        native = await c.post("/_sim/payments/r9/native", json={"response_code": "00", "transaction_status": "04"})
        assert native.json()["transaction_status"] == "04"
        await c.post("/_sim/payments/r9/status", json={"status": "succeeded"})
        refunded = await c.post("/_sim/payments/r9/refund", json={"amount": 5000})
        assert refunded.json()["refunds"][0]["amount"] == 5000
        assert (await c.post("/_sim/payments/r9/refund", json={"amount": 50000})).status_code == 400
        assert (await c.post("/_sim/payments/r9/status", json={"status": "authorized"})).status_code == 400
        assert (await c.get("/_sim/payments/zz")).status_code == 404
        put = await c.put("/_sim/faults", json={"drop_rate": 0.25, "seed": 4})
        assert put.json()["drop_rate"] == 0.25
        assert sim.dispatcher.faults.drop_rate == 0.25
        assert (await c.get("/_sim/faults")).json()["seed"] == 4
        assert (await c.get("/_sim/deliveries")).json() == {"deliveries": [], "dropped": []}


def test_pay_url_matches_the_vector_rule() -> None:
    sim = Simulator(clock=lambda: datetime(2025, 11, 24, 9, 59, 55, tzinfo=UTC))
    sim.create_payment(order_id="ord1001", amount=150000, currency="VND")
    url = sim.pay_url("ord1001")
    query = url.split("?", 1)[1]
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    assert params["vnp_CreateDate"] == "20251124165955"
    from urllib.parse import parse_qsl

    decoded = dict(parse_qsl(query))
    del decoded["vnp_SecureHash"]
    assert query == signed_query_string(decoded, TEST_HASH_SECRET)


def test_gateway_config_builds_an_adapter_account() -> None:
    config = Simulator().gateway_config("http://vnpay.sim")
    account = msgspec.convert(config, Account)
    assert (account.tmn_code, account.hash_secrets, account.api_base) == (
        TEST_TMN_CODE,
        [TEST_HASH_SECRET],
        "http://vnpay.sim",
    )
