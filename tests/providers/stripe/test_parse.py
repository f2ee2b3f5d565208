"""Stripe Events → PaymentEvents: every tracked type, refunds, Checkout, currencies, ignoring."""

from __future__ import annotations

import pytest

from providers.base import PaymentStatus
from providers.errors import MalformedError
from providers.stripe.wire import EVENT_RULES

from ._support import NOW, account, adapter, at, charge, event, intent, signed

S = PaymentStatus


def parse_one(payload: dict, **account_fields: object) -> list:
    gateway = adapter(account(**account_fields))
    req = signed(payload)
    gateway.verify(req)
    return gateway.parse(req)


@pytest.mark.parametrize(
    ("event_type", "pi_fields", "status", "amount"),
    [
        ("payment_intent.created", {}, S.PENDING, 2599),
        ("payment_intent.requires_action", {"status": "requires_action"}, S.PENDING, 2599),
        ("payment_intent.processing", {"status": "processing"}, S.PROCESSING, 2599),
        ("payment_intent.partially_funded", {"status": "requires_payment_method"}, S.PROCESSING, 2599),
        (
            "payment_intent.amount_capturable_updated",
            {"status": "requires_capture", "amount_capturable": 2500},
            S.AUTHORIZED,
            2500,
        ),
        ("payment_intent.succeeded", {"status": "succeeded", "amount_received": 2599}, S.SUCCEEDED, 2599),
        ("payment_intent.payment_failed", {}, S.FAILED, 2599),
        ("payment_intent.canceled", {"status": "canceled", "cancellation_reason": "abandoned"}, S.CANCELED, 2599),
    ],
)
def test_payment_intent_events(event_type: str, pi_fields: dict, status: S, amount: int) -> None:
    [ev] = parse_one(event(event_type, intent(**pi_fields), event_id="evt_pi"))
    assert (ev.status, ev.amount, ev.currency) == (status, amount, "USD")
    assert (ev.reference, ev.provider_payment_id, ev.order_id) == ("pi_3T", "pi_3T", "ord_1")
    assert ev.dedupe_key == "stripe:default:evt_pi"
    assert ev.occurred_at == at(NOW - 1)
    assert ev.refunded_amount is None


def test_succeeded_amount_is_amount_received() -> None:
    [ev] = parse_one(event("payment_intent.succeeded", intent(status="succeeded", amount=3000, amount_received=2000)))
    assert ev.amount == 2000  # a short capture shows up as an amount mismatch in the ledger


def test_payment_failed_carries_the_decline() -> None:
    err = {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }
    [ev] = parse_one(event("payment_intent.payment_failed", intent(last_payment_error=err)))
    assert ev.status is S.FAILED
    assert ev.reason == "stripe:insufficient_funds Your card has insufficient funds."
    assert ev.flag is None


def test_fraudulent_cancellation_is_flagged() -> None:
    [ev] = parse_one(event("payment_intent.canceled", intent(status="canceled", cancellation_reason="fraudulent")))
    assert ev.reason == "stripe:canceled fraudulent"
    assert ev.flag is not None
    assert "fraudulent" in ev.flag


@pytest.mark.parametrize(("currency", "amount"), [("vnd", 150_000), ("jpy", 4500), ("usd", 2599), ("kwd", 5120)])
def test_amounts_are_never_rescaled(currency: str, amount: int) -> None:
    payload = intent(status="succeeded", currency=currency, amount=amount, amount_received=amount)
    [ev] = parse_one(event("payment_intent.succeeded", payload))
    assert (ev.amount, ev.currency) == (amount, currency.upper())


def test_order_id_metadata_key_is_configurable() -> None:
    payload = event("payment_intent.succeeded", intent(status="succeeded", metadata={"shop_order": "S-9"}))
    assert parse_one(payload)[0].order_id is None
    assert parse_one(payload, order_id_metadata_key="shop_order")[0].order_id == "S-9"


@pytest.mark.parametrize(
    ("refunded", "amount_refunded", "flag_refunded", "status"),
    [(False, 1000, False, S.PARTIALLY_REFUNDED), (True, 2599, True, S.REFUNDED), (False, 2599, False, S.REFUNDED)],
)
def test_charge_refunded_is_cumulative(refunded: bool, amount_refunded: int, flag_refunded: bool, status: S) -> None:
    obj = charge(amount_refunded=amount_refunded, refunded=flag_refunded)
    [ev] = parse_one(event("charge.refunded", obj, event_id="evt_r"))
    assert (ev.status, ev.amount, ev.refunded_amount) == (status, 2599, amount_refunded)
    assert (ev.reference, ev.provider_payment_id, ev.order_id) == ("pi_3T", "pi_3T", "ord_1")


def test_charge_without_payment_intent_uses_the_charge_id() -> None:
    [ev] = parse_one(event("charge.refunded", charge(payment_intent=None, amount_refunded=5, metadata={})))
    assert (ev.reference, ev.order_id) == ("ch_3T", None)


def test_charge_refunded_with_nothing_refunded_states_nothing() -> None:
    assert parse_one(event("charge.refunded", charge(amount_refunded=0))) == []


