"""The MoMo adapter's IPN side: accounts, verification edge cases, the resultCode table, answers."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import msgspec
import pytest

from providers.base import GatewayAdapter, OutcomeKind, PaymentStatus
from providers.codes import CodeOutcome
from providers.errors import MalformedError, SignatureError, UnknownAccountError
from providers.momo import Account, Adapter
from providers.momo.wire import RESULT_CODES
from providers.registry import gateways

from .helpers import ACCESS, PARTNER, SECRET, account, adapter, request, signed_ipn, vector

PAYMENT_CODES = {code: m.status for code, m in RESULT_CODES.items() if m.outcome is CodeOutcome.PAYMENT}


def test_registered_and_satisfies_protocol() -> None:
    assert gateways()["momo"].adapter is Adapter
    assert isinstance(adapter(), GatewayAdapter)
    assert gateways()["momo"].account is Account


def test_account_from_toml_shapes() -> None:
    one = msgspec.convert({"partner_code": PARTNER, "access_key": ACCESS, "secret_key": SECRET}, Account)
    assert one.secret_keys == [SECRET]
    assert one.api_base == "https://test-payment.momo.vn"
    many = msgspec.convert({"partner_code": PARTNER, "access_key": ACCESS, "secret_keys": ["new", SECRET]}, Account)
    assert many.signing_secret == "new"
    for bad in (
        {"partner_code": PARTNER, "access_key": ACCESS},  # no secret
        {"partner_code": PARTNER, "access_key": ACCESS, "secret_key": "a", "secret_keys": ["b"]},
        {"partner_code": PARTNER, "access_key": ACCESS, "secret_keys": [""]},
        {"partner_code": PARTNER, "access_key": ACCESS, "secret_key": "a", "bogus": 1},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, Account)


def test_duplicate_accounts_are_a_config_error() -> None:
    with pytest.raises(ValueError, match="configured twice"):
        Adapter([account(), account(account="second")])
    with pytest.raises(ValueError, match="configured twice"):
        Adapter([account(), account(partner_code="OTHER")])


def test_rotation_any_listed_secret_verifies() -> None:
    rotated = adapter(account(secret_keys=["PRnewSecret", SECRET]))
    rotated.verify(request(signed_ipn()))
    rotated.verify(request(signed_ipn(secret="PRnewSecret")))
    with pytest.raises(SignatureError, match="none of 2 secret key"):
        rotated.verify(request(signed_ipn(secret="PRretiredSecret")))


def test_wrong_access_key_fails_like_a_wrong_secret() -> None:
    with pytest.raises(SignatureError):
        adapter().verify(request(signed_ipn(access_key="PRotherAccessKey")))


def test_upper_case_hex_signature_is_accepted() -> None:
    body = signed_ipn()
    body["signature"] = body["signature"].upper()
    adapter().verify(request(body))


def test_tampering_any_signed_field_breaks_the_signature() -> None:
    body = signed_ipn()
    for field, value in [
        ("orderId", "ord_9"),
        ("resultCode", 1006),
        ("transId", 1),
        ("message", "x"),
        ("extraData", "e"),
    ]:
        with pytest.raises(SignatureError):
            adapter().verify(request(body | {field: value}))


def test_extra_data_missing_or_null_counts_as_empty() -> None:
    body = signed_ipn()
    assert body["extraData"] == ""
    adapter().verify(request({k: v for k, v in body.items() if k != "extraData"}))
    adapter().verify(request(body | {"extraData": None}))


def test_unknown_partner_code() -> None:
    with pytest.raises(UnknownAccountError, match="MOMOSOMEONEELSE"):
        adapter().verify(request(signed_ipn(partnerCode="MOMOSOMEONEELSE")))


def test_url_account_must_hold_the_partner_code() -> None:
    two = adapter(account(), account(account="shop2", partner_code="MOMOSHOP2", secret_keys=["s2"]))
    two.verify(request(signed_ipn(), account="default"))
    two.verify(request(signed_ipn(secret="s2", partnerCode="MOMOSHOP2"), account="shop2"))
    [event] = two.parse(request(signed_ipn(secret="s2", partnerCode="MOMOSHOP2")))
    assert event.account == "shop2"
    with pytest.raises(UnknownAccountError, match="partner_code is 'MOMOSHOP2'"):
        two.verify(request(signed_ipn(), account="shop2"))
    with pytest.raises(UnknownAccountError, match="no \\[\\[momo\\]\\] account is named 'nope'"):
        two.verify(request(signed_ipn(), account="nope"))


@pytest.mark.parametrize("amount", [b"150000.0", b"1.5e5", b'"150000"', b"true", b"null"])
def test_non_integer_amount_is_malformed(amount: bytes) -> None:
    body = vector("momo-01")["input"]["body"].encode().replace(b'"amount":150000', b'"amount":' + amount)
    with pytest.raises(MalformedError, match="integer"):
        adapter().verify(request(body))


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"{}", b'{"partnerCode":"MOMOPAYRECON2026"}', b"\xff\xfe"])
def test_unreadable_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedError):
        adapter().verify(request(body))


@pytest.mark.parametrize(("code", "status"), sorted(PAYMENT_CODES.items()))
def test_every_payment_code_maps_through_the_table(code: int, status: PaymentStatus) -> None:
    a = adapter()
    req = request(signed_ipn(resultCode=code, message=f"text {code}"))
    a.verify(req)
    [event] = a.parse(req)
    assert event.status == status
    assert event.dedupe_key == f"momo:default:4088878653:{code}"
    assert event.reason == f"momo:{code} text {code}"
    assert event.flag == ("unknown_error" if code == 99 else None)


def test_table_is_complete_and_mapped_as_the_reference_says() -> None:
    s = PaymentStatus
    expected = {0: s.SUCCEEDED, 9000: s.AUTHORIZED, 1000: s.PENDING, 8000: s.PENDING, 7000: s.PROCESSING}
    expected |= {7002: s.PROCESSING} | dict.fromkeys((1003, 1005, 1006, 1017), s.CANCELED)
    expected |= dict.fromkeys((1001, 1002, 1004, 1007, 1026, 4001, 4002, 4100, 98, 99), s.FAILED)
    assert expected == PAYMENT_CODES
    others = {1080, 1081, 1088, 2019, 10, 11, 12, 13, 20, 21, 22, 40, 41, 42, 43, 45, 47}
    assert set(RESULT_CODES) - set(PAYMENT_CODES) == others


@pytest.mark.parametrize("code", sorted(c for c, m in RESULT_CODES.items() if m.outcome is not CodeOutcome.PAYMENT))
def test_refund_results_and_request_errors_change_nothing(code: int) -> None:
    a = adapter()
    req = request(signed_ipn(resultCode=code))
    a.verify(req)
    assert a.parse(req) == []


def test_unlisted_code_leaves_the_order_alone_and_flags_ops() -> None:
    a = adapter()
    req = request(signed_ipn(resultCode=1234, message="New thing."))
    a.verify(req)
    [event] = a.parse(req)
    assert event.status is PaymentStatus.PENDING  # layer 0: recorded, never moves an order
    assert event.flag is not None
    assert "1234" in event.flag
    assert event.reason == "momo:1234 New thing."


def test_trans_id_zero_has_no_payment_id_and_a_per_order_dedupe_key() -> None:
    a = adapter()
    events = []
    for order in ("ord_a", "ord_b"):
        req = request(signed_ipn(transId=0, resultCode=1005, orderId=order))
        a.verify(req)
        events += a.parse(req)
    assert [e.provider_payment_id for e in events] == [None, None]
    assert events[0].dedupe_key == "momo:default:MOMOPAYRECON2026:ord_a:1005"
    assert events[0].dedupe_key != events[1].dedupe_key


def test_same_notice_twice_has_the_same_dedupe_key() -> None:
    a = adapter()
    first, second = (a.parse(request(signed_ipn()))[0] for _ in range(2))
    assert first.dedupe_key == second.dedupe_key


@pytest.mark.parametrize(
    ("overrides", "match"), [({"amount": -5}, "non-negative"), ({"responseTime": 2**62}, "responseTime")]
)
def test_signed_but_impossible_values_are_malformed(overrides: dict[str, int], match: str) -> None:
    a = adapter()
    req = request(signed_ipn(**overrides))
    a.verify(req)
    with pytest.raises(MalformedError, match=match):
        a.parse(req)


def test_occurred_at_keeps_milliseconds_in_utc() -> None:
    [event] = adapter().parse(request(signed_ipn(responseTime=1764000063942)))
    assert event.occurred_at == datetime(2025, 11, 24, 16, 1, 3, 942000, tzinfo=UTC)


def test_answers() -> None:
    a = adapter()
    for outcomes in (
        [],
        [OutcomeKind.APPLIED],
        [OutcomeKind.DUPLICATE],
        [OutcomeKind.AMOUNT_MISMATCH, OutcomeKind.UNKNOWN_ORDER],
    ):
        ack = a.acknowledge(outcomes)
        assert (ack.status_code, ack.body) == (204, b"")
    assert a.reject(SignatureError("x")).status_code == 400
    assert msgspec.json.decode(a.reject(SignatureError("x")).body) == {"error": "invalid_signature"}
    assert msgspec.json.decode(a.reject(UnknownAccountError("x")).body) == {"error": "unknown_partner"}
    assert msgspec.json.decode(a.reject(MalformedError("x")).body) == {"error": "malformed"}
    assert a.reject(MalformedError("x")).content_type == "application/json"
    assert a.retry_later().status_code == 503


def test_adapter_imports_without_litestar_service_or_asyncpg() -> None:
    code = (
        "import sys\n"
        "for name in ('litestar', 'service', 'reconciler', 'asyncpg'): sys.modules[name] = None\n"
        "import providers.momo\n"
        "assert 'providers.momo.sim.simulator' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603 - our own interpreter
