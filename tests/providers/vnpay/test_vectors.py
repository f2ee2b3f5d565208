"""Every VNPay vector of tests/fixtures/vectors.json, through the adapter and the signing helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from providers.base import PaymentStatus, StatusQuery
from providers.errors import GatewayRejectedError, SignatureError
from providers.vnpay.signing import pipe_string, query_signing_string, sign_pipe
from providers.vnpay.sim.signing import build_pay_url, sign_query
from providers.vnpay.sim.wire import RefundRequest
from providers.vnpay.status import build_querydr
from providers.vnpay.wire import ApiResponse

from .helpers import account, adapter, ipn, status_client, vector, vectors

ERRORS = {"SignatureError": SignatureError}


@pytest.mark.parametrize("v", vectors("ipn"), ids=lambda v: v["id"])
def test_ipn_vector_signing_string_and_signature(v: dict[str, Any]) -> None:
    params = v["input"]["params"]
    assert query_signing_string(params) == v["signed_string"]
    assert sign_query(params, v["secret"]) == v["expected_signature"]


@pytest.mark.parametrize("v", vectors("ipn"), ids=lambda v: v["id"])
def test_ipn_vector_verifies_or_is_rejected(v: dict[str, Any]) -> None:
    subject = adapter(account(tmn_code=v["credentials"]["vnp_TmnCode"], hash_secrets=[v["secret"]]))
    request = ipn(v["input"]["query_string"])
    if v["valid"]:
        subject.verify(request)
    else:
        with pytest.raises(ERRORS[v["expected_outcome"]]):
            subject.verify(request)
        ack = subject.reject(SignatureError("x"))
        assert ack.status_code == v["ack"]["status"]
        assert ack.content_type == v["ack"]["content_type"]
        assert msgspec.json.decode(ack.body) == v["ack"]["body"]


@pytest.mark.parametrize("v", [v for v in vectors("ipn") if "expected_event" in v], ids=lambda v: v["id"])
def test_ipn_vector_parses_to_expected_event(v: dict[str, Any]) -> None:
    subject = adapter(account(tmn_code=v["credentials"]["vnp_TmnCode"], hash_secrets=[v["secret"]]))
    request = ipn(v["input"]["query_string"])
    subject.verify(request)
    [event] = subject.parse(request)
    expected = v["expected_event"]
    assert event.dedupe_key == expected["dedupe_key"]
    # The vectors' "order_id" is vnp_TxnRef, which PaymentEvent calls `reference` (see report).
    assert event.reference == expected["order_id"]
    assert event.order_id is None
    assert event.status == PaymentStatus(expected["status"])
    assert event.amount == expected["amount"]
    assert event.currency == expected["currency"]
    assert event.provider_payment_id == expected["provider_payment_id"]
    assert event.occurred_at == datetime.fromisoformat(expected["occurred_at"].replace("Z", "+00:00"))
    assert event.occurred_at.tzinfo is not None
    assert event.reason == expected["reason"]
    assert event.account == "default"
    assert event.provider == "vnpay"
    assert event.payload["vnp_TxnRef"] == expected["order_id"]
    assert "account" not in event.payload
    assert subject.acknowledge([]).body == msgspec.json.encode(v["ack"]["body"])


def test_querydr_request_vector_body_and_signature() -> None:
    v = vector("vnpay-08")
    fields = v["input"]["fields"]
    query = StatusQuery(
        order_id="ord1001",
        account="default",
        reference=fields["vnp_TxnRef"],
        amount=150000,
        currency="VND",
        created_at=datetime(2025, 11, 24, 9, 59, 55, tzinfo=UTC),
        provider_data={"vnp_create_date": fields["vnp_TransactionDate"]},
    )
    body = build_querydr(
        account(server_ip=fields["vnp_IpAddr"]),
        query,
        request_id=fields["vnp_RequestId"],
        create_date=fields["vnp_CreateDate"],
    )
    assert pipe_string(body.signed_values()) == v["signed_string"]
    assert body.vnp_SecureHash == v["expected_signature"]
    assert msgspec.json.encode(body).decode() == v["expected_request_body"]


def test_querydr_response_vector_signing_string() -> None:
    v = vector("vnpay-09")
    answer = msgspec.json.decode(v["input"]["body"], type=ApiResponse)
    assert pipe_string(answer.querydr_signed_values()) == v["signed_string"]
    assert sign_pipe(answer.querydr_signed_values(), v["secret"]) == v["expected_signature"]
    tampered = vector("vnpay-10")
    edited = msgspec.json.decode(tampered["input"]["body"], type=ApiResponse)
    assert pipe_string(edited.querydr_signed_values()) == tampered["signed_string"]
    assert sign_pipe(edited.querydr_signed_values(), v["secret"]) == tampered["expected_signature"]
    assert edited.vnp_SecureHash != tampered["expected_signature"]


def _answering(body: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, text=body)))


def _ord1001() -> StatusQuery:
    return StatusQuery(
        order_id="ord1001",
        account="default",
        reference="ord1001",
        amount=150000,
        currency="VND",
        created_at=datetime(2025, 11, 24, 9, 59, 55, tzinfo=UTC),
        provider_data={"vnp_create_date": "20251124165955"},
    )


async def test_querydr_response_vector_through_fetch_status() -> None:
    v = vector("vnpay-09")
    asked = datetime(2025, 11, 24, 10, 15, tzinfo=UTC)
    subject = status_client(clock=lambda: asked)
    async with _answering(v["input"]["body"]) as client:
        event = await subject.fetch_status(_ord1001(), client)
    assert event is not None
    expected = v["expected_event"]
    assert event.reference == expected["order_id"]
    assert event.status == PaymentStatus(expected["status"])
    assert event.amount == expected["amount"]
    assert event.currency == expected["currency"]
    assert event.provider_payment_id == expected["provider_payment_id"]
    assert event.reason == expected["reason"]
    assert event.occurred_at == asked
    assert event.dedupe_key == "vnpay:default:status:ord1001:succeeded:14226112:0"


async def test_tampered_querydr_response_vector_is_rejected() -> None:
    async with _answering(vector("vnpay-10")["input"]["body"]) as client:
        with pytest.raises(GatewayRejectedError, match="vnp_SecureHash"):
            await status_client().fetch_status(_ord1001(), client)


def test_refund_request_vector_signature() -> None:
    v = vector("vnpay-11")
    request = RefundRequest(**v["input"]["fields"])
    assert pipe_string(request.signed_values()) == v["signed_string"]
    assert sign_pipe(request.signed_values(), v["secret"]) == v["expected_signature"]


def test_pay_url_vector() -> None:
    v = vector("vnpay-12")
    params = v["input"]["params"]
    assert query_signing_string(params) == v["signed_string"]
    assert sign_query(params, v["secret"]) == v["expected_signature"]
    assert build_pay_url("https://sandbox.vnpayment.vn/paymentv2/vpcpay.html", params, v["secret"]) == v["expected_url"]
