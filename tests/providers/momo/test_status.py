"""fetch_status against the MoMo simulator and against recorded answer shapes; retries and refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from providers.base import PaymentEvent, PaymentStatus, StatusQuery
from providers.codes import CodeOutcome
from providers.errors import GatewayRejectedError, GatewayUnavailableError, UnknownAccountError
from providers.http import RetryPolicy
from providers.momo import Account, StatusClient
from providers.momo.sim.simulator import Simulator
from providers.momo.wire import RESULT_CODES
from providers.simkit import Faults

from .helpers import PARTNER, vector

NOW = datetime(2025, 11, 24, 17, 0, tzinfo=UTC)
API = "http://momo.sim"


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def query(reference: str = "ord_1001", account: str = "default", amount: int = 150000) -> StatusQuery:
    return StatusQuery(
        order_id="o-" + reference, account=account, reference=reference, amount=amount, currency="VND", created_at=NOW
    )


def make_client(sim: Simulator | None = None, sleeps: Sleeps | None = None, **overrides: Any) -> StatusClient:
    config = (sim or Simulator()).gateway_config(API) | overrides
    return StatusClient(
        [msgspec.convert(config, Account)],
        clock=lambda: NOW,
        sleep=sleeps if sleeps is not None else Sleeps(),
        retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05),
    )


def sim_client(sim: Simulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app()))


async def ask(sim: Simulator, reference: str = "ord_1001", **overrides: Any) -> PaymentEvent | None:
    async with sim_client(sim) as client:
        return await make_client(sim, **overrides).fetch_status(query(reference), client)


# --- against the simulator ---------------------------------------------------------------


SIM_CODES = sorted(code for code, m in RESULT_CODES.items() if m.outcome is CodeOutcome.PAYMENT and code != 1000)


@pytest.mark.parametrize("code", SIM_CODES)
async def test_every_payment_code_the_simulator_can_produce(code: int) -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    sim.set_result("ord_1001", code)
    event = await ask(sim)
    assert event is not None
    payment = sim.payments["ord_1001"]
    assert event.status == RESULT_CODES[code].status
    assert event.amount == 150000
    assert event.currency == "VND"
    assert event.account == "default"
    assert event.reference == "ord_1001"
    assert event.provider_payment_id == str(payment.transId)
    assert event.occurred_at == NOW  # the time we asked: the newest news
    assert event.reason is not None
    assert event.reason.startswith(f"momo:{code} ")
    assert event.flag == RESULT_CODES[code].flag
    assert event.refunded_amount is None
    assert event.payload["resultCode"] == code
    assert event.dedupe_key == f"momo:default:status:ord_1001:{event.status}:{payment.transId}:0"


async def test_new_payment_is_pending_without_a_transaction() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    event = await ask(sim)
    assert event is not None
    assert (event.status, event.provider_payment_id, event.reason) == (
        PaymentStatus.PENDING,
        None,
        "momo:1000 Transaction is initiated, waiting for user confirmation.",
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (PaymentStatus.SUCCEEDED, 0),
        (PaymentStatus.FAILED, 1001),
        (PaymentStatus.CANCELED, 1005),
        (PaymentStatus.AUTHORIZED, 9000),
        (PaymentStatus.PROCESSING, 7000),
        (PaymentStatus.PENDING, 8000),
    ],
)
async def test_set_status_picks_a_native_code_and_it_maps_back(status: PaymentStatus, code: int) -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    sim.set_status("ord_1001", status)
    assert sim.payments["ord_1001"].resultCode == code
    event = await ask(sim)
    assert event is not None
    assert event.status == status


async def test_refunds_are_cumulative_and_change_the_dedupe_key() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    sim.set_status("ord_1001", PaymentStatus.SUCCEEDED)
    paid = await ask(sim)
    sim.refund("ord_1001", 50000)
    partial = await ask(sim)
    again = await ask(sim)
    sim.refund("ord_1001", 30000)
    more = await ask(sim)
    sim.set_status("ord_1001", PaymentStatus.REFUNDED)  # the rest
    full = await ask(sim)
    assert paid is not None
    assert partial is not None
    assert again is not None
    assert more is not None
    assert full is not None
    assert [e.status for e in (paid, partial, more, full)] == [
        PaymentStatus.SUCCEEDED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
    ]
    assert [e.refunded_amount for e in (paid, partial, more, full)] == [None, 50000, 80000, 150000]
    assert {e.amount for e in (paid, partial, more, full)} == {150000}  # the original payment amount
    assert again.dedupe_key == partial.dedupe_key  # same answer twice: a duplicate, not a new row
    assert len({e.dedupe_key for e in (paid, partial, more, full)}) == 4


async def test_unknown_order_is_none() -> None:
    assert await ask(Simulator(), "never_created") is None


async def test_unlisted_code_is_a_flagged_pending_answer() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    sim.set_result("ord_1001", 1234)
    event = await ask(sim)
    assert event is not None
    assert event.status is PaymentStatus.PENDING
    assert event.flag is not None
    assert "1234" in event.flag


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"secret_keys": ["PRwrongSecretKey000000000000000000"]}, 20),
        ({"access_key": "PRwrongAccessKey"}, 20),
        ({"partner_code": "MOMOUNKNOWN"}, 13),
    ],
)
async def test_wrong_credentials_are_rejected(overrides: dict[str, Any], code: int) -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    with pytest.raises(GatewayRejectedError, match=f"resultCode {code} .*check partner_code"):
        await ask(sim, **overrides)


async def test_bad_signature_error_shows_momo_expected_string() -> None:
    sim = Simulator()
    with pytest.raises(GatewayRejectedError, match=r"signature: .*accessKey=\*\*\*\*\*&orderId=ord_1001&partnerCode="):
        await ask(sim, secret_keys=["nope"])


async def test_rotation_signs_queries_with_the_first_secret() -> None:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    assert await ask(sim, secret_keys=[sim.secret_key, "PRretired"]) is not None
    with pytest.raises(GatewayRejectedError):
        await ask(sim, secret_keys=["PRnotYetActive", sim.secret_key])


async def test_unknown_account_in_query() -> None:
    async with sim_client(Simulator()) as client:
        with pytest.raises(UnknownAccountError):
            await make_client().fetch_status(query(account="elsewhere"), client)


# --- retries against the fault knobs ---------------------------------------------------


async def test_throttled_forever_waits_out_retry_after_then_gives_up() -> None:
    sim = Simulator(faults=Faults(api_throttle_rate=1.0, retry_after=2.5))
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    sleeps = Sleeps()
    with pytest.raises(GatewayUnavailableError, match="HTTP 429 after 4 attempt") as info:
        await ask(sim, sleeps=sleeps)
    assert sleeps == [2.5, 2.5, 2.5]
    assert info.value.retry_after == 2.5


class Scripted(httpx.AsyncBaseTransport):
    """Answers from a script first, then from the simulator; records every request."""

    def __init__(
        self, sim: Simulator, script: list[httpx.Response | Callable[[httpx.Request], httpx.Response]]
    ) -> None:
        self.app = httpx.ASGITransport(app=sim.asgi_app())
        self.script = script
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            return step(request) if callable(step) else step
        return await self.app.handle_async_request(request)


async def scripted(sim: Simulator, script: list[Any], sleeps: Sleeps, **overrides: Any) -> tuple[Any, Scripted]:
    transport = Scripted(sim, script)
    async with httpx.AsyncClient(transport=transport) as client:
        try:
            result: Any = await make_client(sim, sleeps, **overrides).fetch_status(query(), client)
        except Exception as exc:
            result = exc
    return result, transport


def momo_json(body: dict[str, Any], status_code: int = 200) -> httpx.Response:
    return httpx.Response(status_code, json=body)


@pytest.fixture
def paid_sim() -> Simulator:
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    sim.set_status("ord_1001", PaymentStatus.SUCCEEDED)
    return sim


async def test_one_429_with_retry_after_is_waited_out(paid_sim: Simulator) -> None:
    sleeps = Sleeps()
    throttled = httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "slow down"})
    event, transport = await scripted(paid_sim, [throttled], sleeps)
    assert isinstance(event, PaymentEvent)
    assert event.status is PaymentStatus.SUCCEEDED
    assert sleeps == [3.0]
    assert len(transport.requests) == 2


async def test_permanent_5xx_is_unavailable_after_the_budget(paid_sim: Simulator) -> None:
    sleeps = Sleeps()
    paid_sim.replace_faults(Faults(api_error_rate=1.0))
    error, transport = await scripted(paid_sim, [], sleeps)
    assert isinstance(error, GatewayUnavailableError)
    assert "HTTP 503 after 4 attempt" in str(error)
    assert len(transport.requests) == 4
    assert len(sleeps) == 3


@pytest.mark.parametrize("code", [10, 43, 40])
async def test_busy_codes_are_retried_with_a_new_request_id(paid_sim: Simulator, code: int) -> None:
    sleeps = Sleeps()
    busy = momo_json({"resultCode": code, "message": "busy", "responseTime": 1}, 400 if code == 40 else 200)
    event, transport = await scripted(paid_sim, [busy], sleeps)
    assert isinstance(event, PaymentEvent)
    assert event.status is PaymentStatus.SUCCEEDED
    assert len(sleeps) == 1
    ids = [msgspec.json.decode(r.content)["requestId"] for r in transport.requests]
    assert len(ids) == len(set(ids)) == 2


async def test_busy_forever_shares_one_budget_with_http_faults(paid_sim: Simulator) -> None:
    sleeps = Sleeps()
    busy = momo_json({"resultCode": 10, "message": "System is under maintenance.", "responseTime": 1})
    script = [httpx.Response(503), busy, httpx.Response(502), busy, busy, busy]
    error, transport = await scripted(paid_sim, script, sleeps)
    assert isinstance(error, GatewayUnavailableError)
    assert "resultCode 10" in str(error)
    assert len(transport.requests) == 4  # not 4 per kind of fault
    assert len(sleeps) == 3


async def test_request_is_momo_07_byte_for_byte() -> None:
    v = vector("momo-07")
    sim = Simulator()
    sim.create_payment(order_id="ord_1001", amount=150000, currency="VND")
    transport = Scripted(sim, [])
    adapter = StatusClient(
        [msgspec.convert(sim.gateway_config(API + "/"), Account)], request_id=lambda: "recon-20251124-0001"
    )
    async with httpx.AsyncClient(transport=transport) as client:
        assert await adapter.fetch_status(query(), client) is not None
    [sent] = transport.requests
    assert sent.method == "POST"
    assert str(sent.url) == API + v["input"]["path"]
    assert sent.headers["content-type"] == v["input"]["headers"]["Content-Type"]
    assert sent.content == v["expected_request_body"].encode()
    assert sent.extensions["timeout"]["read"] == 10.0  # the account's timeout


# --- recorded answer shapes (reference/momo.md §6), through a MockTransport -------------


SUCCESS = {
    "partnerCode": PARTNER,
    "orderId": "ord_1001",
    "requestId": "recon-20251124-0001",
    "extraData": "",
    "amount": 150000,
    "transId": 4088878653,
    "payType": "qr",
    "resultCode": 0,
    "refundTrans": [],
    "message": "Thành công.",
    "responseTime": 1764003600000,
    "lastUpdated": 1764000063942,
    "paymentOption": "momo",
    "promotionInfo": None,
}
REFUND = {"orderId": "ord_1001-rf1", "amount": 50000, "resultCode": 0, "transId": 4088890001, "createdTime": 1}


async def recorded(response: httpx.Response) -> PaymentEvent | None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: response)) as client:
        return await make_client().fetch_status(query(), client)


@pytest.mark.parametrize(
    ("refunds", "status", "refunded"),
    [
        ([], PaymentStatus.SUCCEEDED, None),
        ([REFUND], PaymentStatus.PARTIALLY_REFUNDED, 50000),
        ([REFUND, REFUND | {"resultCode": 1080, "amount": 100000}], PaymentStatus.PARTIALLY_REFUNDED, 50000),
        ([REFUND, REFUND | {"amount": 100000}], PaymentStatus.REFUNDED, 150000),
        (None, PaymentStatus.SUCCEEDED, None),
    ],
)
async def test_recorded_success_with_refund_trans(refunds: Any, status: PaymentStatus, refunded: int | None) -> None:
    event = await recorded(momo_json(SUCCESS | {"refundTrans": refunds}))
    assert event is not None
    assert (event.status, event.refunded_amount, event.amount) == (status, refunded, 150000)
    assert event.provider_payment_id == "4088878653"
    assert event.reason == "momo:0 Thành công."


async def test_recorded_minimal_answer_without_optional_fields() -> None:
    minimal = {"partnerCode": PARTNER, "orderId": "ord_1001", "requestId": "r", "amount": 150000, "resultCode": 1000}
    event = await recorded(momo_json(minimal))
    assert event is not None
    assert (event.status, event.provider_payment_id) == (PaymentStatus.PENDING, None)


@pytest.mark.parametrize("http_status", [200, 400])
async def test_recorded_not_found_is_none(http_status: int) -> None:
    body = {"partnerCode": PARTNER, "orderId": "ord_1001", "requestId": "r", "resultCode": 42, "message": "x"}
    assert await recorded(momo_json(body, http_status)) is None


async def test_recorded_bad_format_with_sub_errors() -> None:
    body = {
        "responseTime": 1676024530704,
        "message": "Bad format request.",
        "resultCode": 20,
        "subErrors": [{"field": "signature", "message": "invalid: accessKey=*****&orderId=ord_1001"}],
    }
    with pytest.raises(GatewayRejectedError, match=r"resultCode 20 Bad format request\. \(signature: invalid"):
        await recorded(momo_json(body, 400))


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (momo_json(SUCCESS | {"orderId": "ord_9999"}), GatewayRejectedError),  # echo of another order
        (momo_json(SUCCESS | {"partnerCode": "MOMOOTHER"}), GatewayRejectedError),
        (momo_json(SUCCESS | {"resultCode": 21, "message": "Invalid amount."}), GatewayRejectedError),
        (httpx.Response(200, text="<html>maintenance</html>"), GatewayUnavailableError),
        (httpx.Response(403, text="<html>forbidden</html>"), GatewayRejectedError),
        (momo_json(SUCCESS | {"amount": 150000.0}), GatewayUnavailableError),
        (momo_json(SUCCESS | {"amount": -1}), GatewayRejectedError),
    ],
)
async def test_recorded_bad_answers(response: httpx.Response, error: type[Exception]) -> None:
    with pytest.raises(error):
        await recorded(response)
