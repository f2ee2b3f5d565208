"""fetch_status (querydr) against the simulator, recorded answer shapes, retries and refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from providers.base import PaymentStatus, StatusQuery
from providers.errors import GatewayRejectedError, GatewayUnavailableError, UnknownAccountError
from providers.http import RetryPolicy
from providers.simkit import Faults, SimPayment
from providers.vnpay import Account, StatusClient
from providers.vnpay.signing import GMT7, format_vnp_date, matches, pipe_string, sign_pipe
from providers.vnpay.sim.simulator import TEST_HASH_SECRET, Simulator
from providers.vnpay.wire import ApiResponse, QueryDrRequest

from .helpers import status_client

P = PaymentStatus
ASKED = datetime(2025, 11, 24, 10, 30, tzinfo=UTC)
API_BASE = "http://vnpay.sim"


class Sleeps:
    def __init__(self) -> None:
        self.waited: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)


def _query(payment: SimPayment, amount: int = 150000) -> StatusQuery:
    return StatusQuery(
        order_id="o1",
        account="default",
        reference=payment.reference,
        amount=amount,
        currency="VND",
        created_at=ASKED,
        provider_data=dict(payment.provider_data),
    )


@pytest.fixture
def sim() -> Simulator:
    return Simulator(clock=lambda: datetime(2025, 11, 24, 9, 59, 55, tzinfo=UTC))


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app())) as c:
        yield c


def _adapter(sim: Simulator, sleeps: Sleeps | None = None, **overrides: Any) -> StatusClient:
    config = {**sim.gateway_config(API_BASE), **overrides}
    return StatusClient(
        [Account(**config)],
        clock=lambda: ASKED,
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
        sleep=sleeps or Sleeps(),
    )


async def _fetch(sim: Simulator, client: httpx.AsyncClient, payment: SimPayment) -> Any:
    return await _adapter(sim).fetch_status(_query(payment), client)


async def test_created_payment_is_pending(sim: Simulator, client: httpx.AsyncClient) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    assert payment.provider_data == {"vnp_create_date": "20251124165955"}
    event = await _fetch(sim, client, payment)
    assert (event.status, event.provider_payment_id, event.flag) == (P.PENDING, None, None)
    assert event.occurred_at == ASKED
    assert event.dedupe_key == "vnpay:default:status:o1:pending:None:0"


# set_status(status) → what querydr says. querydr's TransactionStatus 02 cannot tell a
# cancellation from a failure (the IPN's ResponseCode can), so canceled reads as failed here.
STATUS_CASES = [
    (P.SUCCEEDED, P.SUCCEEDED, None),
    (P.FAILED, P.FAILED, None),
    (P.CANCELED, P.FAILED, None),
    (P.PROCESSING, P.PROCESSING, "fraud_review"),
]


@pytest.mark.parametrize(("set_to", "expected", "flag"), STATUS_CASES)
async def test_set_status_through_querydr(
    sim: Simulator, client: httpx.AsyncClient, set_to: PaymentStatus, expected: PaymentStatus, flag: str | None
) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, set_to)
    event = await _fetch(sim, client, payment)
    assert (event.status, event.flag, event.amount, event.currency) == (expected, flag, 150000, "VND")
    paid = set_to in (P.SUCCEEDED, P.PROCESSING)
    assert (event.provider_payment_id is not None) == paid


# Every vnp_TransactionStatus of the reference's table, as querydr reports it.
NATIVE_CASES = [
    ("00", "00", P.SUCCEEDED, None),
    ("", "01", P.PENDING, None),
    ("51", "02", P.FAILED, None),
    ("99", "04", P.FAILED, "reversal"),
    ("07", "07", P.PROCESSING, "fraud_review"),
    ("11", "08", P.CANCELED, None),
    ("00", "10", P.SUCCEEDED, None),
    ("24", "11", P.CANCELED, None),
    ("00", "20", P.SUCCEEDED, None),
    ("00", "05", P.SUCCEEDED, None),
    ("00", "06", P.SUCCEEDED, None),
    ("00", "09", P.SUCCEEDED, "refund_rejected"),
    ("00", "55", P.PENDING, "unlisted_transaction_status:55"),
]


@pytest.mark.parametrize(("rc", "ts", "expected", "flag"), NATIVE_CASES)
async def test_native_states_through_querydr(
    sim: Simulator, client: httpx.AsyncClient, rc: str, ts: str, expected: PaymentStatus, flag: str | None
) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_native(payment.reference, rc, ts)
    event = await _fetch(sim, client, payment)
    assert (event.status, event.flag) == (expected, flag)
    assert event.reason == f"vnpay:querydr 00/01/{ts}"


async def test_full_refund(sim: Simulator, client: httpx.AsyncClient) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    sim.set_status(payment.reference, P.REFUNDED)
    event = await _fetch(sim, client, payment)
    assert (event.status, event.amount, event.refunded_amount, event.flag) == (P.REFUNDED, 150000, 150000, None)
    assert event.dedupe_key.endswith(f":refunded:{event.provider_payment_id}:150000")


async def test_partial_refunds_report_a_flagged_lower_bound(sim: Simulator, client: httpx.AsyncClient) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    sim.refund(payment.reference, 50000)
    first = await _fetch(sim, client, payment)
    assert (first.status, first.amount, first.refunded_amount) == (P.PARTIALLY_REFUNDED, 150000, 50000)
    assert first.flag is not None
    assert first.flag.startswith("partial_refund_sum_unconfirmed")
    sim.refund(payment.reference, 30000)  # cumulative 80,000; querydr shows the latest refund
    second = await _fetch(sim, client, payment)
    assert (second.status, second.refunded_amount) == (P.PARTIALLY_REFUNDED, 30000)
    assert second.dedupe_key != first.dedupe_key
    sim.refund(payment.reference, 70000)  # the rest: the last one is partial (03) too
    last = await _fetch(sim, client, payment)
    assert (last.status, last.refunded_amount) == (P.PARTIALLY_REFUNDED, 70000)


@pytest.mark.parametrize(("ts", "flag"), [("05", None), ("06", None), ("09", "refund_rejected")])
async def test_refund_in_progress_or_rejected_is_a_proven_payment(
    sim: Simulator, client: httpx.AsyncClient, ts: str, flag: str | None
) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    sim.refund(payment.reference, 150000)
    sim.set_refund_status(payment.reference, ts)
    event = await _fetch(sim, client, payment)
    assert (event.status, event.flag, event.amount, event.refunded_amount) == (P.SUCCEEDED, flag, 150000, None)


async def test_unknown_payment_and_wrong_create_date_are_none(sim: Simulator, client: httpx.AsyncClient) -> None:
    assert (
        await _fetch(sim, client, SimPayment(reference="nope", provider_data={"vnp_create_date": "20251124165955"}))
        is None
    )
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    moved = SimPayment(reference=payment.reference, provider_data={"vnp_create_date": "20251124170000"})
    assert await _fetch(sim, client, moved) is None  # VNPay finds a payment by TxnRef and its date


@pytest.mark.parametrize("provider_data", [{}, {"vnp_create_date": "2025-11-24"}, {"vnp_create_date": 20251124165955}])
async def test_missing_create_date_is_refused_before_calling(provider_data: dict[str, Any]) -> None:
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(GatewayRejectedError, match=r"provider_data\.vnp_create_date"):
            await status_client().fetch_status(_query(SimPayment(reference="o1", provider_data=provider_data)), client)
    assert calls == []


async def test_wrong_credentials_are_refused(sim: Simulator, client: httpx.AsyncClient) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    with pytest.raises(GatewayRejectedError, match="97 invalid checksum"):
        await _adapter(sim, hash_secrets=["WRONGSECRET"]).fetch_status(_query(payment), client)
    with pytest.raises(GatewayRejectedError, match="02 invalid TmnCode"):
        await _adapter(sim, tmn_code="NOTOURS1").fetch_status(_query(payment), client)


async def test_rotated_secret_verifies_answers_signed_with_any_listed_secret(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    # The first secret signs requests; the simulator's answer verifies with the same one.
    event = await _adapter(sim, hash_secrets=[TEST_HASH_SECRET, "OLD"]).fetch_status(_query(payment), client)
    assert event is not None
    assert event.status is P.SUCCEEDED


async def test_request_is_signed_fresh_and_dated_now_in_gmt7(sim: Simulator) -> None:
    seen: list[QueryDrRequest] = []
    inner = httpx.ASGITransport(app=sim.asgi_app())

    class Spy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(msgspec.json.decode(await request.aread(), type=QueryDrRequest))
            return await inner.handle_async_request(request)

    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    async with httpx.AsyncClient(transport=Spy()) as client:
        subject = _adapter(sim)
        await subject.fetch_status(_query(payment), client)
        await subject.fetch_status(_query(payment), client)  # same payment again: no 94
    first, second = seen
    assert first.vnp_RequestId != second.vnp_RequestId
    assert len(first.vnp_RequestId) <= 32
    assert first.vnp_RequestId.isalnum()
    assert first.vnp_CreateDate == ASKED.astimezone(GMT7).strftime("%Y%m%d%H%M%S") == "20251124173000"
    assert first.vnp_TransactionDate == payment.provider_data["vnp_create_date"]
    assert matches(sign_pipe(first.signed_values(), TEST_HASH_SECRET), first.vnp_SecureHash)


# --- recorded shapes (reference §6; vector vnpay-09 shape) ------------------------------------


def _signed_answer(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "vnp_ResponseId": "8a3c1e2f7b6d4c59a0e1f2d3c4b5a697",
        "vnp_Command": "querydr",
        "vnp_ResponseCode": "00",
        "vnp_Message": "QueryDR Success",
        "vnp_TmnCode": "PRCN2026",
        "vnp_TxnRef": "o1",
        "vnp_Amount": "15000000",
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20251124170112",
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionType": "01",
        "vnp_TransactionStatus": "00",
        "vnp_OrderInfo": "Thanh toan don hang o1",
    }
    base.update(fields)
    answer = msgspec.convert(base, ApiResponse)
    base["vnp_SecureHash"] = sign_pipe(answer.querydr_signed_values(), TEST_HASH_SECRET)
    return msgspec.json.encode(base)


def _client_answering(*bodies: bytes, status: int = 200) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, content=bodies[min(len(calls), len(bodies)) - 1])

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), calls


O1 = SimPayment(reference="o1", provider_data={"vnp_create_date": "20251124165955"})


async def _fetch_recorded(*bodies: bytes, sleeps: Sleeps | None = None, status: int = 200) -> Any:
    client, _ = _client_answering(*bodies, status=status)
    async with client:
        subject = status_client(clock=lambda: ASKED, retry=RetryPolicy(attempts=3), sleep=sleeps or Sleeps())
        return await subject.fetch_status(_query(O1), client)


async def test_recorded_success_with_numeric_amount_and_promotion() -> None:
    body = _signed_answer(vnp_Amount=15000000, vnp_PromotionCode="SALE", vnp_PromotionAmount=10000)
    event = await _fetch_recorded(body)
    assert (event.status, event.amount, event.provider_payment_id) == (P.SUCCEEDED, 150000, "14226112")
    assert event.payload["vnp_Amount"] == 15000000


async def test_recorded_not_found_is_none() -> None:
    body = _signed_answer(vnp_ResponseCode="91", vnp_Message="Khong tim thay giao dich", vnp_Amount="")
    assert await _fetch_recorded(body) is None


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"vnp_ResponseId":"x","vnp_ResponseCode":"02","vnp_Message":"Invalid TmnCode"}', "02 invalid TmnCode"),
        (b'{"vnp_ResponseId":"x","vnp_ResponseCode":"03","vnp_Message":"Invalid format"}', "03 invalid data format"),
        (b'{"vnp_ResponseId":"x","vnp_ResponseCode":"97","vnp_Message":"Invalid Checksum"}', "hash_secrets"),
        (b'{"vnp_ResponseCode":"42"}', "unlisted"),
        (b"<html>oops</html>", "unreadable"),
        (b"[]", "unreadable"),
    ],
)
async def test_recorded_refusals(body: bytes, match: str) -> None:
    with pytest.raises(GatewayRejectedError, match=match):
        await _fetch_recorded(body)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"vnp_TxnRef": "other"}, "TxnRef"),
        ({"vnp_TmnCode": "OTHER123"}, "TmnCode"),
        ({"vnp_Amount": "15000050"}, "VND × 100"),
        ({"vnp_Amount": "abc"}, "VND × 100"),
    ],
)
async def test_answers_about_something_else_are_refused(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(GatewayRejectedError, match=match):
        await _fetch_recorded(_signed_answer(**fields))


async def test_unsigned_success_is_refused() -> None:
    body = msgspec.json.decode(_signed_answer())
    del body["vnp_SecureHash"]
    with pytest.raises(GatewayRejectedError, match="vnp_SecureHash"):
        await _fetch_recorded(msgspec.json.encode(body))


async def test_http_4xx_is_refused() -> None:
    with pytest.raises(GatewayRejectedError, match="HTTP 403"):
        await _fetch_recorded(b"forbidden", status=403)


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["94", "99", "08"])
async def test_vnpay_level_retry_codes_then_unavailable(code: str) -> None:
    sleeps = Sleeps()
    client, calls = _client_answering(_signed_answer(vnp_ResponseCode=code, vnp_Message="busy"))
    async with client:
        subject = status_client(clock=lambda: ASKED, retry=RetryPolicy(attempts=3), sleep=sleeps)
        with pytest.raises(GatewayUnavailableError, match=f"{code} .* after 3 attempt"):
            await subject.fetch_status(_query(O1), client)
    assert len(calls) == 3
    assert len(sleeps.waited) == 2
    request_ids = {msgspec.json.decode(c.content)["vnp_RequestId"] for c in calls}
    assert len(request_ids) == 3  # a fresh RequestId each time, or VNPay answers 94 forever


async def test_retry_code_then_success() -> None:
    event = await _fetch_recorded(_signed_answer(vnp_ResponseCode="94"), _signed_answer())
    assert event.status is P.SUCCEEDED


async def test_throttle_with_retry_after_is_waited_out(sim: Simulator) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.set_status(payment.reference, P.SUCCEEDED)
    inner = httpx.ASGITransport(app=sim.asgi_app())
    throttled: list[int] = []

    class ThrottleOnce(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if not throttled:
                throttled.append(1)
                sim.replace_faults(Faults(api_throttle_rate=1.0, retry_after=3))
                response = await inner.handle_async_request(request)
                sim.replace_faults(Faults())
                return response
            return await inner.handle_async_request(request)

    sleeps = Sleeps()
    async with httpx.AsyncClient(transport=ThrottleOnce()) as client:
        event = await _adapter(sim, sleeps).fetch_status(_query(payment), client)
    assert event is not None
    assert event.status is P.SUCCEEDED
    assert sleeps.waited == [3.0]


async def test_permanent_outage_gives_unavailable_after_the_budget(sim: Simulator, client: httpx.AsyncClient) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.replace_faults(Faults(api_error_rate=1.0, seed=1))
    sleeps = Sleeps()
    with pytest.raises(GatewayUnavailableError, match="HTTP 503 after 3 attempt"):
        await _adapter(sim, sleeps).fetch_status(_query(payment), client)
    assert len(sleeps.waited) == 2


async def test_long_retry_after_is_not_waited(sim: Simulator, client: httpx.AsyncClient) -> None:
    payment = sim.create_payment(order_id="o1", amount=150000, currency="VND")
    sim.replace_faults(Faults(api_throttle_rate=1.0, retry_after=120))
    sleeps = Sleeps()
    with pytest.raises(GatewayUnavailableError) as caught:
        await _adapter(sim, sleeps).fetch_status(_query(payment), client)
    assert caught.value.retry_after == 120
    assert sleeps.waited == []


async def test_unknown_account_name_is_refused() -> None:
    query = msgspec.structs.replace(_query(O1), account="nope")
    async with httpx.AsyncClient() as client:
        with pytest.raises(UnknownAccountError, match="'nope'"):
            await status_client().fetch_status(query, client)


def test_format_vnp_date_is_gmt7() -> None:
    assert format_vnp_date(datetime(2025, 11, 24, 17, 59, 59, tzinfo=UTC)) == "20251125005959"
    assert pipe_string(["a", "", "b"]) == "a||b"
