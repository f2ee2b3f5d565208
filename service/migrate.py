"""Forward-only SQL migrations: files in `migrations/`, applied in name order.

Each file runs in its own transaction together with its `schema_migrations` row, and the
whole run holds a PostgreSQL advisory lock, so two processes starting at once apply each
file exactly once (the second waits, then finds nothing left to do).
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

import msgspec

from service.db import Conn

# Any constant unique to this application: pg_advisory_lock takes one bigint.
MIGRATION_LOCK_KEY = 0x7061_7972_6563_6F6E  # "payrecon"


class MigrationError(Exception):
    """The database schema and the migration files disagree."""


class Migration(msgspec.Struct, frozen=True):
    version: str  # the file name without ".sql", e.g. "0001_schema"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    folder = files("migrations")
    return sorted(
        (
            Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
            for entry in folder.iterdir()
            if entry.name.endswith(".sql") and entry.name[:4].isdigit()
        ),
        key=lambda m: m.version,
    )


_CREATE_TABLE = """
create table if not exists schema_migrations (
    version    text primary key,
    checksum   text not null,
    applied_at timestamptz not null default now()
)"""


async def _applied(conn: Conn) -> dict[str, str]:
    exists = await conn.fetchval("select to_regclass('schema_migrations') is not null")
    if not exists:
        return {}
    return {r["version"]: r["checksum"] for r in await conn.fetch("select version, checksum from schema_migrations")}


def _check_edits(migrations: list[Migration], applied: dict[str, str]) -> None:
    for m in migrations:
        if m.version in applied and applied[m.version] != m.checksum:
            raise MigrationError(f"migration {m.version}.sql was edited after it was applied; write a new one instead")
    unknown = sorted(set(applied) - {m.version for m in migrations})
    if unknown:
        raise MigrationError(f"the database has migrations this code does not know: {', '.join(unknown)}")


async def migrate(conn: Conn) -> list[str]:
    """Apply what is missing; return the versions applied now."""
    migrations = available()
    await conn.execute("select pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = await _applied(conn)
        _check_edits(migrations, applied)
        done = []
        for m in migrations:
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)  # no arguments: simple protocol, several statements allowed
                await conn.execute(
                    "insert into schema_migrations (version, checksum) values ($1, $2)", m.version, m.checksum
                )
            done.append(m.version)
        return done
    finally:
        await conn.execute("select pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def pending(conn: Conn) -> list[str]:
    """Versions not applied yet (raises MigrationError when the database is ahead or edited)."""
    migrations = available()
    applied = await _applied(conn)
    _check_edits(migrations, applied)
    return [m.version for m in migrations if m.version not in applied]
