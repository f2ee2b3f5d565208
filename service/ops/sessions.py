"""The `ops_sessions` table: a browser signed in to the ops console with an API key.

The cookie holds a random token (256 bits); only its SHA-256 is stored, as for API keys. A
session is only as good as its key: every lookup joins `api_keys`, so revoking the key ends its
sessions at once, and a session ends after `LIFETIME` whatever its use.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import msgspec

from service.apikeys import ApiKey
from service.db import Conn

LIFETIME = timedelta(hours=12)


class Session(msgspec.Struct, frozen=True, kw_only=True):
    key: ApiKey
    csrf_token: str  # every form of this session echoes it


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(conn: Conn, key: ApiKey) -> str:
    """A new session for `key`; returns the token for the cookie (shown once, never stored)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        """insert into ops_sessions (token_hash, api_key_id, csrf_token, expires_at)
           values ($1, $2, $3, now() + $4::interval)""",
        _hash(token),
        key.id,
        secrets.token_urlsafe(32),
        LIFETIME,
    )
    # Housekeeping on sign-in, not per request: ended sessions are of no use to anyone.
    await conn.execute("delete from ops_sessions where expires_at < now() - interval '1 day'")
    return token


_FIND = """
select k.id, k.name, k.prefix, k.scopes, k.created_at, k.last_used_at, k.revoked_at, s.csrf_token
from ops_sessions s join api_keys k on k.id = s.api_key_id
where s.token_hash = $1 and s.expires_at > now() and k.revoked_at is null
"""


async def find(conn: Conn, token: str) -> Session | None:
    """The live session of `token`, or None (unknown, expired, or its key revoked)."""
    if not token or len(token) > 100:
        return None
    row = await conn.fetchrow(_FIND, _hash(token))
    if row is None:
        return None
    # At most one write a minute per session, not one per page.
    await conn.execute(
        """update ops_sessions set last_seen_at = now()
           where token_hash = $1 and last_seen_at < now() - interval '1 minute'""",
        _hash(token),
    )
    key = msgspec.convert({k: row[k] for k in row.keys() if k != "csrf_token"}, ApiKey)  # noqa: SIM118
    return Session(key=key, csrf_token=row["csrf_token"])


async def close(conn: Conn, token: str) -> None:
    await conn.execute("delete from ops_sessions where token_hash = $1", _hash(token))
