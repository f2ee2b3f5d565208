"""The `rejected_deliveries` table: webhook deliveries we refused or held, kept for ops and replay.

Two kinds of row:
- a **refusal** (verification failed, unknown gateway, too large, not allowed): the request is
  untrusted, so how many of them are stored is bounded by the refusal sampler (service/refusals.py);
- a **held** delivery (`verified`): the signature checked out but the delivery cannot be parsed or
  stored as sent. It is always stored, one row per distinct request however often the gateway
  redelivers it, because it may be money: ops replay it once the adapter is fixed (service/replay.py).

Both keep the raw request (method, query string, the headers that matter, body bytes), which is
what replay re-verifies and re-parses; `body_sha256` matches a row against the gateway's own
delivery log.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import asyncpg
import msgspec

from service.db import Conn
from service.pages import cut, decode_cursor
from service.storable import escape_text

# Column bounds: the provider and account come from the URL, i.e. from whoever sent the request.
_MAX_NAME = 128
_MAX_DETAIL = 2000
_MAX_ADDR = 256
_MAX_QUERY = 16 * 1024


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """One refused or held delivery, as it will be stored."""

    provider: str
    account: str | None
    reason: str  # a slug: signature, replay, malformed, unknown_account, unknown_provider, body_too_large…
    detail: str | None
    remote_addr: str | None  # the client address (service/client_address.py), not a proxy's
    body_sha256: str
    body_size: int
    received_at: datetime
    verified: bool = False  # held: signed, but not processable as sent
    method: str | None = None
    query_string: str | None = None
    raw_headers: dict[str, str] | None = None
    raw_body: bytes | None = None  # None: not kept (older rows)

    @property
    def held_key(self) -> str | None:
        """What makes a held delivery "the same again": its bytes, not its (per-attempt) signature header."""
        if not self.verified:
            return None
        material = (self.query_string or "").encode() + b"\n" + (self.raw_body or b"")
        return hashlib.sha256(material).hexdigest()


class RejectedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A row as the API lists it (the body itself only in `RejectedDeliveryDetail`)."""

    id: int
    provider: str
    account: str | None
    reason: str
    detail: str | None
    remote_addr: str | None
    verified: bool
    method: str | None
    body_sha256: str
    body_size: int
    has_body: bool  # false: only the hash was kept (older rows); nothing to replay
    deliveries: int  # a held delivery the gateway sent again counts here, not as a new row
    received_at: datetime
    last_received_at: datetime | None
    replayed_at: datetime | None
    replay_outcome: str | None


class RejectedDeliveryDetail(RejectedDelivery, frozen=True, kw_only=True):
    query_string: str | None
    raw_headers: dict[str, str] | None
    raw_body: bytes | None  # base64 in JSON


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
    verified: bool = False,
    method: str | None = None,
    query_string: str | None = None,
    headers: dict[str, str] | None = None,
    keep_body: bool = True,
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
        verified=verified,
        method=_clip(method, 16),
        # a held delivery keeps its whole query (VNPay signs it); a refusal's is clipped like the rest
        query_string=query_string if verified else _clip(query_string, _MAX_QUERY),
        raw_headers={escape_text(k): escape_text(v) for k, v in headers.items()} if headers is not None else None,
        raw_body=body if keep_body else None,
    )


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    # PostgreSQL text cannot hold NUL; a URL or an error message quoting the body might.
    return escape_text(text)[:limit]


_INSERT = """
insert into rejected_deliveries (provider, account, reason, detail, remote_addr, body_sha256, body_size, received_at,
                                 verified, method, query_string, raw_headers, raw_body, held_key)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
-- a held request sent again is the same row: counted, its latest refusal reason kept
on conflict (provider, held_key) where held_key is not null do update
    set deliveries = rejected_deliveries.deliveries + 1,
        last_received_at = excluded.received_at,
        reason = excluded.reason,
        detail = excluded.detail
returning id
"""


async def record(pool: asyncpg.Pool, entry: Rejection, *, wait: float) -> int:
    """Insert (or, for a held request seen before, count) one row; returns its id.

    Waits at most `wait` seconds for a connection and as long for the insert. Raises the
    driver's error when the database is unreachable; the caller decides what the gateway hears.
    """
    async with pool.acquire(timeout=wait) as conn:
        row_id: int = await conn.fetchval(
            _INSERT,
            entry.provider,
            entry.account,
            entry.reason,
            entry.detail,
            entry.remote_addr,
            entry.body_sha256,
            entry.body_size,
            entry.received_at,
            entry.verified,
            entry.method,
            entry.query_string,
            entry.raw_headers,
            entry.raw_body,
            entry.held_key,
            timeout=wait,
        )
    return row_id


_LISTED = """id, provider, account, reason, detail, remote_addr, verified, method, body_sha256, body_size,
             raw_body is not null as has_body, deliveries, received_at, last_received_at, replayed_at, replay_outcome"""


async def list_rejected(
    conn: Conn,
    *,
    limit: int,
    provider: str | None = None,
    reason: str | None = None,
    verified: bool | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
) -> tuple[list[RejectedDelivery], str | None]:
    """Rows oldest first from `since`, keyset-paginated on id (the cursor shape of the other lists)."""
    _, after_id = decode_cursor(cursor, int)
    rows = await conn.fetch(
        f"""select {_LISTED} from rejected_deliveries
            where ($1::text is null or provider = $1) and ($2::text is null or reason = $2)
              and ($3::boolean is null or verified = $3) and ($4::timestamptz is null or received_at >= $4)
              and ($5::bigint is null or id > $5)
            order by id limit $6""",
        provider,
        reason,
        verified,
        since,
        after_id,
        limit + 1,
    )
    return cut(msgspec.convert(rows, list[RejectedDelivery]), limit, lambda r: (r.received_at, r.id))


async def get(conn: Conn, rejected_id: int) -> RejectedDeliveryDetail | None:
    row = await conn.fetchrow(
        f"select {_LISTED}, query_string, raw_headers, raw_body from rejected_deliveries where id = $1", rejected_id
    )
    return None if row is None else msgspec.convert(row, RejectedDeliveryDetail)


async def mark_replayed(conn: Conn, rejected_id: int, outcome: str) -> datetime:
    """Note a replay that got through (the events it carried are now in the ledger)."""
    at: datetime = await conn.fetchval(
        "update rejected_deliveries set replayed_at = now(), replay_outcome = $2 where id = $1 returning replayed_at",
        rejected_id,
        outcome[:_MAX_DETAIL],
    )
    return at
