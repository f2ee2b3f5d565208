"""Stripe catch-up: read each account's events feed from the stored cursor (DESIGN.md §6 step 4).

Status queries only see orders that are candidates; the feed also carries what happened to
the others (a refund of a paid order whose `charge.refunded` webhook was lost). Every event goes
through the same `ledger.apply` as a webhook (source `catch_up`), so the overlap the adapter
re-reads before the cursor is absorbed by dedupe. The cursor moves only after its events are
applied, and never in a dry run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
import httpx

from providers.base import PaymentEvent
from providers.gateway import Connected, EventsFeed
from reconciler.limits import Limits, accounts_of
from reconciler.verdict import moved
from service import ledger, runs
from service.db import UNAVAILABLE_ERRORS
from service.model import Source
from service.runs import FindingKind, ReconcileRun

log = logging.getLogger(__name__)
OUR_FAILURES: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)


class _Repair:
    def __init__(self, event: PaymentEvent, before: str) -> None:
        self.event = event
        self.before = before
        self.after = before


async def catch_up_all(
    pool: asyncpg.Pool,
    run: ReconcileRun,
    gateways: Mapping[str, Connected],
    limits: Limits,
    http: httpx.AsyncClient,
) -> dict[str, dict[str, Any]]:
    """Catch up every account of every gateway that has a feed; per account: events, applied, or error."""
    summary: dict[str, dict[str, Any]] = {}
    for name, gateway in gateways.items():
        if gateway.events is None:
            continue
        for account in accounts_of(gateway):
            key = f"{name}/{account.account}"
            try:
                summary[key] = await catch_up_account(pool, run, name, account.account, gateway.events, limits, http)
            except OUR_FAILURES:
                raise  # our database failed, not the feed: the run fails
            except Exception as exc:  # the feed failed: the run is partial, the cursor stays
                log.warning("run %s: %s catch-up failed: %s", run.id, key, exc)
                summary[key] = {"error": str(exc) or type(exc).__name__}
    return summary


async def catch_up_account(
    pool: asyncpg.Pool,
    run: ReconcileRun,
    provider: str,
    account: str,
    feed: EventsFeed,
    limits: Limits,
    http: httpx.AsyncClient,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        cursor = await runs.get_cursor(conn, provider, account)
    events, next_cursor = await limits.for_account(provider, account).call(lambda: feed.catch_up(account, cursor, http))
    outcomes: dict[str, int] = {}
    repairs: dict[str, _Repair] = {}  # order id → first and last state: one finding per order
    for event in events:
        outcome = await ledger.apply(pool, event, Source.CATCH_UP, dry_run=run.dry_run)
        outcomes[outcome.kind.value] = outcomes.get(outcome.kind.value, 0) + 1
        if moved(outcome) and outcome.order_id and outcome.before and outcome.after:
            repair = repairs.setdefault(outcome.order_id, _Repair(event, outcome.before.status.value))
            repair.event, repair.after = event, outcome.after.status.value
    recorded = 0
    async with pool.acquire() as conn, conn.transaction():
        for order_id, repair in repairs.items():
            verb = "would repair" if run.dry_run else "repaired"
            recorded += await runs.record_finding(
                conn,
                run.id,
                order_id=order_id,
                provider=provider,
                account=account,
                kind=FindingKind.REPAIRED,
                from_status=repair.before,
                to_status=repair.after,
                gateway_status=repair.event.status.value,
                detail=f"{verb} from the {provider} events feed ({repair.event.dedupe_key})",
            )
        if next_cursor is not None and not run.dry_run:
            await runs.save_cursor(conn, provider, account, next_cursor)
    return {"events": len(events), "outcomes": outcomes, "repaired": recorded, "cursor": next_cursor}
