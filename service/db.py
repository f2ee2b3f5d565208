"""The asyncpg pool: one per process, with JSON codecs wired to msgspec (stack.md §3.5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

# What query helpers take: a bare connection (migrations, tests) or the proxy `pool.acquire()`
# hands out — both offer fetch/execute/transaction; asyncpg-stubs types them apart.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
Isolation: TypeAlias = Literal["read_committed", "read_uncommitted", "repeatable_read", "serializable"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# asyncpg raises these when the server is gone or refuses us; the webhook path answers
# "retry later" on them instead of a 500 (DESIGN.md §4).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


async def init_connection(conn: asyncpg.Connection) -> None:
    # Binary jsonb: a version byte 0x01 then the JSON text. Text format would break COPY.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="binary",
        encoder=lambda value: b"\x01" + _encode(value),
        decoder=lambda data: _decode(data[1:]),
    )
    await conn.set_type_codec("json", schema="pg_catalog", format="binary", encoder=_encode, decoder=_decode)


async def _release(conn: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: nothing more than asyncpg always does.

    asyncpg itself rolls back a transaction left open and drops listeners before this runs. Its
    default reset then sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`:
    one more round trip per acquire, a third of a status read's. Nothing here leaves that state
    on a connection: advisory locks are transaction-scoped (the migrations' session lock is
    released in a `finally`), no SET outside a transaction, no LISTEN, no cursors WITH HOLD.
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_release,
        command_timeout=30,
        max_inactive_connection_lifetime=300,
        timeout=5,  # connecting: fail fast so a dead database becomes a 503, not a hung webhook
        server_settings={"timezone": "UTC", "application_name": "payrecon"},
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(
    pool: asyncpg.Pool,
    *,
    isolation: Isolation | None = None,
    readonly: bool = False,
    deferrable: bool = False,
) -> AsyncIterator[PoolConnectionProxy]:
    """A connection in one transaction: committed on normal exit, rolled back on error."""
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation=isolation, readonly=readonly, deferrable=deferrable),
    ):
        yield conn
