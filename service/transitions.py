"""The transition rules of the ledger (DESIGN.md §3) as one pure function: `decide`.

A late, duplicated or reordered event must never move an order backwards. Statuses form
layers; an event applies when it reaches a higher layer, and inside the retry cycle
(layer 1) the gateway's time decides. That makes the final state a function of the *set*
of events — highest layer reached, largest cumulative refund, newest news in layer 1 —
whatever the delivery order. The ledger supplies the facts, `decide` the verdict; no I/O.

Decisions the table leaves open, fixed here:
- An event without a gateway time counts as news of the moment we received it
  (the ledger passes `coalesce(occurred_at, received_at)`).
- Newer news of the *same* layer-1 status applies (processing → processing): without it
  the order would keep the older time, and an older `failed` could overtake it later.
- Layer 4's status follows the money: `refunded` when the cumulative refund reaches the
  order amount, else `partially_refunded`, whatever the gateway's label. A `refunded`
  event without an amount refunds all of it. The stored refund is capped at the order
  amount (never a negative balance); more is a `refund_exceeds_payment` anomaly.
- A `pending` event is recorded and changes nothing: outcome `ignored`.
- `anomaly` is the outcome of an event that changed nothing but needs ops (a second
  payment, an excessive refund that moved nothing); an event that moved the order is
  `applied` even when it also raised anomalies (a late or missed success).

Payments (one `provider_payment_id` each; an order may see several — retries, a double charge):
- Each payment's own state is these same rules over its own events alone (`Payment`), so its
  refunds are its own and never summed with another's.
- The order is paid by the payment that proved a capture first in **gateway time** (its
  success, or a refund, which proves one), ties broken by id. News of that payment — or naming
  no payment — moves the order as the table says; news of another moves nothing: its success
  is a `double_payment` (unless it is already fully refunded), its refund is recorded against
  it (`refund_of_unknown_payment` if it never captured before), and once fully refunded it
  settles its `double_payment`.
- When news of an earlier capture comes late, that payment becomes the paying one and the
  order takes its state (the other turns duplicate). This is the one step that may lower the
  order's layer (refunded → succeeded when the refunded payment was the duplicate); without it
  the paying payment — and so the order's status — would depend on delivery order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from providers.base import OutcomeKind, PaymentStatus
from service.model import AnomalyKind

S = PaymentStatus

# A status's layer is `PaymentStatus.layer` (providers/base.py), its "money moved" `is_paid`; the
# SQL twin of both is migrations/0011's `ledger_layer`, held equal by tests/test_schema_enums.py.
REFUND_LAYER = S.REFUNDED.layer

# Inside layer 1, news of the same instant: the more final reading wins (SQL: `ledger_tie_rank`).
TIE_RANK: dict[PaymentStatus, int] = {S.PROCESSING: 0, S.AUTHORIZED: 1, S.FAILED: 2}


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """One payment of an order (one `provider_payment_id`) as the ledger recorded it: the same
    rules as an order's, applied to that payment's events alone (`order_payments`)."""

    status: PaymentStatus = S.PENDING
    status_at: datetime | None = None
    refunded_amount: int = 0  # this payment's largest cumulative refund, capped at the order amount
    paid_at: datetime | None = None  # the earliest gateway time that proves it captured money


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules need to know about an order."""

    amount: int
    currency: str
    status: PaymentStatus = S.PENDING
    status_at: datetime | None = None  # gateway time of the news that set `status`
    refunded_amount: int = 0  # the paying payment's (never a sum over payments)
    provider_payment_id: str | None = None  # the paying payment
    paid_at: datetime | None = None
    payment: Payment | None = None  # the recorded payment the event names (None: never seen, or no id)
    paying: Payment | None = None  # the recorded payment that pays the order (`provider_payment_id`)


class News(msgspec.Struct, frozen=True, kw_only=True):
    """What an event says, with its effective gateway time."""

    status: PaymentStatus
    at: datetime
    amount: int
    currency: str
    refunded_amount: int | None = None
    provider_payment_id: str | None = None


class Anomaly(msgspec.Struct, frozen=True):
    kind: AnomalyKind
    detail: dict[str, Any]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    kind: OutcomeKind
    after: Facts  # the order's facts; equal to the input unless kind is APPLIED (`payment`/`paying` not kept)
    payment: Payment | None = None  # the event's payment after it (None: the event names no payment)
    anomalies: tuple[Anomaly, ...] = ()
    # Open `double_payment` anomalies naming the event's payment that it settles: the duplicate is
    # fully refunded, or turned out to be the payment that paid the order.
    resolves_double_payment: bool = False

    @property
    def moved(self) -> bool:
        return self.kind is OutcomeKind.APPLIED


