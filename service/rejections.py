"""The `rejected_deliveries` table: webhook deliveries we refused, kept for ops and forensics.

The untrusted body is never stored — only its SHA-256 and size — so a flood of junk cannot
fill the database with attacker-chosen bytes, and a real delivery that was wrongly refused
can still be matched against the gateway's own delivery log by its hash.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import asyncpg
import msgspec

from service.db import Conn

# Column bounds: the provider and account come from the URL, i.e. from whoever sent the request.
_MAX_NAME = 128
_MAX_DETAIL = 2000
_MAX_ADDR = 256


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """One refused delivery, as it will be stored."""

    provider: str
    account: str | None
    reason: str  # a slug: signature, replay, malformed, unknown_account, unknown_provider, body_too_large…
    detail: str | None
    remote_addr: str | None
    body_sha256: str
    body_size: int
    received_at: datetime


class RejectedDelivery(Rejection, frozen=True, kw_only=True):
    id: int


def rejection(
    *,
    provider: str,
    account: str | None,
    reason: str,
    detail: str | None,
    remote_addr: str | None,
    body: bytes,
    body_size: int | None = None,
    received_at: datetime,
) -> Rejection:
    """A Rejection for `body`; `body_size` overrides len(body) when only a prefix was read (too large)."""
    return Rejection(
        provider=_clip(provider, _MAX_NAME) or "?",
        account=_clip(account, _MAX_NAME),
        reason=reason,
        detail=_clip(detail, _MAX_DETAIL),
        remote_addr=_clip(remote_addr, _MAX_ADDR),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_size=len(body) if body_size is None else body_size,
        received_at=received_at,
    )


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    # PostgreSQL text cannot hold NUL; a URL or an error message quoting the body might.
    return text.replace("\x00", "\\x00")[:limit]


_INSERT = """
insert into rejected_deliveries (provider, account, reason, detail, remote_addr, body_sha256, body_size, received_at)
values ($1, $2, $3, $4, $5, $6, $7, $8)
"""


async def record(pool: asyncpg.Pool, entry: Rejection, *, wait: float) -> None:
    """Insert one row; waits at most `wait` seconds for a connection and as long for the insert.

    Raises the driver's error when the database is unreachable; the caller decides that a
    refusal still gets its 4xx even if we could not note it.
    """
    async with pool.acquire(timeout=wait) as conn:
        await conn.execute(
            _INSERT,
            entry.provider,
            entry.account,
            entry.reason,
            entry.detail,
            entry.remote_addr,
            entry.body_sha256,
            entry.body_size,
            entry.received_at,
            timeout=wait,
        )


_RECENT = """
select id, provider, account, reason, detail, remote_addr, body_sha256, body_size, received_at
from rejected_deliveries
where ($1::text is null or provider = $1)
order by id desc
limit $2
"""


async def recent(conn: Conn, *, provider: str | None = None, limit: int = 100) -> list[RejectedDelivery]:
    """The newest refused deliveries first, optionally of one gateway."""
    rows = await conn.fetch(_RECENT, provider, limit)
    return msgspec.convert(rows, list[RejectedDelivery])
