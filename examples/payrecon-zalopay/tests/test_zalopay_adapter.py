"""The ZaloPay adapter against ZaloPay's own documented callback and the simulator's callbacks."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrecon_zalopay import Account, Adapter
from payrecon_zalopay.sim import Simulator
from payrecon_zalopay.sim.simulator import WRONG_KEY2
from providers.base import OutcomeKind, PaymentStatus
from providers.errors import MalformedError, SignatureError, UnknownAccountError
from zalopay_fixtures import connected, webhook

# ZaloPay's documented callback sample (docs.zalopay.vn/docs/specs/callback-api, NOTES.md §2),
# signed with the public sandbox key2 of app 2553 from ZaloPay's own samples.
DOC_KEY2 = "kLtgPl8HHhfvMuDHPwKfgfsY4Ydm9eIz"
DOC_CALLBACK = (
    rb'{"data":"{\"app_id\":2553,\"app_trans_id\":\"200904_2553_1598435687208\",\"app_time\":1599189392817,'
    rb"\"app_user\":\"demo\",\"amount\":10000,\"embed_data\":\"{\\\"merchantinfo\\\":\\\"embeddata123\\\","
    rb"\\\"promotioninfo\\\":\\\"\\\"}\",\"item\":\"[{\\\"itemid\\\":\\\"knb\\\","
    rb"\\\"itemname\\\":\\\"kim nguyen bao\\\","
    rb"\\\"itemprice\\\":198400,\\\"itemquantity\\\":1}]\",\"zp_trans_id\":200904000000389,\"server_time\":1599189413498,"
    rb"\"channel\":38,\"merchant_user_id\":\"7ZMSl3nEg5sOUJzOLSoUFT8xKNQVaLOLXHB--8Eytqc\",\"user_fee_amount\":0,"
    rb'\"discount_amount\":0}","mac":"d8d33baf449b31d7f9b94fa50d7c942c08cd4d83f28fa185557da21acb104f67","type":1}'
)


def doc_adapter(**table: object) -> Adapter:
    fields = {"app_id": 2553, "key1": "PcY4iZIKFCIdgZvA6ueMcMHHUbRLYjPL", "key2s": [DOC_KEY2], **table}
    return Adapter([msgspec.convert(fields, Account)])


def test_zalopays_documented_callback_verifies_and_parses() -> None:
    adapter = doc_adapter()
    delivery = webhook(DOC_CALLBACK)
    adapter.verify(delivery)
    [event] = adapter.parse(delivery)
    assert event.provider == "zalopay"
    assert event.account == "default"
    assert event.reference == "200904_2553_1598435687208"
    assert event.status is PaymentStatus.SUCCEEDED
    assert (event.amount, event.currency) == (10_000, "VND")
    assert event.provider_payment_id == "200904000000389"
    assert event.occurred_at == datetime(2020, 9, 4, 3, 16, 53, 498000, tzinfo=UTC)
    assert event.dedupe_key == "zalopay:default:200904000000389"
    assert event.payload["data"]["merchant_user_id"] == "7ZMSl3nEg5sOUJzOLSoUFT8xKNQVaLOLXHB--8Eytqc"


def test_a_callback_mac_is_hmac_sha256_of_the_data_string_under_key2() -> None:
    # A third implementation, from the documentation's formula, agrees with the documented mac.
    body = msgspec.json.decode(DOC_CALLBACK)
    assert hmac.new(DOC_KEY2.encode(), body["data"].encode(), hashlib.sha256).hexdigest() == body["mac"]


def test_a_tampered_callback_or_another_key_is_refused() -> None:
    tampered = DOC_CALLBACK.replace(b'\\"amount\\":10000', b'\\"amount\\":10001')
    assert tampered != DOC_CALLBACK
    with pytest.raises(SignatureError, match="key2"):
        doc_adapter().verify(webhook(tampered))
    with pytest.raises(SignatureError):
        doc_adapter(key2s=["PcY4iZIKFCIdgZvA6ueMcMHHUbRLYjPL"]).verify(webhook(DOC_CALLBACK))  # key1 is not key2


def test_any_listed_key2_verifies_during_rotation() -> None:
    doc_adapter(key2s=["a-new-key2-not-yet-used", DOC_KEY2]).verify(webhook(DOC_CALLBACK))


def test_accounts_are_found_by_app_id_or_by_the_url_and_must_agree() -> None:
    other = {"account": "second", "app_id": 99, "key1": "k1", "key2s": ["k2"]}
    adapter = Adapter([msgspec.convert(t, Account) for t in (other, {"app_id": 2553, "key1": "x", "key2": DOC_KEY2})])
    adapter.verify(webhook(DOC_CALLBACK))
    adapter.verify(webhook(DOC_CALLBACK, account="default"))
    with pytest.raises(UnknownAccountError, match="app_id is 99"):
        adapter.verify(webhook(DOC_CALLBACK, account="second"))
    with pytest.raises(UnknownAccountError, match="no \\[\\[zalopay\\]\\] account 'nope'"):
        adapter.verify(webhook(DOC_CALLBACK, account="nope"))
    with pytest.raises(UnknownAccountError, match="app_id 2553"):
        Adapter([msgspec.convert(other, Account)]).verify(webhook(DOC_CALLBACK))


def test_account_settings_are_checked() -> None:
    base = {"app_id": 1, "key1": "k1"}
    for bad in (
        {**base},
        {**base, "key2": "a", "key2s": ["b"]},
        {**base, "key2s": [""]},
        {**base, "key2": "a", "key1": ""},
    ):
        with pytest.raises((ValueError, msgspec.ValidationError)):
            msgspec.convert(bad, Account)
    assert msgspec.convert({**base, "key2": "a"}, Account).key2s == ["a"]


async def test_simulator_callbacks_verify_and_a_wrong_key_does_not() -> None:
    sim = Simulator(webhook_url="http://payrecon.test/webhooks/zalopay")
    adapter = connected(sim).adapter
    payment = sim.create_payment(order_id="ord_1", amount=150_000, currency="VND")
    sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)
    paid = sim.get_payment(payment.reference)
    good = webhook(sim.callback_body(paid))
    adapter.verify(good)
    [event] = adapter.parse(good)
    assert event.reference == payment.reference
    assert event.provider_payment_id == str(paid.zp_trans_id)
    with pytest.raises(SignatureError):
        adapter.verify(webhook(sim.callback_body(paid, key=WRONG_KEY2)))
    await sim.dispatcher.aclose()


def test_agreement_callbacks_are_acknowledged_and_ignored() -> None:
    data = '{"app_id":2553,"binding_id":"b1","status":1}'
    mac = hmac.new(DOC_KEY2.encode(), data.encode(), hashlib.sha256).hexdigest()
    delivery = webhook(msgspec.json.encode({"data": data, "mac": mac, "type": 2}))
    doc_adapter().verify(delivery)
    assert doc_adapter().parse(delivery) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"data":"not json","mac":"00","type":1}',
        b'{"data":"{\\"app_id\\":\\"2553\\"}","mac":"00","type":1}',
        b'{"data":"[1]","mac":"00"}',
        b'{"mac":"00","type":1}',
        b"\xff\xfe",
    ],
)
def test_unreadable_callbacks_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedError):
        doc_adapter().verify(webhook(body))


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_no_input_raises_anything_but_a_declared_error(body: bytes) -> None:
    adapter = doc_adapter()
    try:
        adapter.verify(webhook(body))
        adapter.parse(webhook(body))
    except (SignatureError, MalformedError):
        pass


def test_answers_are_zalopays_return_codes() -> None:
    adapter = doc_adapter()

    def read(ack: object) -> tuple[int, int]:
        assert ack.content_type == "application/json"  # type: ignore[attr-defined]
        return ack.status_code, msgspec.json.decode(ack.body)["return_code"]  # type: ignore[attr-defined]

    assert read(adapter.acknowledge([OutcomeKind.APPLIED])) == (200, 1)
    assert read(adapter.acknowledge([])) == (200, 1)
    assert read(adapter.acknowledge([OutcomeKind.UNKNOWN_ORDER])) == (200, 1)  # quarantined: stored, applied later
    assert read(adapter.acknowledge([OutcomeKind.AMOUNT_MISMATCH])) == (200, 1)  # an anomaly for ops, not a retry
    assert read(adapter.acknowledge([OutcomeKind.DUPLICATE])) == (200, 2)
    assert read(adapter.reject(SignatureError("x"))) == (400, -1)
    assert read(adapter.reject(MalformedError("x"))) == (400, -1)
    assert read(adapter.retry_later()) == (503, 0)