@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"])
def test_bare_refund_objects_state_nothing(event_type: str) -> None:
    """A Refund's own amount is not the cumulative sum: never guess it."""
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "currency": "usd",
        "charge": "ch_3T",
        "payment_intent": "pi_3T",
        "status": "failed",
    }
    assert parse_one(event(event_type, refund)) == []


def test_refund_with_expanded_charge_uses_the_charges_cumulative_sum() -> None:
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "currency": "usd",
        "status": "failed",
        "charge": charge(amount_refunded=700, payment_intent=None, metadata={}),
        "payment_intent": "pi_3T",
        "metadata": {"order_id": "ord_1"},
    }
    [ev] = parse_one(event("refund.failed", refund))
    assert (ev.status, ev.refunded_amount, ev.amount) == (S.PARTIALLY_REFUNDED, 700, 2599)
    assert (ev.reference, ev.order_id) == ("pi_3T", "ord_1")


def checkout(**fields: object) -> dict:
    base = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "amount_total": 4500,
        "currency": "jpy",
        "client_reference_id": "ord_9",
        "metadata": {},
        "mode": "payment",
        "payment_intent": "pi_3C",
        "payment_status": "paid",
        "status": "complete",
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("event_type", "fields", "status", "amount"),
    [
        ("checkout.session.completed", {}, S.SUCCEEDED, 4500),
        ("checkout.session.completed", {"payment_status": "unpaid"}, S.PROCESSING, 4500),
        ("checkout.session.completed", {"payment_status": "no_payment_required", "amount_total": 0}, S.SUCCEEDED, 0),
        ("checkout.session.async_payment_succeeded", {}, S.SUCCEEDED, 4500),
        ("checkout.session.async_payment_failed", {"payment_status": "unpaid"}, S.FAILED, 4500),
        ("checkout.session.expired", {"payment_status": "unpaid", "status": "expired"}, S.CANCELED, 4500),
    ],
)
def test_checkout_sessions(event_type: str, fields: dict, status: S, amount: int) -> None:
    [ev] = parse_one(event(event_type, checkout(**fields)))
    assert (ev.status, ev.amount, ev.currency) == (status, amount, "JPY")
    assert (ev.reference, ev.provider_payment_id, ev.order_id) == ("pi_3C", "pi_3C", "ord_9")


def test_checkout_metadata_wins_and_sessions_without_pi_still_carry_the_order() -> None:
    [ev] = parse_one(event("checkout.session.expired", checkout(metadata={"order_id": "ord_m"}, payment_intent=None)))
    assert (ev.reference, ev.provider_payment_id, ev.order_id) == ("cs_test_1", None, "ord_m")


def test_setup_and_subscription_sessions_are_ignored() -> None:
    assert parse_one(event("checkout.session.completed", checkout(mode="setup", currency=None))) == []
    assert parse_one(event("checkout.session.completed", checkout(mode="subscription"))) == []


def test_unknown_payment_status_is_malformed() -> None:
    with pytest.raises(MalformedError, match="payment_status"):
        parse_one(event("checkout.session.completed", checkout(payment_status="weird")))


@pytest.mark.parametrize("event_type", ["customer.created", "charge.succeeded", "invoice.paid", "payment_intent.x"])
def test_untracked_types_are_ignored(event_type: str) -> None:
    assert parse_one(event(event_type, {"id": "x", "object": "whatever"})) == []


def test_connect_account_is_kept_in_the_payload() -> None:
    [ev] = parse_one(event("payment_intent.succeeded", intent(status="succeeded"), account="acct_1Connected"))
    assert ev.payload["account"] == "acct_1Connected"
    assert ev.account == "default"  # ours: the endpoint the delivery came in on


@pytest.mark.parametrize(
    "payload",
    [
        event("payment_intent.succeeded", charge()),  # wrong object for the type
        event("payment_intent.succeeded", intent(amount=-1)),
        event("payment_intent.succeeded", intent(amount=10.5)),
        event("payment_intent.succeeded", intent(currency="dollars")),
        event("payment_intent.succeeded", intent(metadata={"order_id": 7})),
        {**event("payment_intent.succeeded", intent()), "created": "yesterday"},
        {**event("payment_intent.succeeded", intent()), "id": ""},
        {"id": "evt", "type": "payment_intent.succeeded"},
    ],
)
def test_malformed_tracked_events(payload: dict) -> None:
    with pytest.raises(MalformedError):
        parse_one(payload)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1,2]", b"null", b"\xff\xfe", b"[" * 5000])
def test_unreadable_bodies(body: bytes) -> None:
    gateway = adapter()
    req = signed(body)
    gateway.verify(req)  # signed garbage still verifies; parse rejects it
    with pytest.raises(MalformedError):
        gateway.parse(req)


def test_every_rule_parses() -> None:
    """Each tracked type produces at most one event from a well-formed object of its kind."""
    objects = {
        "payment_intent": intent(status="succeeded"),
        "charge": charge(amount_refunded=1),
        "refund": {"id": "re", "object": "refund", "amount": 1, "currency": "usd", "charge": charge(amount_refunded=1)},
        "checkout_session": checkout(),
    }
    for event_type, rule in EVENT_RULES.items():
        [ev] = parse_one(event(event_type, objects[rule.kind]))
        assert ev.currency in ("USD", "JPY")
