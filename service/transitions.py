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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from providers.base import OutcomeKind, PaymentStatus

S = PaymentStatus

LAYER: dict[PaymentStatus, int] = {
    S.PENDING: 0,
    S.PROCESSING: 1,
    S.AUTHORIZED: 1,
    S.FAILED: 1,
    S.CANCELED: 2,
    S.SUCCEEDED: 3,
    S.PARTIALLY_REFUNDED: 4,
    S.REFUNDED: 4,
}

# Inside layer 1, news of the same instant: the more final reading wins.
TIE_RANK: dict[PaymentStatus, int] = {S.PROCESSING: 0, S.AUTHORIZED: 1, S.FAILED: 2}

PAID_LAYER = 3  # succeeded and above: money moved


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules need to know about an order."""

    amount: int
    currency: str
    status: PaymentStatus = S.PENDING
    status_at: datetime | None = None  # gateway time of the news that set `status`
    refunded_amount: int = 0
    provider_payment_id: str | None = None
    paid_at: datetime | None = None


class News(msgspec.Struct, frozen=True, kw_only=True):
    """What an event says, with its effective gateway time."""

    status: PaymentStatus
    at: datetime
    amount: int
    currency: str
    refunded_amount: int | None = None
    provider_payment_id: str | None = None


class Anomaly(msgspec.Struct, frozen=True):
    kind: str
    detail: dict[str, Any]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    kind: OutcomeKind
    after: Facts  # equal to the input facts unless kind is APPLIED
    anomalies: tuple[Anomaly, ...] = ()

    @property
    def moved(self) -> bool:
        return self.kind is OutcomeKind.APPLIED


def decide(order: Facts, news: News) -> Decision:
    """The verdict on one event for one order."""
    if (news.amount, news.currency) != (order.amount, order.currency):
        # Never mark an order paid for the wrong amount. A captured payment of the wrong
        # amount still needs an ops decision (answering VNPay 04 does not undo it).
        detail = {
            "expected": {"amount": order.amount, "currency": order.currency},
            "got": {"amount": news.amount, "currency": news.currency},
            "status": str(news.status),
            "money_moved": LAYER[news.status] >= PAID_LAYER,
        }
        return Decision(kind=OutcomeKind.AMOUNT_MISMATCH, after=order, anomalies=(Anomaly("amount_mismatch", detail),))
    layer, current = LAYER[news.status], LAYER[order.status]
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
    paid = LAYER[status] >= PAID_LAYER
    after = msgspec.structs.replace(
        order,
        status=status,
        status_at=news.at,
        refunded_amount=order.refunded_amount if refunded is None else refunded,
        provider_payment_id=order.provider_payment_id or (news.provider_payment_id if paid else None),
        paid_at=order.paid_at or (news.at if paid else None),
    )
    return Decision(kind=OutcomeKind.APPLIED, after=after, anomalies=extra)


def _retry_cycle(order: Facts, news: News) -> Decision:
    if LAYER[order.status] == 0 or order.status_at is None:
        return _move(order, news, news.status)
    # Newer news wins; at the same instant the more final reading (failed > authorized > processing).
    if (news.at, TIE_RANK[news.status]) > (order.status_at, TIE_RANK[order.status]):
        return _move(order, news, news.status)
    return _stale(order)


def _success(order: Facts, news: News) -> Decision:
    current = LAYER[order.status]
    if current < PAID_LAYER:
        late = () if order.status is not S.CANCELED else (_late_success(order, news),)
        return _move(order, news, S.SUCCEEDED, None, *late)
    other = news.provider_payment_id
    if other is not None and order.provider_payment_id is not None and other != order.provider_payment_id:
        # Two attempts both charged the customer: the order stays paid by the first; ops refund one.
        detail = {"paid_by": order.provider_payment_id, "provider_payment_id": other, "amount": news.amount}
        return _stale(order, Anomaly("double_payment", detail))
    return _stale(order)


def _refund(order: Facts, news: News) -> Decision:
    claimed = news.refunded_amount
    if claimed is None:  # no amount given: `refunded` means all of it; a partial one we cannot size
        claimed = order.amount if news.status is S.REFUNDED else order.refunded_amount
    refunded = min(claimed, order.amount)
    status = S.REFUNDED if refunded >= order.amount else S.PARTIALLY_REFUNDED
    anomalies: list[Anomaly] = []
    if claimed > order.amount:
        detail = {"refunded_amount": claimed, "amount": order.amount, "currency": order.currency}
        anomalies.append(Anomaly("refund_exceeds_payment", detail))
    current = LAYER[order.status]
    if current < PAID_LAYER:
        # A refund proves a payment we never heard of (or heard of after giving up).
        if order.status is S.CANCELED:
            anomalies.insert(0, _late_success(order, news))
        else:
            detail = {"from_status": str(order.status), "refund_status": str(news.status)}
            anomalies.insert(0, Anomaly("missed_success", detail))
        return _move(order, news, status, refunded, *anomalies)
    if current < LAYER[S.REFUNDED] or refunded > order.refunded_amount:
        return _move(order, news, status, refunded, *anomalies)
    return _stale(order, *anomalies)


def _late_success(order: Facts, news: News) -> Anomaly:
    detail = {
        "canceled_at": order.status_at.isoformat() if order.status_at else None,
        "status": str(news.status),
        "provider_payment_id": news.provider_payment_id,
    }
    return Anomaly("late_success", detail)