def decide(order: Facts, news: News) -> Decision:
    """The verdict on one event for one order, and on the payment the event names."""
    if (news.amount, news.currency) != (order.amount, order.currency):
        # Never mark an order paid for the wrong amount. A captured payment of the wrong amount
        # still needs an ops decision (answering VNPay 04 does not undo it).
        detail = {
            "expected": {"amount": order.amount, "currency": order.currency},
            "got": {"amount": news.amount, "currency": news.currency},
            "status": str(news.status),
            "money_moved": news.status.is_paid,
        }
        return Decision(
            kind=OutcomeKind.AMOUNT_MISMATCH, after=order, anomalies=(Anomaly(AnomalyKind.AMOUNT_MISMATCH, detail),)
        )
    payment = _payment(order, news)
    paid_by, named = order.provider_payment_id, news.provider_payment_id
    if not news.status.is_paid or paid_by is None or named is None or named == paid_by:
        decision = _order_rules(_bare(order), news)
        return msgspec.structs.replace(decision, payment=payment)
    assert payment is not None  # named
    return _another_payment(order, news, payment)


def _bare(order: Facts) -> Facts:
    return msgspec.structs.replace(order, payment=None, paying=None)


def _payment(order: Facts, news: News) -> Payment | None:
    """The event's payment after the event: the order rules over that payment's events alone."""
    if news.provider_payment_id is None:
        return None
    was = order.payment or Payment()
    alone = Facts(
        amount=order.amount,
        currency=order.currency,
        status=was.status,
        status_at=was.status_at,
        refunded_amount=was.refunded_amount,
        provider_payment_id=news.provider_payment_id,
        paid_at=was.paid_at,
    )
    after = _order_rules(alone, news).after
    paid_at = _earliest(was.paid_at, news.at if news.status.is_paid else None)
    return Payment(
        status=after.status, status_at=after.status_at, refunded_amount=after.refunded_amount, paid_at=paid_at
    )


def _another_payment(order: Facts, news: News, payment: Payment) -> Decision:
    """News proving a payment other than the one that pays the order (both named)."""
    named, paid_by = news.provider_payment_id, order.provider_payment_id
    assert named is not None
    assert paid_by is not None
    assert payment.paid_at is not None  # news of layer 3 or 4 proves a capture
    paying = order.paying
    paying_since = paying.paid_at if paying is not None and paying.paid_at is not None else order.paid_at
    paying_refunded = paying.refunded_amount if paying is not None else order.refunded_amount
    excess = _excess_refund(order, news)
    if paying_since is None or (payment.paid_at, named) < (paying_since, paid_by):
        # This payment captured money before the one we took as paying (its news came late): by gateway
        # time it is the order's payment, and the other the duplicate. Without this the paying payment
        # would depend on delivery order, and with it the order's status.
        after = msgspec.structs.replace(
            _bare(order),
            status=payment.status,
            status_at=news.at,
            refunded_amount=payment.refunded_amount,
            provider_payment_id=named,
            paid_at=payment.paid_at,
        )
        anomalies = list(excess)
        if paying_refunded < order.amount:
            detail = {"paid_by": named, "provider_payment_id": paid_by, "amount": order.amount}
            anomalies.append(Anomaly(AnomalyKind.DOUBLE_PAYMENT, detail))
        return Decision(
            kind=OutcomeKind.APPLIED,
            after=after,
            payment=payment,
            anomalies=tuple(anomalies),
            resolves_double_payment=True,
        )
    settled = payment.refunded_amount >= order.amount  # a fully refunded duplicate holds no money
    anomalies = list(excess)
    if news.status.layer < REFUND_LAYER:  # paid and not a refund: a success
        if not settled:
            # Two attempts both charged the customer: the order stays paid by the first; ops refund one.
            detail = {"paid_by": paid_by, "provider_payment_id": named, "amount": news.amount}
            anomalies.append(Anomaly(AnomalyKind.DOUBLE_PAYMENT, detail))
    elif order.payment is None or not order.payment.status.is_paid:
        # A refund of a payment the order never saw capture money: recorded against it, moves nothing.
        detail = {"paid_by": paid_by, "provider_payment_id": named, "refunded_amount": payment.refunded_amount}
        anomalies.insert(0, Anomaly(AnomalyKind.REFUND_OF_UNKNOWN_PAYMENT, detail))
    kind = OutcomeKind.ANOMALY if anomalies else OutcomeKind.STALE
    return Decision(
        kind=kind, after=order, payment=payment, anomalies=tuple(anomalies), resolves_double_payment=settled
    )


