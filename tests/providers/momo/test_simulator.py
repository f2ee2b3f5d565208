"""The MoMo simulator: its IPNs pass our adapter, its faults behave, its API checks signatures like MoMo."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import PaymentEvent, PaymentStatus, StatusQuery, WebhookRequest
from providers.errors import GatewayError
from providers.momo import Account, Adapter, StatusClient, signing
from providers.momo.sim.simulator import ORDER_ID, Simulator
from providers.simkit import Faults
from service.serving import serving

from .helpers import vector

FAST = (0.001, 0.001, 0.001)
IPN_URL = "http://payrecon.test/webhooks/momo"


class Receiver:
    """payrecon's webhook endpoint in miniature: our adapter's verify + parse, MoMo's 204."""

    def __init__(self, sim: Simulator, statuses: list[int] | None = None) -> None:
        self.adapter = Adapter([msgspec.convert(sim.gateway_config("http://unused"), Account)])
        self.statuses = statuses or []  # forced answers for the first deliveries
        self.events: list[PaymentEvent] = []
        self.errors: list[GatewayError] = []
        self.urls: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if self.statuses:
            return httpx.Response(self.statuses.pop(0))
        delivery = WebhookRequest(
            method=request.method,
            body=request.content,
            headers={k.lower(): v for k, v in request.headers.items()},
            query_string=request.url.query.decode(),
            received_at=datetime.now(UTC),
        )
        try:
            self.adapter.verify(delivery)
            self.events += self.adapter.parse(delivery)
        except GatewayError as exc:
            self.errors.append(exc)
            ack = self.adapter.reject(exc)
        else:
            ack = self.adapter.acknowledge([])
        return httpx.Response(ack.status_code, content=ack.body)


