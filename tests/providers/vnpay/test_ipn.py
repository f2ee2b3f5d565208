"""IPN verification edge cases, the status rules, and the answers VNPay gets."""

from __future__ import annotations

from urllib.parse import quote_plus

import msgspec
import pytest

from providers.base import OutcomeKind, PaymentStatus
from providers.errors import InvalidAmountError, MalformedError, ReplayError, SignatureError, UnknownAccountError
from providers.vnpay.adapter import UnknownTerminalError
from providers.vnpay.signing import hmac_sha512, query_signing_string, signed_fields
from providers.vnpay.sim.signing import signed_query_string
from providers.vnpay.sim.simulator import TEST_HASH_SECRET, TEST_TMN_CODE

from .helpers import account, adapter, ipn, ipn_params, signed_ipn

P = PaymentStatus


def _with_encoding(params: dict[str, str], encode: object, *, skip_empty: bool = False) -> str:
    """A query string signed by another VNPay sample's encoder; the URL itself stays well-formed."""
    material = query_signing_string(params, encode, skip_empty=skip_empty)  # type: ignore[arg-type]
    url = "&".join(f"{k}={quote_plus(v)}" for k, v in sorted(params.items()))
    return f"{url}&vnp_SecureHash={hmac_sha512(TEST_HASH_SECRET, material)}"


# (ResponseCode, TransactionStatus) → (status, flag) — reference/vnpay.md §4.
IPN_CASES = [
    ("00", "00", P.SUCCEEDED, None),
    ("00", "01", P.PENDING, None),
    ("00", "02", P.FAILED, None),
    ("07", "07", P.PROCESSING, "fraud_review"),
    ("07", "00", P.PROCESSING, "fraud_review"),
    ("00", "04", P.FAILED, "reversal"),
    ("99", "04", P.FAILED, "reversal"),
    ("09", "02", P.FAILED, None),
    ("10", "02", P.FAILED, None),
    ("11", "02", P.CANCELED, None),
    ("12", "02", P.FAILED, None),
    ("13", "02", P.FAILED, None),
    ("24", "02", P.CANCELED, None),
    ("51", "02", P.FAILED, None),
    ("65", "02", P.FAILED, None),
    ("75", "02", P.FAILED, None),
    ("79", "02", P.FAILED, None),
    ("99", "02", P.FAILED, None),
    ("01", "02", P.FAILED, None),
    ("08", "02", P.FAILED, None),
    ("42", "02", P.FAILED, "unlisted_code:42"),
    ("00", "08", P.CANCELED, None),
    ("00", "11", P.CANCELED, None),
    ("00", "10", P.SUCCEEDED, None),
    ("00", "20", P.SUCCEEDED, None),
    ("00", "09", P.SUCCEEDED, "refund_rejected"),
    ("00", "77", P.PENDING, "unlisted_transaction_status:77"),
    ("24", "01", P.CANCELED, None),
]


@pytest.mark.parametrize(("rc", "ts", "status", "flag"), IPN_CASES)
def test_status_rules(rc: str, ts: str, status: PaymentStatus, flag: str | None) -> None:
    request = signed_ipn(vnp_ResponseCode=rc, vnp_TransactionStatus=ts)
    subject = adapter()
    subject.verify(request)
    [event] = subject.parse(request)
    assert (event.status, event.flag) == (status, flag)
    assert event.reason is not None
    assert event.reason.startswith(f"vnpay:{rc}")
    assert event.dedupe_key == f"vnpay:default:ord1001:14226112:{rc}:{ts}"


def test_reason_carries_the_transaction_status_when_it_matters() -> None:
    [event] = adapter().parse(signed_ipn(vnp_ResponseCode="00", vnp_TransactionStatus="04"))
    assert event.reason == "vnpay:00; transaction status 04 reversed"
    [event] = adapter().parse(signed_ipn(vnp_ResponseCode="11", vnp_TransactionStatus="02"))
    assert event.reason == "vnpay:11 payment window expired"


def test_transaction_no_zero_is_no_payment_id_and_paydate_is_optional() -> None:
    params = ipn_params(vnp_TransactionNo="0", vnp_ResponseCode="24", vnp_TransactionStatus="02")
    del params["vnp_PayDate"], params["vnp_BankTranNo"]
    request = ipn(signed_query_string(params, TEST_HASH_SECRET))
    adapter().verify(request)
    [event] = adapter().parse(request)
    assert event.provider_payment_id is None
    assert event.occurred_at is None


