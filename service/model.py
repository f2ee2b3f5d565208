"""The ledger's domain types: what an order is and what applying an event did to it.

These are also the JSON contract of the REST API (DESIGN.md §5).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import msgspec

from providers.base import OutcomeKind, PaymentStatus
from service.db import BIGINT_MAX


class Source(StrEnum):
    """Who brought an event to the ledger. Every path goes through the same `apply`."""

    WEBHOOK = "webhook"
    RECONCILER = "reconciler"
    CATCH_UP = "catch_up"  # Stripe events-list catch-up
    MANUAL = "manual"
    OPERATOR = "operator"  # "check this order now" in the ops console (migrations/0041)


class AnomalyKind(StrEnum):
    """What ops must look at. The `anomalies.kind` check lists exactly these (tests/test_schema_enums.py)."""

    AMOUNT_MISMATCH = "amount_mismatch"  # the gateway's amount is not the order's
    LATE_SUCCESS = "late_success"  # a success after the order was canceled or failed: money moved anyway
    MISSED_SUCCESS = "missed_success"  # a refund of an order we never saw paid
    REFUND_EXCEEDS_PAYMENT = "refund_exceeds_payment"
    DOUBLE_PAYMENT = "double_payment"  # a second payment succeeded for a paid order
    REFUND_OF_UNKNOWN_PAYMENT = "refund_of_unknown_payment"  # a refund of a payment the order never recorded
    GATEWAY_FLAG = "gateway_flag"  # the gateway itself flagged the payment (fraud review, reversal)
    LEDGER_GATEWAY_MISMATCH = "ledger_gateway_mismatch"  # the reconciler found the ledger paid, the gateway not


class OrderReference(msgspec.Struct, frozen=True, kw_only=True):
    """One gateway reference of an order: one per payment attempt."""

    provider: str
    account: str
    reference: str
    provider_data: dict[str, Any] = {}
    added_at: datetime


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """The newest failure or cancellation a gateway reported for an order (its code and wording)."""

    status: PaymentStatus  # `failed` or `canceled`
    code: str  # the gateway's code, prefixed by the gateway: `vnpay:24`, `momo:1006`, `stripe:card_declined`
    message: str  # the gateway's own wording
    at: datetime  # the gateway's time of it (or when we received it)
    event_id: int  # the payment event in the audit trail

    @classmethod
    def from_reason(cls, status: str, reason: str, at: datetime, event_id: int) -> Failure:
        # Adapters write `reason` as "<gateway>:<code> <message>" (PaymentEvent.reason)
        code, _, message = reason.partition(" ")
        return cls(status=PaymentStatus(status), code=code, message=message, at=at, event_id=event_id)


class OrderPayment(msgspec.Struct, frozen=True, kw_only=True):
    """One payment (gateway payment id) the order has seen, with its own refunds (DESIGN.md §3).

    The order's `refunded_amount` is its paying payment's (`Order.provider_payment_id`); the
    refunds of any other payment — a duplicate charge refunded by ops — show only here.
    """

    provider_payment_id: str
    provider: str
    account: str
    amount: int  # minor units of `currency`
    currency: str
    status: PaymentStatus
    refunded_amount: int
    paid_at: datetime | None  # the earliest gateway time proving it captured money
    first_seen_at: datetime
    updated_at: datetime


class Order(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    amount: int  # minor units of `currency`
    currency: str
    provider: str
    account: str
    reference: str
    provider_data: dict[str, Any]
    metadata: dict[str, Any]
    status: PaymentStatus
    refunded_amount: int
    provider_payment_id: str | None
    version: int
    references: list[OrderReference]
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None = None
    last_failure: Failure | None = None  # the newest failure or cancellation the gateway reported, if any
    payments: list[OrderPayment] = []  # every payment seen, first seen first


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """The part of an order an event can change: what `Outcome` reports before and after."""

    status: PaymentStatus
    refunded_amount: int
    provider_payment_id: str | None
    version: int


class RawDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """The request an event came in, kept beside the parsed payload so fixed adapters can re-parse it."""

    body: bytes
    headers: dict[str, str]  # only the headers that matter (signature, content type)
    query_string: str = ""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What `ledger.apply` did with one event."""

    kind: OutcomeKind
    order_id: str | None = None
    event_id: int | None = None  # the payment_events row (for a duplicate: the stored one)
    before: OrderState | None = None
    after: OrderState | None = None
    anomalies: list[str] = []  # kinds recorded by this apply
    stored: OutcomeKind | None = None  # for a duplicate: the stored event's outcome as it now stands

    @property
    def answer(self) -> OutcomeKind:
        """The outcome a gateway's acknowledgement is built from (DESIGN.md §3 step 1).

        A redelivery hears what its first delivery heard while that still holds: an event still
        waiting for its order stays `unknown_order`, a refused amount stays `amount_mismatch`, a
        `pending` stays `ignored`. Once the stored event moved or was judged against its order
        (applied, stale, anomaly), the redelivery is a plain `duplicate` ("already confirmed").
        """
        if self.kind is OutcomeKind.DUPLICATE and self.stored in _STILL_ANSWERED:
            return self.stored
        return self.kind


_STILL_ANSWERED = frozenset({OutcomeKind.UNKNOWN_ORDER, OutcomeKind.AMOUNT_MISMATCH, OutcomeKind.IGNORED})


# --- what a client registers (DESIGN.md §5); the constraints are the API's validation -----------

OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\s/\x00-\x1f\x7f]+$")]
Amount = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]  # bigint minor units; a payment of nothing is no payment
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Provider = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
Account = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
# Key counts bound here; the encoded size (MAX_JSON_BYTES) is checked where the body is decoded.
JsonObject = Annotated[dict[str, Any], msgspec.Meta(max_length=50)]

MAX_JSON_BYTES = 16 * 1024


class NewOrder(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/orders`: an expected payment."""

    id: OrderId
    amount: Amount
    currency: Currency
    provider: Provider
    account: Account = "default"
    reference: Reference | None = None  # what the gateway will echo; defaults to the order id
    provider_data: JsonObject = {}
    metadata: JsonObject = {}

    def normalized(self) -> NewOrder:
        return self if self.reference is not None else msgspec.structs.replace(self, reference=self.id)


class NewReference(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/orders/{id}/references`: a new payment attempt's gateway reference."""

    provider: Provider
    reference: Reference
    account: Account = "default"
    provider_data: JsonObject = {}


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One forward step of an order in the audit trail."""

    event_id: int
    from_status: PaymentStatus
    to_status: PaymentStatus
    from_version: int
    to_version: int
    refunded_amount: int  # the paying payment's, after the step
    source: str
    created_at: datetime
    provider_payment_id: str | None = None  # the payment whose news made the step (a refund: the one refunded)
