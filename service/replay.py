"""Replay a stored rejected or held delivery through today's adapter and the ledger.

A held delivery (signed, but unreadable by the adapter of its day) or a refusal whose raw
request was kept (a signature that failed under a stale secret) is rebuilt exactly as it
arrived — method, query string, the kept headers, body bytes, the account its URL named and
the time it was received — then verified again (never trusted because it is ours), parsed,
and applied with source `manual`. The ledger's dedupe makes a replay idempotent: replaying
twice, or replaying what the gateway later redelivered, finds duplicates.

Used by `payrecon replay` and `POST /v1/rejected-deliveries/{id}/replay` (and the ops console).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg
import msgspec

from providers.base import GatewayAdapter, OutcomeKind, WebhookRequest
from providers.errors import PayreconError
from providers.gateway import Connected
from service import ledger, rejections
from service.failures import retry_can_cure
from service.ingest import raw_delivery, reason_of
from service.model import Source
from service.storable import storable


class UnknownRejectionError(PayreconError):
    """No rejected_deliveries row has this id."""


class NotReplayableError(PayreconError):
    """The row cannot be replayed: only its hash was kept, or its gateway is not configured here."""


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    rejected_id: int
    provider: str
    dry_run: bool
    ok: bool  # verified, parsed and (unless dry_run) applied
    outcomes: list[OutcomeKind] = []  # the ledger's outcome per event; [] when the delivery carries none we track
    error: str | None = None  # why it still cannot be processed: "<reason>: <detail>"
    replayed_at: datetime | None = None  # set when a real replay got through


async def replay(
    pool: asyncpg.Pool, gateways: Mapping[str, Connected], rejected_id: int, *, dry_run: bool = False
) -> ReplayResult:
    """Replay rejected delivery `rejected_id`; `dry_run` goes through the ledger and rolls back.

    Raises UnknownRejectionError, NotReplayableError, and the driver's errors when the database is
    unavailable. A delivery that still fails verification, parsing or storage is a result with
    `ok=False`, not an error: that is an answer ops asked for.
    """
    async with pool.acquire() as conn:
        row = await rejections.get(conn, rejected_id)
    if row is None:
        raise UnknownRejectionError(f"no rejected delivery {rejected_id}")
    if row.raw_body is None:
        raise NotReplayableError(
            f"rejected delivery {rejected_id} kept only its body hash (sha256 {row.body_sha256}); nothing to replay"
        )
    gateway = gateways.get(row.provider)
    adapter: GatewayAdapter | None = None if gateway is None else gateway.adapter
    if adapter is None:
        raise NotReplayableError(
            f"rejected delivery {rejected_id} is for gateway {row.provider!r}: not in PAYRECON_GATEWAYS"
        )
    request = WebhookRequest(
        method=row.method or "POST",
        body=row.raw_body,
        headers=row.raw_headers or {},
        query_string=row.query_string or "",
        account=row.account,
        received_at=row.received_at,  # Stripe's replay window is judged as the delivery arrived
        remote_addr=row.remote_addr,
    )
    result = ReplayResult(rejected_id=rejected_id, provider=row.provider, dry_run=dry_run, ok=False)
    try:
        adapter.verify(request)
        events = [storable(event) for event in adapter.parse(request)]
    except Exception as error:  # still not acceptable: say why, as a refusal would
        return msgspec.structs.replace(result, error=f"{reason_of(error)}: {error}")

    raw = raw_delivery(request)
    outcomes: list[OutcomeKind] = []
    try:
        for event in events:
            outcomes.append((await ledger.apply(pool, event, Source.MANUAL, raw=raw, dry_run=dry_run)).kind)
    except Exception as error:
        if retry_can_cure(error):
            raise
        return msgspec.structs.replace(result, outcomes=outcomes, error=f"unstorable: {type(error).__name__}: {error}")
    replayed_at = None
    if not dry_run:
        async with pool.acquire() as conn:
            replayed_at = await rejections.mark_replayed(conn, rejected_id, ",".join(outcomes) or "ignored")
    return msgspec.structs.replace(result, ok=True, outcomes=outcomes, replayed_at=replayed_at)
