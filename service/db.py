"""The asyncpg pool: one per process, with JSON codecs wired to msgspec (stack.md §3.5)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

log = logging.getLogger(__name__)

# What query helpers take: a bare connection (migrations, tests) or the proxy `pool.acquire()`
# hands out — both offer fetch/execute/transaction; asyncpg-stubs types them apart.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
Isolation: TypeAlias = Literal["read_committed", "read_uncommitted", "repeatable_read", "serializable"]

# What a PostgreSQL bigint holds: every id and amount we store. A value outside it reaches the
# server as an overflow, so input is bounded by these before it gets there.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# asyncpg raises these when the server is gone or refuses us; the webhook path answers
# "retry later" on them instead of a 500 (DESIGN.md §4). InternalClientError ("cannot switch to
# state 15; another operation (2) is in progress") is what asyncpg raises on the next use of a
# pooled connection whose backend was terminated under it: a connectivity blip, not a bug of ours.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def is_unavailable(error: BaseException) -> bool:
    """True when `error` says the database is unreachable (or a connection to it broke), not that we erred."""
    return isinstance(error, UNAVAILABLE_ERRORS)


class DatabaseReachability:
    """One log line when PostgreSQL goes, one when it is back — never a traceback per reconnect attempt.

    asyncpg's pool retries its connection floor on its own and logs "Failed to restore the pool
    connection floor" with a traceback on every failed attempt; `_FloorFilter` turns those into
    `lost()`, and `init_connection` (run on every new connection) into `back()`.
    """

    def __init__(self) -> None:
        self.down = False

    def lost(self, reason: str) -> None:
        if not self.down:
            self.down = True
            log.warning("PostgreSQL unreachable (%s); retrying in the background", reason)

    def back(self) -> None:
        if self.down:
            self.down = False
            log.warning("PostgreSQL reachable again")


REACHABILITY = DatabaseReachability()


class _FloorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Failed to restore the pool connection floor"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        REACHABILITY.lost(f"{type(error).__name__}: {error}" if error else "cannot connect")
        return False


logging.getLogger("asyncpg.pool").addFilter(_FloorFilter())


async def init_connection(conn: asyncpg.Connection) -> None:
    REACHABILITY.back()  # a new connection was just made: the server answers
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


class _Acquire(PoolAcquireContext):
    """`pool.acquire()` that drops a connection which failed as "unavailable" instead of pooling it again.

    After its backend was terminated, a connection can look idle yet be unusable (asyncpg's
    InternalClientError above); returned to the pool, it would fail the next request too. Any
    such error inside the block terminates the connection, and the pool opens a fresh one.
    """

    __slots__ = ()

    async def __aexit__(self, *exc: object) -> None:
        proxy, error = self.connection, exc[1] if len(exc) > 1 else None
        if isinstance(error, BaseException) and is_unavailable(error) and isinstance(proxy, PoolConnectionProxy):
            proxy._holder.terminate()  # detaches the proxy; release() below then has nothing to do
        await super().__aexit__(*exc)


class Pool(asyncpg.Pool):
    """asyncpg's pool whose `acquire()` evicts broken connections (see `_Acquire`)."""

    __slots__ = ()

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return _Acquire(self, timeout)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = Pool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300,
        loop=None,
        init=init_connection,
        reset=_release,
        command_timeout=30,
        timeout=5,  # connecting: fail fast so a dead database becomes a 503, not a hung webhook
        server_settings={"timezone": "UTC", "application_name": "payrecon"},
    )
    await pool
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
