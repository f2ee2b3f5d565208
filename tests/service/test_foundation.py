"""Foundation: settings, migrations under an advisory lock, health probes."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from service import migrate
from service.app import SchemaBehindError, create_app
from service.embedded import with_database
from service.serving import serving
from service.settings import SettingsError, load_settings


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert settings.database_url is None  # → embedded server
    assert settings.port == 8000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PAYRECON_PORT": "eighty"}, "PAYRECON_PORT"),
        ({"PAYRECON_PORT": "70000"}, "PAYRECON_PORT"),
        ({"PAYRECON_RECONCILE_EVERY": "-1"}, "PAYRECON_RECONCILE_EVERY"),
        ({"PAYRECON_DATABSE_URL": "postgresql://x"}, "PAYRECON_DATABSE_URL"),
        ({"PAYRECON_REDIS_ULR": "redis://x"}, "PAYRECON_REDIS_ULR"),
    ],
)
def test_bad_setting_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(named + ":")


def test_a_misspelt_setting_stops_with_did_you_mean() -> None:
    with pytest.raises(SettingsError, match=r"did you mean PAYRECON_DATABASE_URL\?"):
        load_settings({"PAYRECON_DATABSE_URL": "postgresql://x"})


def test_a_variable_that_is_no_setting_is_named_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    # A client's own PAYRECON_URL must not stop the service.
    settings = load_settings({"PAYRECON_URL": "http://payrecon.internal", "PAYRECON_PORT": "9000"})
    assert settings.port == 9000
    assert "PAYRECON_URL is not a payrecon setting and is ignored (the closest setting is PAYRECON_" in caplog.text


def test_bad_setting_is_one_line_and_nonzero_exit() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "serve"],
        env={"PAYRECON_PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "payrecon: PAYRECON_PORT: Expected `int`, got `str` (got 'not-a-port')"
    ]


async def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate.migrate(conn) == []  # the template was migrated already
        assert await migrate.pending(conn) == []
        versions = await conn.fetchval("select count(*) from schema_migrations")
        assert versions == len(migrate.available())
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(server_urls, template_database) -> None:
    """Two processes starting at once: the advisory lock makes the second wait and find nothing to do."""
    admin = await asyncpg.connect(server_urls.database_url)
    name = f"payrecon_mig_{id(admin)}"
    await admin.execute(f'create database "{name}"')
    url = with_database(server_urls.database_url, name)
    try:
        holder = await asyncpg.connect(url)
        # Hold the lock as a migrating process would, start two migrators, prove they wait.
        await holder.execute("select pg_advisory_lock($1)", migrate.MIGRATION_LOCK_KEY)
        conns = [await asyncpg.connect(url) for _ in range(2)]
        runs = [asyncio.create_task(migrate.migrate(c)) for c in conns]
        await asyncio.sleep(0.3)
        assert not any(r.done() for r in runs), "a migrator ran without the advisory lock"
        await holder.execute("select pg_advisory_unlock($1)", migrate.MIGRATION_LOCK_KEY)
        results = await asyncio.gather(*runs)
        assert sorted(len(r) for r in results) == [0, len(migrate.available())]
        rows = await holder.fetch("select version from schema_migrations")
        assert [r["version"] for r in rows] == [m.version for m in migrate.available()]
        for c in [*conns, holder]:
            await c.close()
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


async def test_edited_migration_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("update schema_migrations set checksum = 'x' where version = '0001_schema'")
        with pytest.raises(migrate.MigrationError, match="edited"):
            await migrate.pending(conn)
    finally:
        await conn.close()


async def test_app_refuses_a_schema_that_is_behind(settings, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.execute("delete from schema_migrations")
    await conn.close()
    with pytest.raises(ExceptionGroup) as caught:
        async with AsyncTestClient(app=create_app(settings, gateways={})):
            pass
    assert caught.group_contains(SchemaBehindError, match="run `payrecon migrate` first", depth=None)


async def test_health_and_readiness(settings) -> None:
    async with AsyncTestClient(app=create_app(settings, gateways={})) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readiness_names_what_is_down(settings) -> None:
    app = create_app(settings, gateways={})
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        await app.state.pool.close()  # the database "goes away"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unreachable")
        assert ready.json()["checks"]["redis"] == "ok"
