"""Stripe Event objects → PaymentEvents: one function shared by webhooks and the catch-up feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from providers.answers import dedupe_key
from providers.base import PaymentEvent, PaymentStatus
from providers.errors import MalformedError
from providers.stripe.wire import (
    CHECKOUT_PAYMENT_STATUS,
    EVENT_RULES,
    FLAGGED_CANCELLATIONS,
    Charge,
    CheckoutSession,
    Event,
    PaymentIntent,
    Refund,
)

PROVIDER = "stripe"


def events_from_payload(payload: dict[str, Any], *, account: str, order_key: str) -> list[PaymentEvent]:
    """Normalize one Event (already verified, or read from the authenticated API).

    Raises MalformedError when a tracked event does not have the shape we read; untracked
    types give `[]`.
    """
    try:
        event = msgspec.convert(payload, Event)
    except msgspec.ValidationError as exc:
        raise MalformedError(f"not a Stripe Event object: {exc}") from None
    rule = EVENT_RULES.get(event.type)
    if rule is None:
        return []
    base = _Base(event=event, payload=payload, account=account, order_key=order_key)
    try:
        match rule.kind:
            case "payment_intent":
                return [base.from_payment_intent(msgspec.convert(event.data.object, PaymentIntent), rule.status)]
            case "charge":
                return base.from_charge(msgspec.convert(event.data.object, Charge))
            case "refund":
                return base.from_refund(msgspec.convert(event.data.object, Refund))
            case "checkout_session":
                return base.from_checkout(msgspec.convert(event.data.object, CheckoutSession), rule.status)
    except msgspec.ValidationError as exc:
        raise MalformedError(f"{event.type} {event.id}: data.object is not a {rule.kind}: {exc}") from None
    return []  # pragma: no cover - the match is exhaustive


def refund_status(charge: Charge) -> PaymentStatus | None:
    """What a Charge's cumulative `amount_refunded` says; None while nothing is refunded."""
    if charge.amount_refunded <= 0:
        return None
    if charge.refunded or charge.amount_refunded >= charge.amount:
        return PaymentStatus.REFUNDED
    return PaymentStatus.PARTIALLY_REFUNDED


def intent_amount(intent: PaymentIntent, status: PaymentStatus) -> int:
    """What a PaymentIntent in `status` is worth: what was captured, or what may be captured."""
    if status is PaymentStatus.SUCCEEDED:
        return intent.amount_received or intent.amount
    if status is PaymentStatus.AUTHORIZED:
        return intent.amount_capturable or intent.amount
    return intent.amount


def cancellation(intent: PaymentIntent) -> tuple[str, str | None]:
    """(reason, flag) of a canceled PaymentIntent; ops must see some cancellation reasons."""
    reason = f"stripe:canceled {intent.cancellation_reason or ''}".rstrip()
    if intent.cancellation_reason in FLAGGED_CANCELLATIONS:
        return reason, f"stripe: PaymentIntent {intent.id} canceled as {intent.cancellation_reason}"
    return reason, None


def failure_reason(intent: PaymentIntent) -> str | None:
    err = intent.last_payment_error
    if err is None:
        return None
    code = err.decline_code or err.code or "payment_failed"
    return f"stripe:{code} {err.message or ''}".rstrip()


class _Base(msgspec.Struct, kw_only=True):
    event: Event
    payload: dict[str, Any]
    account: str
    order_key: str

    def _make(self, **fields: Any) -> PaymentEvent:
        return PaymentEvent(
            provider=PROVIDER,
            dedupe_key=dedupe_key(PROVIDER, self.account, self.event.id),
            account=self.account,
            occurred_at=datetime.fromtimestamp(self.event.created, UTC),
            payload=self.payload,
            **fields,
        )

    def _order_id(self, metadata: dict[str, str] | None) -> str | None:
        return (metadata or {}).get(self.order_key) or None

    def from_payment_intent(self, intent: PaymentIntent, status: PaymentStatus | None) -> PaymentEvent:
        assert status is not None  # every payment_intent.* rule names its status
        reason = flag = None
        if status is PaymentStatus.FAILED:
            reason = failure_reason(intent) or "stripe:payment_failed"
        elif status is PaymentStatus.CANCELED:
            reason, flag = cancellation(intent)
        return self._make(
            reference=intent.id,
            order_id=self._order_id(intent.metadata),
            status=status,
            amount=intent_amount(intent, status),
            currency=intent.currency.upper(),
            provider_payment_id=intent.id,
            reason=reason,
            flag=flag,
        )

    def from_charge(self, charge: Charge, *, order_id: str | None = None) -> list[PaymentEvent]:
        status = refund_status(charge)
        if status is None:
            return []
        return [
            self._make(
                reference=charge.payment_intent or charge.id,  # legacy Charges-API payments have no PI
                order_id=self._order_id(charge.metadata) or order_id,
                status=status,
                amount=charge.amount,  # the original payment; refunded_amount is cumulative
                currency=charge.currency.upper(),
                provider_payment_id=charge.payment_intent or charge.id,
                refunded_amount=charge.amount_refunded,
            )
        ]

    def from_refund(self, refund: Refund) -> list[PaymentEvent]:
        # A Refund carries its own amount, not the cumulative sum, and a failed refund gives money
        # back to the balance: only the Charge's amount_refunded is the truth. Without an expanded
        # charge we state nothing (the charge.refunded event and the status API carry the sum).
        if not isinstance(refund.charge, Charge):
            return []
        charge = refund.charge
        if charge.payment_intent is None and refund.payment_intent is not None:
            charge = msgspec.structs.replace(charge, payment_intent=refund.payment_intent)
        return self.from_charge(charge, order_id=self._order_id(refund.metadata))

    def from_checkout(self, session: CheckoutSession, status: PaymentStatus | None) -> list[PaymentEvent]:
        if session.mode not in (None, "payment"):
            return []  # setup sessions move no money; subscriptions are paid through invoices
        if status is None:
            status = CHECKOUT_PAYMENT_STATUS.get(session.payment_status)
            if status is None:
                raise MalformedError(
                    f"checkout session {session.id}: unknown payment_status {session.payment_status!r}"
                )
        if session.currency is None:
            raise MalformedError(f"checkout session {session.id} in payment mode has no currency")
        pi = session.payment_intent
        pi_id = pi.id if isinstance(pi, PaymentIntent) else pi
        reason = None
        if status is PaymentStatus.FAILED:
            reason = "stripe:async_payment_failed"
        elif status is PaymentStatus.CANCELED:
            reason = "stripe:checkout_session_expired"
        return [
            self._make(
                # an expired session may never have created a PaymentIntent: the order id still matches
                reference=pi_id or session.id,
                order_id=self._order_id(session.metadata) or session.client_reference_id or None,
                status=status,
                amount=session.amount_total or 0,  # no_payment_required: 0
                currency=session.currency.upper(),
                provider_payment_id=pi_id,
                reason=reason,
            )
        ]
