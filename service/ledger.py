"""The ledger: the only code that writes `orders` (DESIGN.md §3). Being built — signatures are the contract."""

from __future__ import annotations

from typing import Any

import asyncpg

from providers.base import PaymentEvent
from service.model import Order, Outcome, RawDelivery, Source


async def apply(
    pool: asyncpg.Pool,
    event: PaymentEvent,
    source: Source,
    *,
    raw: RawDelivery | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Apply one event in one transaction: dedupe insert, row lock, amount check, transition, audit.

    `dry_run` does all of it and rolls back, so the reconciler can report what it would repair.
    Raises asyncpg / OSError errors when the database is unreachable (the caller answers "retry").
    """
    raise NotImplementedError


async def record_anomaly(
    conn: asyncpg.Connection, kind: str, *, order_id: str | None, event_id: int | None, detail: dict[str, Any]
) -> bool:
    """Record an anomaly once per (kind, order, event); True when it is new."""
    raise NotImplementedError


async def get_order(conn: asyncpg.Connection, order_id: str) -> Order | None:
    raise NotImplementedError
