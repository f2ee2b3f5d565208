"""Stripe-Signature verification beyond the vectors: tolerance, rotation, raw bytes, accounts."""

from __future__ import annotations

import json
from datetime import datetime

import msgspec
import pytest

from providers.errors import MalformedError, ReplayError, SignatureError, UnknownAccountError
from providers.stripe import Account
from providers.stripe.signing import compute_signature
from providers.stripe.sim.signing import sign_header
from providers.stripe.sim.simulator import TEST_WEBHOOK_SECRET

from ._support import NOW, OLD_SECRET, account, adapter, event, intent, request, signed

NEW_SECRET = "whsec_payreconNEW0000000000000000000000000000000"
PAYLOAD = event("payment_intent.succeeded", intent(status="succeeded", amount_received=2599))


def test_signed_delivery_verifies() -> None:
    adapter().verify(signed(PAYLOAD))


@pytest.mark.parametrize(("age", "ok"), [(0, True), (299, True), (300, True), (301, False), (86_400, False)])
def test_replay_window_is_age_only_with_default_300s(age: int, ok: bool) -> None:
    req = signed(PAYLOAD, t=NOW - age, received=NOW)
    if ok:
        adapter().verify(req)
    else:
        with pytest.raises(ReplayError, match="300 s tolerance"):
            adapter().verify(req)


def test_tolerance_is_per_account() -> None:
    strict = adapter(account(tolerance_s=60))
    strict.verify(signed(PAYLOAD, t=NOW - 60))
    with pytest.raises(ReplayError):
        strict.verify(signed(PAYLOAD, t=NOW - 61))


def test_signature_failure_wins_over_age() -> None:
    """Like the libraries: an old delivery with a bad signature is a signature problem."""
    req = signed(PAYLOAD, secrets=["whsec_other"], t=NOW - 10_000)
    with pytest.raises(SignatureError):
        adapter().verify(req)


def test_reserialized_body_is_rejected() -> None:
    """A JSON parser in front of us (compact re-encoding) breaks the signature over raw bytes."""
    original = signed(PAYLOAD)
    compact = json.dumps(json.loads(original.body), separators=(",", ":")).encode()
    assert json.loads(compact) == json.loads(original.body)
    tampered = request(compact, {"Stripe-Signature": original.headers["stripe-signature"]})
    with pytest.raises(SignatureError, match="raw body"):
        adapter().verify(tampered)


def test_trailing_newline_is_a_different_body() -> None:
    original = signed(PAYLOAD)
    with pytest.raises(SignatureError):
        adapter().verify(request(original.body + b"\n", {"Stripe-Signature": original.headers["stripe-signature"]}))


def test_rotation_two_secrets_two_v1() -> None:
    rotating = adapter(account(webhook_secrets=[NEW_SECRET, OLD_SECRET]))
    rotating.verify(signed(PAYLOAD, secrets=[NEW_SECRET, OLD_SECRET]))  # Stripe during the overlap
    rotating.verify(signed(PAYLOAD, secrets=[OLD_SECRET]))  # a delivery signed before the roll
    rotating.verify(signed(PAYLOAD, secrets=[NEW_SECRET]))  # after the old one expired
    only_new = adapter(account(webhook_secrets=[NEW_SECRET]))
    only_new.verify(signed(PAYLOAD, secrets=[NEW_SECRET, OLD_SECRET]))  # we rolled first: second v1 ignored
    with pytest.raises(SignatureError, match="any of 2 secret"):
        rotating.verify(signed(PAYLOAD, secrets=[TEST_WEBHOOK_SECRET]))


def test_v0_is_ignored_even_when_correct() -> None:
    body = json.dumps(PAYLOAD).encode()
    header = f"t={NOW},v0={compute_signature(TEST_WEBHOOK_SECRET, NOW, body)}"
    with pytest.raises(SignatureError, match="no v1 signature"):
        adapter().verify(request(body, {"Stripe-Signature": header}))


def test_decoy_v0_and_unknown_schemes_do_not_hurt() -> None:
    body = json.dumps(PAYLOAD).encode()
    header = sign_header(body, [TEST_WEBHOOK_SECRET], NOW, v0_secret="whsec_x") + ",v9=zz,junk"
    adapter().verify(request(body, {"Stripe-Signature": header}))


def test_first_t_wins() -> None:
    body = json.dumps(PAYLOAD).encode()
    header = sign_header(body, [TEST_WEBHOOK_SECRET], NOW) + f",t={NOW - 5000}"
    adapter().verify(request(body, {"Stripe-Signature": header}))


@pytest.mark.parametrize(
    ("header", "error", "match"),
    [
        (None, MalformedError, "no Stripe-Signature header"),
        ("", MalformedError, "no Stripe-Signature header"),
        ("v1=abc", MalformedError, "no t="),
        ("t=abc,v1=abc", MalformedError, "not a unix timestamp"),
        ("t=-5,v1=abc", MalformedError, "not a unix timestamp"),
        ("t=١٢٣,v1=abc", MalformedError, "not a unix timestamp"),
        (f"t={NOW}", SignatureError, "no v1 signature"),
        (f"t={NOW},v1=ééé", SignatureError, "no v1 signature matched"),
        (f"t={NOW},v1=" + "0" * 64, SignatureError, "is PAYRECON_GATEWAYS' webhook_secrets current"),
    ],
)
def test_bad_headers(header: str | None, error: type[Exception], match: str) -> None:
    headers = {} if header is None else {"Stripe-Signature": header}
    with pytest.raises(error, match=match):
        adapter().verify(request(json.dumps(PAYLOAD).encode(), headers))


def test_account_comes_from_the_url_and_none_means_default() -> None:
    shop_b = account(account="shop_b", webhook_secrets=[NEW_SECRET])
    gateway = adapter(account(), shop_b)
    gateway.verify(signed(PAYLOAD))  # /webhooks/stripe → default
    gateway.verify(signed(PAYLOAD, secrets=[NEW_SECRET], account_name="shop_b"))
    with pytest.raises(SignatureError):
        gateway.verify(signed(PAYLOAD, account_name="shop_b"))  # default's secret is not shop_b's
    assert [e.account for e in gateway.parse(signed(PAYLOAD, account_name="shop_b"))] == ["shop_b"]
    with pytest.raises(UnknownAccountError, match="no \\[\\[stripe\\]\\] account 'shop_c'"):
        gateway.verify(signed(PAYLOAD, account_name="shop_c"))
    with pytest.raises(UnknownAccountError):
        adapter(shop_b).verify(signed(PAYLOAD))  # no default account configured


def test_naive_received_at_is_taken_as_utc() -> None:
    naive = datetime(2025, 11, 24, 16, 1)  # noqa: DTZ001 - the point of the test
    adapter().verify(msgspec.structs.replace(signed(PAYLOAD, t=NOW - 300), received_at=naive))  # == NOW, UTC
    with pytest.raises(ReplayError):
        adapter().verify(msgspec.structs.replace(signed(PAYLOAD, t=NOW - 301), received_at=naive))


def test_duplicate_account_names_are_refused() -> None:
    with pytest.raises(ValueError, match="configured twice"):
        adapter(account(), account())


def test_tolerance_zero_is_refused_at_config_load() -> None:
    raw = {"api_key": "sk", "webhook_secrets": ["whsec_a"], "tolerance_s": 0}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, Account)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**raw, "tolerance_s": 300, "webhook_secrets": []}, Account)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**raw, "tolerance_s": 300, "webhook_secret": "x"}, Account)
    assert msgspec.convert({**raw, "tolerance_s": 300}, Account).api_base == "https://api.stripe.com"
