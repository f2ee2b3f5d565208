"""The ledger's domain types: what an order is and what applying an event did to it.

These are also the JSON contract of the REST API (DESIGN.md §5).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from providers.base import OutcomeKind, PaymentStatus


class Source(StrEnum):
    """Who brought an event to the ledger. Every path goes through the same `apply`."""

    WEBHOOK = "webhook"
    RECONCILER = "reconciler"
    CATCH_UP = "catch_up"  # Stripe events-list catch-up
    MANUAL = "manual"


class OrderReference(msgspec.Struct, frozen=True, kw_only=True):
    """One gateway reference of an order: one per payment attempt."""

    provider: str
    account: str
    reference: str
    provider_data: dict[str, Any] = {}
    added_at: datetime


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
    event_id: int | None = None  # the payment_events row; None for a duplicate
    before: OrderState | None = None
    after: OrderState | None = None
    anomalies: list[str] = []  # kinds recorded by this apply
