"""The query API client against the simulator: every documented answer, retries, refusals."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import msgspec
import pytest

from payrecon_zalopay import Account, signing, status
from payrecon_zalopay.sim import Simulator
from providers.base import PaymentStatus
from providers.errors import GatewayRejectedError, GatewayUnavailableError
from providers.simkit import Faults
from zalopay_fixtures import FAST_RETRY, client_for, connected, query

S = PaymentStatus


def test_the_query_mac_is_app_id_app_trans_id_key1_under_key1() -> None:
    expected = hmac.new(b"key-one", b"2553|201226_2553_1|key-one", hashlib.sha256).hexdigest()
    assert signing.query_mac("key-one", 2553, "201226_2553_1") == expected
    assert status.query_body(
        msgspec.convert({"app_id": 2553, "key1": "key-one", "key2": "k"}, Account), "201226_2553_1"
    ) == {
        "app_id": "2553",
        "app_trans_id": "201226_2553_1",
        "mac": expected,
    }


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], S.PENDING),
        ([S.PROCESSING], S.PROCESSING),
        ([S.FAILED], S.FAILED),
        ([S.CANCELED], S.CANCELED),
        ([S.PROCESSING, S.SUCCEEDED], S.SUCCEEDED),
    ],
)
async def test_each_state_of_an_order_reads_back(steps: list[PaymentStatus], expected: PaymentStatus) -> None:
    sim = Simulator()
    payment = sim.create_payment(order_id="ord_1", amount=150_000, currency="VND")
    for step in steps:
        sim.set_status(payment.reference, step)
    async with client_for(sim) as http:
        event = await connected(sim).status.fetch_status(query(payment.reference), http)
    assert event is not None
    assert event.status is expected
    assert (event.amount, event.currency, event.account) == (150_000, "VND", "default")
    assert event.reference == payment.reference
    assert event.flag is None
    assert event.dedupe_key.startswith(f"zalopay:default:status:{payment.reference}:")
    paid = sim.get_payment(payment.reference)
    assert event.provider_payment_id == (str(paid.zp_trans_id) if expected is S.SUCCEEDED else None)


async def test_an_unknown_app_trans_id_is_none() -> None:
    sim = Simulator()
    async with client_for(sim) as http:
        assert await connected(sim).status.fetch_status(query("261201_never_created"), http) is None


async def test_a_paid_answer_of_another_amount_keeps_its_amount_for_the_ledger_to_flag() -> None:
    sim = Simulator()
    payment = sim.create_payment(order_id="ord_1", amount=150_000, currency="VND")
    sim.set_status(payment.reference, S.SUCCEEDED)
    async with client_for(sim) as http:
        event = await connected(sim).status.fetch_status(query(payment.reference, amount=99_000), http)
    assert event is not None
    assert (event.status, event.amount) == (S.SUCCEEDED, 150_000)


async def test_wrong_credentials_are_refused_with_a_hint() -> None:
    sim = Simulator()
    payment = sim.create_payment(order_id="ord_1", amount=150_000, currency="VND")
    async with client_for(sim) as http:
        with pytest.raises(GatewayRejectedError, match="key1"):
            await connected(sim, key1="not-the-key").status.fetch_status(query(payment.reference), http)
        with pytest.raises(GatewayRejectedError, match="key1"):
            await connected(sim, app_id=1).status.fetch_status(query(payment.reference), http)


async def test_unlisted_codes_leave_the_order_unchanged_and_say_so() -> None:
    sim = Simulator()
    payment = sim.create_payment(order_id="ord_1", amount=150_000, currency="VND")
    sim.set_result(payment.reference, 7, -7)
    async with client_for(sim) as http:
        event = await connected(sim).status.fetch_status(query(payment.reference), http)
    assert event is not None
    assert event.status is S.PENDING
    assert event.flag is not None
    assert "7/-7" in event.flag


async def test_busy_codes_and_http_faults_share_one_retry_budget() -> None:
    calls: list[httpx.Request] = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503)
        return httpx.Response(200, json={"return_code": -500, "return_message": "SYSTEM_ERROR"})

    sim = Simulator()
    async with httpx.AsyncClient(transport=httpx.MockTransport(busy), base_url="http://zalopay.sim") as http:
        with pytest.raises(GatewayUnavailableError, match="-500"):
            await connected(sim).status.fetch_status(query("261201_x"), http)
    assert len(calls) == FAST_RETRY.attempts
    assert all(c.headers["content-type"] == "application/x-www-form-urlencoded" for c in calls)


async def test_a_throttling_simulator_is_asked_again_and_answers() -> None:
    sim = Simulator(faults=Faults(api_error_rate=0.5, seed=3))
    payment = sim.create_payment(order_id="ord_1", amount=150_000, currency="VND")
    zalopay = connected(sim, retry=msgspec.structs.replace(FAST_RETRY, attempts=8))
    async with client_for(sim) as http:
        answers = [await zalopay.status.fetch_status(query(payment.reference), http) for _ in range(5)]
    assert all(a is not None and a.status is S.PENDING for a in answers)


def test_every_documented_code_has_a_meaning() -> None:
    documented = [(1, 1), (2, -54), (2, -329), (2, -322), (2, -101), (2, -401), (2, -402), (2, -429), (2, -500)]
    documented += [(2, -999), (3, 0), (-401, 0), (-402, 0), (-403, 0), (-405, 0), (406, 0), (-429, 0), (-500, 0)]
    for code in documented:
        assert status.meaning(*code) is not None, code
    assert status.meaning(2, -12345) == status.CODES[(2, None)]  # an unlisted reason of a failure is a failure
    assert status.meaning(99, 0) is None