@pytest.mark.parametrize("amount", ["15000050", "-100", "1e5", "", "１００"])
def test_bad_amounts_are_malformed(amount: str) -> None:
    request = signed_ipn(vnp_Amount=amount)
    adapter().verify(request)  # correctly signed…
    with pytest.raises(MalformedError, match="vnp_Amount"):
        adapter().parse(request)  # …but not VND × 100


@pytest.mark.parametrize("missing", ["vnp_ResponseCode", "vnp_TransactionStatus", "vnp_TxnRef", "vnp_Amount"])
def test_missing_fields_are_malformed(missing: str) -> None:
    params = ipn_params()
    del params[missing]
    request = ipn(signed_query_string(params, TEST_HASH_SECRET))
    adapter().verify(request)
    with pytest.raises(MalformedError, match=missing):
        adapter().parse(request)


def test_bad_pay_date_is_malformed() -> None:
    with pytest.raises(MalformedError, match="vnp_PayDate"):
        adapter().parse(signed_ipn(vnp_PayDate="2025-11-24"))


def test_rotation_any_secret_verifies() -> None:
    request = signed_ipn(secret="OLDSECRET")
    adapter(account(hash_secrets=["NEWSECRET", "OLDSECRET"])).verify(request)
    with pytest.raises(SignatureError, match="none of 1 hash secret"):
        adapter(account(hash_secrets=["NEWSECRET"])).verify(request)


def test_missing_or_empty_hash_is_a_signature_error() -> None:
    query = query_signing_string(ipn_params())
    with pytest.raises(SignatureError, match="no vnp_SecureHash"):
        adapter().verify(ipn(query))
    with pytest.raises(SignatureError):
        adapter().verify(ipn(query + "&vnp_SecureHash="))


def test_unknown_terminal_and_disagreeing_url_account() -> None:
    with pytest.raises(UnknownAccountError, match="ZZZZ0000"):
        adapter().verify(signed_ipn(vnp_TmnCode="ZZZZ0000"))
    request = signed_ipn()
    with pytest.raises(UnknownAccountError, match="'shop2'"):
        adapter().verify(ipn(request.query_string, url_account="shop2"))
    with pytest.raises(UnknownAccountError, match="'shop2'"):
        adapter().verify(ipn("account=shop2&" + request.query_string))
    adapter().verify(ipn(request.query_string, url_account="default"))


def test_two_terminals_each_verified_with_its_own_secret() -> None:
    subject = adapter(
        account(account="default"),
        account(account="shop2", tmn_code="SHOP0002", hash_secrets=["SHOP2SECRET"]),
    )
    request = signed_ipn(secret="SHOP2SECRET", vnp_TmnCode="SHOP0002")
    subject.verify(ipn(request.query_string, url_account="shop2"))
    [event] = subject.parse(request)
    assert event.account == "shop2"
    with pytest.raises(SignatureError):
        subject.verify(signed_ipn(secret="SHOP2SECRET"))  # TmnCode of default, wrong secret


def test_duplicate_accounts_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="twice"):
        adapter(account(), account(account="other"))


def test_repeated_keys_and_non_utf8_are_malformed() -> None:
    query = signed_ipn().query_string
    with pytest.raises(MalformedError, match="repeats"):
        adapter().verify(ipn(query + "&vnp_Amount=1"))
    with pytest.raises(MalformedError, match="UTF-8"):
        adapter().verify(ipn(query.replace("Thanh+toan", "Thanh%FFtoan")))
    with pytest.raises(MalformedError, match="UTF-8"):
        adapter().verify(ipn(query + "&x=\udcff"))
    with pytest.raises(MalformedError, match="vnp_"):
        adapter().verify(ipn(""))


def test_non_ascii_values_are_signed_as_utf8_percent_escapes() -> None:
    request = signed_ipn(vnp_OrderInfo="Thanh toán đơn hàng")
    assert "Thanh+to%C3%A1n" in request.query_string
    adapter().verify(request)


@pytest.mark.parametrize("order_info", ["Don hang ~1", "Don (hang) *1*", "Don hang 'A'!"])
@pytest.mark.parametrize("encoder", ["php", "java", "dotnet", "node"])
def test_disputed_characters_verify_under_every_sample_encoding(order_info: str, encoder: str) -> None:
    from providers.vnpay import signing

    encode = getattr(signing, f"_{encoder}")
    params = ipn_params(vnp_OrderInfo=order_info)
    adapter().verify(ipn(_with_encoding(params, encode)))
    # …but only the string of some sample encoding: a value changed after signing still fails.
    forged = _with_encoding(params, encode).replace("Don", "Dan", 1)
    with pytest.raises(SignatureError):
        adapter().verify(ipn(forged))


