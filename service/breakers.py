"""The `gateway_breakers` table: each gateway account's circuit breaker as the reconciler last saw it.

The breaker itself lives in a reconciler process for one run (reconciler/limits.py). The
reconciler publishes it here — when it opens, and for every account a run asked when that run's
checks end — so the ops console and `/metrics` (which run in `serve` and must not import the
reconciler) can show it, whichever worker holds it. A later run that gets answers closes it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.db import Conn


class BreakerState(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    account: str
    open: bool
    failures: int  # consecutive failed queries when it was published
    last_error: str | None
    run_id: int | None
    changed_at: datetime  # when it last went open or closed
    updated_at: datetime


# `changed_at` moves only when the state flips, so "open since" survives republishing.
_PUBLISH = """
insert into gateway_breakers (provider, account, open, failures, last_error, run_id)
values ($1, $2, $3, $4, $5, $6)
on conflict (provider, account) do update set
    changed_at = case when gateway_breakers.open = excluded.open then gateway_breakers.changed_at else now() end,
    open = excluded.open, failures = excluded.failures, last_error = excluded.last_error,
    run_id = excluded.run_id, updated_at = now()
"""


async def publish(
    conn: Conn,
    provider: str,
    account: str,
    *,
    open: bool,
    failures: int,
    last_error: str | None,
    run_id: int | None,
) -> None:
    await conn.execute(_PUBLISH, provider, account, open, failures, (last_error or "")[:1000] or None, run_id)


async def states(conn: Conn) -> list[BreakerState]:
    rows = await conn.fetch(
        """select provider, account, open, failures, last_error, run_id, changed_at, updated_at
           from gateway_breakers order by provider, account"""
    )
    return msgspec.convert(rows, list[BreakerState])
