"""API keys: created once and shown once, stored as a SHA-256 hash, looked up by a public prefix.

A key reads `prk_<8 hex>_<secret>`; its first 12 characters (`prk_<8 hex>`) are the prefix,
unique and shown in listings so a key can be named and revoked without being revealed. The
secret part carries 256 random bits, so a plain SHA-256 (no slow KDF) is enough: there is
no password to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime

import asyncpg
import msgspec

from service.db import Conn

SCOPES = (
    "orders:read",
    "orders:write",
    "recon:read",
    "recon:run",
    "recon:write",
    "webhooks:read",
    "webhooks:write",
)  # migrations/0060 too
KEY_PREFIX = "prk_"
_PREFIX_LEN = len(KEY_PREFIX) + 8

_COLUMNS = "id, name, prefix, scopes, created_at, last_used_at, revoked_at"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as listings show it: never the key itself."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


class NewKey(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # shown once, at creation
    api_key: ApiKey


class ApiKeyError(ValueError):
    """A key cannot be created or found as asked."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _convert(row: asyncpg.Record) -> ApiKey:
    return msgspec.convert(dict(row), ApiKey)


async def create(conn: Conn, name: str, scopes: list[str]) -> NewKey:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ApiKeyError(f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(unknown) or 'none'})")
    if not 1 <= len(name) <= 128:
        raise ApiKeyError("a key's name is 1 to 128 characters")
    prefix = KEY_PREFIX + secrets.token_hex(4)
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = await conn.fetchrow(
        f"insert into api_keys (name, prefix, key_hash, scopes) values ($1, $2, $3, $4) returning {_COLUMNS}",
        name,
        prefix,
        hash_key(key),
        sorted(set(scopes)),
    )
    assert row is not None
    return NewKey(key=key, api_key=_convert(row))


async def list_keys(conn: Conn, *, include_revoked: bool = True) -> list[ApiKey]:
    rows = await conn.fetch(
        f"select {_COLUMNS} from api_keys where $1 or revoked_at is null order by id", include_revoked
    )
    return [_convert(r) for r in rows]


async def revoke(conn: Conn, prefix_or_id: str) -> ApiKey:
    """Revoke a key named by its prefix or id; revoking twice keeps the first time."""
    key_id = int(prefix_or_id) if prefix_or_id.isdigit() else None
    row = await conn.fetchrow(
        f"""update api_keys set revoked_at = coalesce(revoked_at, now())
            where prefix = $1 or id = $2 returning {_COLUMNS}""",
        prefix_or_id,
        key_id,
    )
    if row is None:
        raise ApiKeyError(f"no API key with prefix or id {prefix_or_id!r}")
    return _convert(row)


async def authenticate(conn: Conn | asyncpg.Pool, key: str) -> ApiKey | None:
    """The live key `key` is, or None (unknown, wrong secret or revoked)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    # One round trip on most requests: whether last_used_at is due is read with the key.
    row = await conn.fetchrow(
        f"""select {_COLUMNS}, key_hash,
                   last_used_at is null or last_used_at < now() - interval '1 minute' as use_due
            from api_keys where prefix = $1 and revoked_at is null""",
        key[:_PREFIX_LEN],
    )
    if row is None or not hmac.compare_digest(row["key_hash"], hash_key(key)):
        return None
    if row["use_due"]:
        # Bookkeeping for `apikey list`; at most one write a minute per key, not one per request.
        await conn.execute(
            """update api_keys set last_used_at = now()
               where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')""",
            row["id"],
        )
    return msgspec.convert({k: row[k] for k in row.keys() if k not in ("key_hash", "use_due")}, ApiKey)  # noqa: SIM118


class KeyCache:
    """Keys this process verified in the last `ttl` seconds, by the SHA-256 of the whole key.

    Every keyed request would otherwise pay a round trip for its key before its own work: for a
    status read that is half its database cost (bench/reads.py). The price is that a revoked key
    keeps working for at most `ttl` seconds in a process that verified it just before
    (PAYRECON_APIKEY_CACHE_SECONDS; 0 turns the cache off). Only keys that verified are kept, so a
    wrong or revoked key is looked up every time, and the entries are bounded by `size`.
    """

    def __init__(self, ttl: float, *, size: int = 1024) -> None:
        self.ttl, self.size = ttl, size
        self._entries: dict[str, tuple[float, ApiKey]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def authenticate(self, conn: Conn | asyncpg.Pool, key: str) -> ApiKey | None:
        if self.ttl <= 0:
            return await authenticate(conn, key)
        digest, now = hash_key(key), time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        found = await authenticate(conn, key)
        if found is None:
            self._entries.pop(digest, None)
            return None
        if len(self._entries) >= self.size:
            # expired entries first; if every entry is live, start over rather than track recency
            self._entries = {d: e for d, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.size:
                self._entries.clear()
        self._entries[digest] = (now + self.ttl, found)
        return found
