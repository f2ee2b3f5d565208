"""Stripe's wire formats as msgspec Structs, and its statuses mapped to ours as data.

Only the fields payrecon reads are declared; Stripe adds fields freely, so unknown fields are
ignored (never `forbid_unknown_fields` on gateway payloads). Reference: reference/stripe.md §1, §3, §4.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from providers.base import PaymentStatus

# Minor units of the currency, never rescaled (JPY/VND: as is). Bounded at parse time: Stripe's
# amounts are 8 digits at most, and one beyond a 64-bit integer could never be stored (a typed refusal).
Amount = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{3}$")]  # lower-case ISO 4217 on the wire
UnixTime = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799)]  # seconds; ≤ 9999-12-31 so datetime accepts it
Id = Annotated[str, msgspec.Meta(min_length=1)]
Metadata = dict[str, str] | None  # Stripe metadata values are always strings


class LastPaymentError(msgspec.Struct, kw_only=True):
    code: str | None = None  # e.g. card_declined
    decline_code: str | None = None  # e.g. insufficient_funds
    message: str | None = None
    type: str | None = None  # card_error, …


class Charge(msgspec.Struct, kw_only=True):
    id: Id
    object: Literal["charge"] = "charge"
    amount: Amount
    amount_captured: Amount = 0
    amount_refunded: Amount = 0  # cumulative over every succeeded refund
    currency: Currency
    refunded: bool = False  # true only once fully refunded
    payment_intent: str | None = None
    metadata: Metadata = None
    status: str | None = None


class PaymentIntent(msgspec.Struct, kw_only=True):
    id: Id
    object: Literal["payment_intent"] = "payment_intent"
    amount: Amount
    amount_capturable: Amount = 0
    amount_received: Amount = 0
    currency: Currency
    status: str
    metadata: Metadata = None
    last_payment_error: LastPaymentError | None = None
    cancellation_reason: str | None = None
    latest_charge: str | Charge | None = None  # an id, or the Charge with expand[]=latest_charge
    created: UnixTime | None = None


class Refund(msgspec.Struct, kw_only=True):
    id: Id
    object: Literal["refund"] = "refund"
    amount: Amount  # this refund alone — NOT the cumulative sum
    currency: Currency
    status: str | None = None  # pending, requires_action, succeeded, failed, canceled
    charge: str | Charge | None = None  # an id, or the Charge when expanded
    payment_intent: str | None = None
    metadata: Metadata = None
    failure_reason: str | None = None


class CheckoutSession(msgspec.Struct, kw_only=True):
    id: Id
    object: Literal["checkout.session"] = "checkout.session"
    amount_total: Amount | None = None
    currency: Currency | None = None
    client_reference_id: str | None = None
    metadata: Metadata = None
    mode: str | None = None  # payment | setup | subscription
    payment_intent: str | PaymentIntent | None = None
    payment_status: str  # paid | unpaid | no_payment_required
    status: str | None = None  # open | complete | expired


class EventData(msgspec.Struct, kw_only=True):
    object: dict[str, Any]  # decoded by type once we know the event's kind
    previous_attributes: dict[str, Any] | None = None


class Event(msgspec.Struct, kw_only=True):
    id: Id  # evt_… → dedupe_key
    object: Literal["event"] = "event"
    type: str
    created: UnixTime  # 1 s resolution → occurred_at
    data: EventData
    account: str | None = None  # Connect: the connected account the event belongs to
    livemode: bool = False
    api_version: str | None = None


class EventList(msgspec.Struct, kw_only=True):
    """GET /v1/events: newest first."""

    data: list[dict[str, Any]]
    has_more: bool = False


class SearchResult(msgspec.Struct, kw_only=True):
    """GET /v1/payment_intents/search."""

    data: list[PaymentIntent]
    has_more: bool = False


class ErrorDetail(msgspec.Struct, kw_only=True):
    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


# --- statuses -------------------------------------------------------------------------------------

ObjectKind = Literal["payment_intent", "charge", "refund", "checkout_session"]


class EventRule(NamedTuple):
    kind: ObjectKind  # what `data.object` is
    status: PaymentStatus | None  # None: read from the object (refund arithmetic, Checkout payment_status)


S = PaymentStatus

# Every event type we track. Anything else is acknowledged and ignored (reference §4).
EVENT_RULES: dict[str, EventRule] = {
    "payment_intent.created": EventRule("payment_intent", S.PENDING),  # created, nothing paid yet
    "payment_intent.requires_action": EventRule("payment_intent", S.PENDING),  # customer must authenticate
    "payment_intent.processing": EventRule("payment_intent", S.PROCESSING),  # async method in flight
    "payment_intent.partially_funded": EventRule("payment_intent", S.PROCESSING),  # bank transfer short
    "payment_intent.amount_capturable_updated": EventRule("payment_intent", S.AUTHORIZED),  # manual capture
    "payment_intent.succeeded": EventRule("payment_intent", S.SUCCEEDED),  # funds captured
    "payment_intent.payment_failed": EventRule("payment_intent", S.FAILED),  # NOT terminal: a retry may succeed
    "payment_intent.canceled": EventRule("payment_intent", S.CANCELED),  # abandoned, expired, fraudulent…
    "charge.refunded": EventRule("charge", None),  # amount_refunded is cumulative
    "charge.refund.updated": EventRule("refund", None),  # a refund changed (e.g. failed)
    "refund.created": EventRule("refund", None),
    "refund.updated": EventRule("refund", None),
    "refund.failed": EventRule("refund", None),
    "checkout.session.completed": EventRule("checkout_session", None),  # by payment_status
    "checkout.session.async_payment_succeeded": EventRule("checkout_session", S.SUCCEEDED),
    "checkout.session.async_payment_failed": EventRule("checkout_session", S.FAILED),
    "checkout.session.expired": EventRule("checkout_session", S.CANCELED),  # the session lapsed unpaid
}

# checkout.session.completed: the session's `payment_status`.
CHECKOUT_PAYMENT_STATUS: dict[str, PaymentStatus] = {
    "paid": S.SUCCEEDED,  # the money is there
    "unpaid": S.PROCESSING,  # delayed method (bank debit): async_payment_* follows
    "no_payment_required": S.SUCCEEDED,  # a 100 % discount: amount 0
}

# PaymentIntent `status` as the status API returns it (reference §4, exact list from the API schema).
PAYMENT_INTENT_STATUS: dict[str, PaymentStatus] = {
    "requires_payment_method": S.PENDING,  # no usable method yet — FAILED when last_payment_error is set
    "requires_confirmation": S.PENDING,  # created, not confirmed
    "requires_action": S.PENDING,  # 3-D Secure, redirect
    "processing": S.PROCESSING,  # async method in flight
    "requires_capture": S.AUTHORIZED,  # authorised, manual capture pending
    "canceled": S.CANCELED,  # see cancellation_reason
    "succeeded": S.SUCCEEDED,  # funds captured (refunds: latest_charge.amount_refunded)
}

# cancellation_reason values ops must look at (the ledger turns a flag into an anomaly).
FLAGGED_CANCELLATIONS = frozenset({"fraudulent"})
