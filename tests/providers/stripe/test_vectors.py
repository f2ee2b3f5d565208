"""Every Stripe vector of tests/fixtures/vectors.json: signatures, verdicts and normalized events."""

from __future__ import annotations

from datetime import datetime

import pytest

from providers.errors import ReplayError, SignatureError
from providers.stripe.signing import compute_signature, parse_header
from providers.stripe.sim.signing import sign_header

from ._support import OLD_SECRET, VECTORS, account, adapter, request, vector

ERRORS = {"SignatureError": SignatureError, "ReplayError": ReplayError}


def test_the_fixture_holds_all_twelve_stripe_vectors() -> None:
    assert [v["id"] for v in VECTORS] == [f"stripe-{i:02}" for i in range(1, 13)]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["id"])
def test_signature_is_reproduced(v: dict) -> None:
    body = v["input"]["body"].encode()
    assert v["signed_string"] == f"{v['timestamp']}.{v['input']['body']}"
    assert compute_signature(v["secret"], v["timestamp"], body) == v["expected_signature"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["id"])
def test_verdict(v: dict) -> None:
    gateway = adapter(account(webhook_secrets=[v["secret"]], tolerance_s=v["tolerance_s"]))
    req = request(v["input"]["body"].encode(), v["input"]["headers"], received=v["now"])
    if v["valid"]:
        gateway.verify(req)
    else:
        expected = ERRORS[v["expected_outcome"].split()[0]]
        with pytest.raises(expected) as caught:
            gateway.verify(req)
        assert type(caught.value) is expected


@pytest.mark.parametrize("v", [v for v in VECTORS if "expected_event" in v], ids=lambda v: v["id"])
def test_expected_event(v: dict) -> None:
    gateway = adapter(account(webhook_secrets=[v["secret"]]))
    req = request(v["input"]["body"].encode(), v["input"]["headers"], received=v["now"])
    gateway.verify(req)
    [event] = gateway.parse(req)
    want = v["expected_event"]
    for field, value in want.items():
        got = getattr(event, field)
        if field == "occurred_at":
            assert got == datetime.fromisoformat(value.replace("Z", "+00:00"))
            assert got.utcoffset() is not None
            assert got.utcoffset().total_seconds() == 0
        else:
            assert got == value, field
    assert event.provider == "stripe"
    assert event.account == "default"
    assert event.reference == want["provider_payment_id"]  # the PaymentIntent id
    assert event.refunded_amount == want.get("refunded_amount")
    assert want["dedupe_key"] == f"stripe:default:{event.payload['id']}"


def test_rotation_header_is_what_stripe_sends_for_new_then_old_secret() -> None:
    v = vector("stripe-02")
    header = sign_header(v["input"]["body"].encode(), [v["secret"], OLD_SECRET], v["timestamp"])
    assert v["stripe_signature_header"].startswith(header + ",v0=")
    parsed = parse_header(v["stripe_signature_header"])
    assert parsed.schemes == ["v1", "v1", "v0"]
    assert len(parsed.signatures) == 2


def test_both_secrets_configured_accept_the_rotation_delivery() -> None:
    v = vector("stripe-02")
    gateway = adapter(account(webhook_secrets=[v["secret"], OLD_SECRET]))
    gateway.verify(request(v["input"]["body"].encode(), v["input"]["headers"], received=v["now"]))


def test_single_secret_header_matches_vector_01() -> None:
    v = vector("stripe-01")
    assert sign_header(v["input"]["body"].encode(), [v["secret"]], v["timestamp"]) == v["stripe_signature_header"]


def test_future_timestamp_policy_is_library_parity() -> None:
    """stripe-12: t an hour ahead of now is accepted, like stripe-python/stripe-node (only age counts)."""
    v = vector("stripe-12")
    assert v["timestamp"] - v["now"] == 3600
    gateway = adapter(account(webhook_secrets=[v["secret"]]))
    gateway.verify(request(v["input"]["body"].encode(), v["input"]["headers"], received=v["now"]))