def _excess_refund(order: Facts, news: News) -> tuple[Anomaly, ...]:
    claimed = news.refunded_amount
    if news.status.layer < REFUND_LAYER or claimed is None or claimed <= order.amount:
        return ()
    detail = {"refunded_amount": claimed, "amount": order.amount, "currency": order.currency}
    return (Anomaly(AnomalyKind.REFUND_EXCEEDS_PAYMENT, detail),)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _order_rules(order: Facts, news: News) -> Decision:
    """The rules of DESIGN.md §3 for news of the paying payment (or of no payment in particular)."""
    layer, current = news.status.layer, order.status.layer
    if layer == 0:
        return Decision(kind=OutcomeKind.IGNORED, after=order)
    if layer == 1:
        return _retry_cycle(order, news) if current <= 1 else _stale(order)
    if layer == 2:
        return _move(order, news, S.CANCELED) if current < 2 else _stale(order)
    if layer == 3:
        return _success(order, news)
    return _refund(order, news)


def _stale(order: Facts, *anomalies: Anomaly) -> Decision:
    kind = OutcomeKind.ANOMALY if anomalies else OutcomeKind.STALE
    return Decision(kind=kind, after=order, anomalies=anomalies)


def _move(order: Facts, news: News, status: PaymentStatus, refunded: int | None = None, *extra: Anomaly) -> Decision:
    paid = status.is_paid
    after = msgspec.structs.replace(
        order,
        status=status,
        status_at=news.at,
        refunded_amount=order.refunded_amount if refunded is None else refunded,
        provider_payment_id=order.provider_payment_id or (news.provider_payment_id if paid else None),
        paid_at=_earliest(order.paid_at, news.at if paid else None),
    )
    return Decision(kind=OutcomeKind.APPLIED, after=after, anomalies=extra)


def _retry_cycle(order: Facts, news: News) -> Decision:
    if order.status.layer == 0 or order.status_at is None:
        return _move(order, news, news.status)
    # Newer news wins; at the same instant the more final reading (failed > authorized > processing).
    if (news.at, TIE_RANK[news.status]) > (order.status_at, TIE_RANK[order.status]):
        return _move(order, news, news.status)
    return _stale(order)


def _success(order: Facts, news: News) -> Decision:
    if not order.status.is_paid:
        late = () if order.status is not S.CANCELED else (_late_success(order, news),)
        return _move(order, news, S.SUCCEEDED, None, *late)
    return _stale(order)  # the paying payment's success again (another payment's: `_another_payment`)


def _refund(order: Facts, news: News) -> Decision:
    claimed = news.refunded_amount
    if claimed is None:  # no amount given: `refunded` means all of it; a partial one we cannot size
        claimed = order.amount if news.status is S.REFUNDED else order.refunded_amount
    refunded = min(claimed, order.amount)
    status = S.REFUNDED if refunded >= order.amount else S.PARTIALLY_REFUNDED
    anomalies = list(_excess_refund(order, news))
    if not order.status.is_paid:
        # A refund proves a payment we never heard of (or heard of after giving up).
        if order.status is S.CANCELED:
            anomalies.insert(0, _late_success(order, news))
        else:
            detail = {"from_status": str(order.status), "refund_status": str(news.status)}
            anomalies.insert(0, Anomaly(AnomalyKind.MISSED_SUCCESS, detail))
        return _move(order, news, status, refunded, *anomalies)
    if order.status.layer < REFUND_LAYER or refunded > order.refunded_amount:
        return _move(order, news, status, refunded, *anomalies)
    return _stale(order, *anomalies)


def _late_success(order: Facts, news: News) -> Anomaly:
    detail = {
        "canceled_at": order.status_at.isoformat() if order.status_at else None,
        "status": str(news.status),
        "provider_payment_id": news.provider_payment_id,
    }
    return Anomaly(AnomalyKind.LATE_SUCCESS, detail)