def wired(faults: Faults | None = None, statuses: list[int] | None = None) -> tuple[Simulator, Receiver]:
    holder: list[Receiver] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return await holder[0](request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    sim = Simulator(webhook_url=IPN_URL, faults=faults, client=client, retry_delays=FAST)
    holder.append(Receiver(sim, statuses))
    return sim, holder[0]


async def test_signed_ipns_verify_and_parse_for_every_state_change() -> None:
    sim, receiver = wired()
    sim.create_payment(order_id="ord_1", amount=150000, currency="VND")
    sim.set_status("ord_1", PaymentStatus.PROCESSING)
    sim.set_status("ord_1", PaymentStatus.SUCCEEDED)
    sim.create_payment(order_id="ord_2", amount=20000, currency="VND")
    sim.set_status("ord_2", PaymentStatus.FAILED)
    sim.create_payment(order_id="ord_3", amount=20000, currency="VND")
    sim.set_status("ord_3", PaymentStatus.CANCELED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert receiver.errors == []
    got = [(e.reference, e.status, e.amount) for e in receiver.events]
    assert got == [
        ("ord_1", PaymentStatus.PROCESSING, 150000),
        ("ord_1", PaymentStatus.SUCCEEDED, 150000),
        ("ord_2", PaymentStatus.FAILED, 20000),
        ("ord_3", PaymentStatus.CANCELED, 20000),
    ]
    assert receiver.events[1].provider_payment_id == str(sim.payments["ord_1"].transId)
    assert receiver.events[3].reason == "momo:1005 Transaction failed because the url or QR code expired."
    assert all(d.accepted and d.status_code == 204 for d in sim.dispatcher.deliveries)


async def test_ipn_body_has_momo_field_order_and_integer_numbers() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1", amount=150000, currency="VND")
    sim.set_result("ord_1", 0)
    body = sim.ipn_body(sim.payments["ord_1"])
    reference_example = msgspec.json.decode(vector("momo-01")["input"]["body"].encode())
    assert list(msgspec.json.decode(body)) == list(reference_example)
    assert b'"amount":150000,' in body


async def test_wrong_key_fault_fails_signature_and_is_retried() -> None:
    sim, receiver = wired(Faults(wrong_key=True))
    sim.create_payment(order_id="ord_1", amount=150000, currency="VND")
    sim.set_status("ord_1", PaymentStatus.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert receiver.events == []
    assert len(receiver.errors) == 1 + len(FAST)
    assert {type(e).__name__ for e in receiver.errors} == {"SignatureError"}
    assert [d.status_code for d in sim.dispatcher.deliveries] == [400] * 4


async def test_retried_on_non_2xx_until_accepted_any_2xx_counts() -> None:
    sim, _receiver = wired(statuses=[500, 503, 200])
    sim.create_payment(order_id="ord_1", amount=150000, currency="VND")
    sim.set_status("ord_1", PaymentStatus.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert [(d.attempt, d.status_code, d.accepted) for d in sim.dispatcher.deliveries] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


async def test_retries_are_bounded() -> None:
    sim, _ = wired(statuses=[500] * 10)
    sim.create_payment(order_id="ord_1", amount=150000, currency="VND")
    sim.set_status("ord_1", PaymentStatus.FAILED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert len(sim.dispatcher.deliveries) == 1 + len(FAST)
    assert not any(d.accepted for d in sim.dispatcher.deliveries)


async def run_seeded(faults: Faults, n: int = 30) -> tuple[Simulator, Receiver]:
    sim, receiver = wired(faults)
    for i in range(n):
        sim.create_payment(order_id=f"ord_{i}", amount=10000, currency="VND")
        sim.set_status(f"ord_{i}", PaymentStatus.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    return sim, receiver


async def test_drop_rate_is_seeded() -> None:
    first, receiver = await run_seeded(Faults(drop_rate=0.4, seed=11))
    second, _ = await run_seeded(Faults(drop_rate=0.4, seed=11))
    assert first.dispatcher.dropped == second.dispatcher.dropped
    assert 0 < len(first.dispatcher.dropped) < 30
    assert len(receiver.events) == 30 - len(first.dispatcher.dropped)


async def test_duplicates_share_a_dedupe_key() -> None:
    _, receiver = await run_seeded(Faults(duplicate_rate=1.0, seed=3), n=5)
    assert len(receiver.events) == 10
    assert len({e.dedupe_key for e in receiver.events}) == 5


async def test_max_delay_still_delivers_everything() -> None:
    _, receiver = await run_seeded(Faults(max_delay=0.02, seed=5), n=10)
    assert sorted(e.reference for e in receiver.events) == sorted(f"ord_{i}" for i in range(10))


def test_final_payments_do_not_move() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1", amount=150000, currency="VND")
    sim.set_result("ord_1", 1006)
    with pytest.raises(ValueError, match="final"):
        sim.set_status("ord_1", PaymentStatus.SUCCEEDED)
    with pytest.raises(ValueError, match="1088"):
        sim.refund("ord_1", 1000)


async def test_authorised_is_captured_or_cancelled() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1", amount=150000, currency="VND")
    sim.set_status("ord_1", PaymentStatus.AUTHORIZED)
    with pytest.raises(ValueError, match="captured"):
        sim.set_status("ord_1", PaymentStatus.FAILED)
    sim.set_status("ord_1", PaymentStatus.CANCELED)
    assert sim.payments["ord_1"].resultCode == 1003


def test_creation_rules() -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match="VND"):
        sim.create_payment(order_id="o", amount=10000, currency="USD")
    with pytest.raises(ValueError, match="22"):
        sim.create_payment(order_id="o", amount=999, currency="VND")
    sim.create_payment(order_id="o", amount=1000, currency="VND")
    with pytest.raises(ValueError, match="41"):
        sim.create_payment(order_id="o", amount=1000, currency="VND")
    with pytest.raises(ValueError, match="20"):
        sim.create_payment(order_id="bad id!", amount=1000, currency="VND")


# --- MoMo's create and refund endpoints ------------------------------------------------


def signed_request(kind: str, fields: dict[str, Any], sim: Simulator, secret: str | None = None) -> dict[str, Any]:
    template = {"create": signing.CREATE_FIELDS, "refund": signing.REFUND_FIELDS}[kind]
    message = signing.raw_string(template, {**fields, "accessKey": sim.access_key})
    return fields | {"signature": signing.sign(secret or sim.secret_key, message)}


async def test_create_endpoint_then_ipn_to_its_ipn_url() -> None:
    sim, receiver = wired()
    fields = dict(vector("momo-09")["input"]["fields"])
    body = signed_request("create", fields, sim)
    assert body["signature"] == vector("momo-09")["expected_signature"]  # simulator defaults = vector credentials
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app())) as client:
        created = await client.post("http://momo.sim/v2/gateway/api/create", json=body)
        duplicate = await client.post("http://momo.sim/v2/gateway/api/create", json=body)
        tampered = await client.post("http://momo.sim/v2/gateway/api/create", json=body | {"amount": 15000})
        tiny = await client.post(
            "http://momo.sim/v2/gateway/api/create",
            json=signed_request("create", fields | {"orderId": "o2", "amount": 10}, sim),
        )
    assert created.status_code == 200
    assert created.json()["resultCode"] == 0
    assert created.json()["payUrl"]
    assert (duplicate.status_code, duplicate.json()["resultCode"]) == (400, 41)
    assert (tampered.status_code, tampered.json()["resultCode"]) == (400, 20)
    assert tampered.json()["subErrors"][0]["field"] == "signature"
    assert (tiny.status_code, tiny.json()["resultCode"]) == (400, 22)
    sim.set_status("ord_1001", PaymentStatus.SUCCEEDED)
    await sim.dispatcher.drain()
    await sim.dispatcher.aclose()
    assert receiver.urls == [fields["ipnUrl"]]
    [event] = receiver.events
    assert (event.reference, event.amount, event.status) == ("ord_1001", 150000, PaymentStatus.SUCCEEDED)


async def test_refund_endpoint() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    fields = dict(vector("momo-08")["input"]["fields"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app())) as client:

        async def refund(**overrides: Any) -> httpx.Response:
            return await client.post(
                "http://momo.sim/v2/gateway/api/refund", json=signed_request("refund", fields | overrides, sim)
            )

        sim.set_status("ord_1001", PaymentStatus.SUCCEEDED)
        trans_id = sim.payments["ord_1001"].transId
        unknown = await refund()  # momo-08's transId is not this payment's
        ok = await refund(transId=trans_id)
        again = await refund(transId=trans_id)  # same refund orderId
        too_much = await refund(transId=trans_id, orderId="ord_1001-rf2", amount=100001)
        bad_sig = await client.post(
            "http://momo.sim/v2/gateway/api/refund", json=signed_request("refund", fields, sim, secret="nope")
        )
    assert unknown.json()["resultCode"] == 1088
    assert (ok.status_code, ok.json()["resultCode"]) == (200, 0)
    assert ok.json()["transId"] != trans_id
    assert again.json()["resultCode"] == 41
    assert too_much.json()["resultCode"] == 1081
    assert bad_sig.json()["resultCode"] == 20
    assert sim.payments["ord_1001"].refunded == 50000


# --- control API ---------------------------------------------------------------------


async def test_control_api() -> None:
    sim, receiver = wired()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app()), base_url="http://s") as client:
        created = await client.post("/_sim/payments", json={"order_id": "ord_1", "amount": 150000, "currency": "VND"})
        assert (created.status_code, created.json()) == (201, {"reference": "ord_1", "provider_data": {}})
        paid = await client.post("/_sim/payments/ord_1/status", json={"status": "succeeded"})
        assert (paid.status_code, paid.json()["resultCode"]) == (200, 0)
        refunded = await client.post("/_sim/payments/ord_1/refund", json={"amount": 50000})
        assert refunded.json()["refunded"] == 50000
        assert (await client.post("/_sim/payments/ord_1/status", json={"result_code": 1006})).status_code == 409
        assert (await client.post("/_sim/payments/ord_1/status", json={})).status_code == 409
        assert (await client.get("/_sim/payments/nope")).status_code == 404
        assert [p["orderId"] for p in (await client.get("/_sim/payments")).json()] == ["ord_1"]
        faults = await client.put("/_sim/faults", json={"api_error_rate": 1.0, "seed": 1})
        assert faults.json()["api_error_rate"] == 1.0
        assert sim.dispatcher.faults is sim.faults
        assert (await client.get("/_sim/faults")).json()["seed"] == 1
        assert (await client.post("/v2/gateway/api/query", json={})).status_code == 503
        await sim.dispatcher.drain()
        deliveries = (await client.get("/_sim/deliveries")).json()
    await sim.dispatcher.aclose()
    assert [d["status_code"] for d in deliveries["deliveries"]] == [204]
    assert len(receiver.events) == 1


def test_gateway_config_is_a_valid_account() -> None:
    sim = Simulator(account="shop", partner_code="MOMOX", access_key="ak", secret_key="sk")
    config = sim.gateway_config("http://127.0.0.1:9000")
    acct = msgspec.convert(config, Account)
    assert (acct.account, acct.partner_code, acct.api_base, acct.secret_keys) == (
        "shop",
        "MOMOX",
        "http://127.0.0.1:9000",
        ["sk"],
    )


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="aZ9-_.!", max_size=12))
def test_order_id_rule_is_momos_regex(order_id: str) -> None:
    momo = re.compile(r"^[0-9a-zA-Z]([-_.]*[0-9a-zA-Z]+)*$")  # as documented; backtracks badly on long ids
    assert bool(ORDER_ID.match(order_id)) == bool(momo.match(order_id))


async def test_standalone_over_real_http() -> None:
    """What `payrecon simulate momo --port N` serves: the control API and the query API on one port."""
    sim = Simulator()
    async with serving(sim.asgi_app()) as base, httpx.AsyncClient(base_url=base) as client:
        created = await client.post("/_sim/payments", json={"order_id": "ord_77", "amount": 99000})
        assert created.status_code == 201
        await client.post("/_sim/payments/ord_77/status", json={"status": "succeeded"})
        status = StatusClient([msgspec.convert(sim.gateway_config(base), Account)])
        query = StatusQuery(
            order_id="ord_77",
            account="default",
            reference="ord_77",
            amount=99000,
            currency="VND",
            created_at=datetime.now(UTC),
        )
        event = await status.fetch_status(query, client)
    assert event is not None
    assert (event.status, event.amount) == (PaymentStatus.SUCCEEDED, 99000)
