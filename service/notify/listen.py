"""`payrecon listen`: watch the outbox and forward each notification, signed, to a local URL (like `stripe listen`).

For local development: no endpoint is registered and no worker is needed. It reads committed
notifications straight from the outbox (those written after it started), prints one line each,
and POSTs the same body and Standard Webhooks headers a registered endpoint would get, signed
with the secret it prints at start (or the one given).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg
import httpx

from service.notify import deliveries
from service.notify.deliveries import Claimed

POLL = 0.5  # seconds between looks at the outbox


async def listen(
    pool: asyncpg.Pool,
    *,
    forward_to: str | None,
    secret: str,
    event_types: frozenset[str],
    echo: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> None:
    """Until `stop` is set: print each new notification and forward it to `forward_to`, if given."""
    async with pool.acquire() as conn:
        cursor = await conn.fetchval("select coalesce(max(id), 0) from notifications")
    async with httpx.AsyncClient() as http:
        while stop is None or not stop.is_set():
            async with pool.acquire() as conn:
                rows = await conn.fetch(deliveries.NOTIFICATIONS + " where n.id > $1 order by n.id limit 100", cursor)
            for row in rows:
                cursor = row["id"]
                if event_types and row["type"] not in event_types:
                    continue
                at = f"{row['created_at']:%Y-%m-%d %H:%M:%S}"
                line = f"{at}  {row['type']:<26} {row['order_id']}  v{row['order_version']}"
                if forward_to is None:
                    echo(line)
                    continue
                claimed = Claimed(
                    id=0,
                    endpoint_id=0,
                    notification_id=row["id"],
                    url=forward_to,
                    payload=deliveries.render(row),
                    tries=0,
                )
                result = await deliveries.send(http, claimed, [secret], now=time.time())
                answer = f"{result.status_code}" if result.status_code is not None else (result.error or "no answer")
                echo(f"{line}  → {answer} ({result.latency_ms} ms)")
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for((stop or asyncio.Event()).wait(), POLL)