def test_empty_parameter_verifies_whether_the_signer_kept_or_skipped_it() -> None:
    from providers.vnpay import signing

    params = ipn_params(vnp_BankTranNo="")
    kept = _with_encoding(params, signing._python)
    skipped = _with_encoding(params, signing._python, skip_empty=True)
    assert kept != skipped
    adapter().verify(ipn(kept))
    adapter().verify(ipn(skipped))
    [event] = adapter().parse(ipn(skipped))
    assert event.payload["vnp_BankTranNo"] == ""


def test_form_post_body_is_accepted() -> None:
    query = signed_ipn().query_string
    request = ipn("", method="POST", body=query.encode())
    adapter().verify(request)
    [event] = adapter().parse(request)
    assert event.status is P.SUCCEEDED
    with pytest.raises(MalformedError, match="UTF-8"):
        adapter().verify(ipn("", method="POST", body=b"vnp_Amount=\xff"))


def test_only_vnp_fields_are_signed() -> None:
    params = {**ipn_params(), "account": "default", "utm_source": "x", "vnp_SecureHashType": "SHA512"}
    assert signed_fields(params) == ipn_params()


ACKS = [
    ([OutcomeKind.APPLIED], "00", "Confirm Success"),
    ([OutcomeKind.IGNORED], "00", "Confirm Success"),
    ([OutcomeKind.ANOMALY], "00", "Confirm Success"),
    ([], "00", "Confirm Success"),
    ([OutcomeKind.DUPLICATE], "02", "Order already confirmed"),
    ([OutcomeKind.STALE], "02", "Order already confirmed"),
    ([OutcomeKind.UNKNOWN_ORDER], "01", "Order not found"),
    ([OutcomeKind.AMOUNT_MISMATCH], "04", "Invalid amount"),
    ([OutcomeKind.DUPLICATE, OutcomeKind.APPLIED], "00", "Confirm Success"),
    ([OutcomeKind.APPLIED, OutcomeKind.AMOUNT_MISMATCH], "04", "Invalid amount"),
]


@pytest.mark.parametrize(("outcomes", "code", "message"), ACKS)
def test_acknowledge(outcomes: list[OutcomeKind], code: str, message: str) -> None:
    ack = adapter().acknowledge(outcomes)
    assert (ack.status_code, ack.content_type) == (200, "application/json")
    assert ack.body == f'{{"RspCode":"{code}","Message":"{message}"}}'.encode()


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (SignatureError("x"), "97", "Invalid signature"),
        (MalformedError("x"), "99", "Invalid request"),
        # VNPay's sample checks the checksum first, with the merchant's secret: an unknown
        # terminal's cannot match (issue 10.6); an amount that is not VND × 100 is no order's.
        (UnknownTerminalError("x"), "97", "Invalid signature"),
        (UnknownAccountError("x"), "99", "Invalid request"),  # our terminal, on another account's URL
        (InvalidAmountError("x"), "04", "Invalid amount"),
        (ReplayError("x"), "99", "Invalid request"),
    ],
)
def test_reject_and_retry_later(error: Exception, code: str, message: str) -> None:
    subject = adapter()
    ack = subject.reject(error)
    assert ack.status_code == 200
    assert msgspec.json.decode(ack.body) == {"RspCode": code, "Message": message}
    later = subject.retry_later()
    assert later.status_code == 200
    assert msgspec.json.decode(later.body) == {"RspCode": "99", "Message": "Unknow error"}


def test_account_accepts_design_md_single_secret_and_refuses_both() -> None:
    from providers.vnpay import Account

    single = msgspec.convert({"tmn_code": TEST_TMN_CODE, "hash_secret": "S1"}, Account)
    assert single.hash_secrets == ["S1"]
    assert single.api_base == "https://sandbox.vnpayment.vn"
    with pytest.raises(msgspec.ValidationError, match="not both"):
        msgspec.convert({"tmn_code": "T", "hash_secret": "a", "hash_secrets": ["b"]}, Account)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"tmn_code": "T", "hash_secrets": ["a"], "bogus": 1}, Account)
