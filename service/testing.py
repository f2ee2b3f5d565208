"""payrecon's test fixtures as a pytest plugin: real PostgreSQL and Redis, a database per test.

A gateway package's tests load it with one line in their `conftest.py`, as payrecon's own do:

    pytest_plugins = ["service.testing"]

and ask for `pool`, `settings`, `database_url`, `redis_url` like any fixture. It lives in
`service` (not beside `providers.testing`, the contract kit) because it migrates and serves
payrecon's schema: providers may not import service (tests/test_layering.py).

PAYRECON_TEST_DATABASE_URL / PAYRECON_TEST_REDIS_URL name servers to use; without them the
embedded servers start (the same ones `payrecon` uses), with their data in `<rootdir>/.payrecon`.
The schema is migrated once per session into a template database; each test gets its own clone
of it (CREATE DATABASE … TEMPLATE), so tests never see each other's rows and still run in
parallel sessions on one server. Being one plugin, the template is one per session however many
test directories use it (a copy of these fixtures per directory made a second, colliding one).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from service import db, embedded, migrate
from service.settings import Settings, load_settings

_SESSION = uuid.uuid4().hex[:8]  # names this session's databases apart from other sessions' on one server
_counter = itertools.count()


@pytest.fixture(scope="session")
def server_urls(request: pytest.FixtureRequest) -> Iterator[embedded.Servers]:
    with embedded.servers(
        os.environ.get("PAYRECON_TEST_DATABASE_URL") or None,
        os.environ.get("PAYRECON_TEST_REDIS_URL") or None,
        request.config.rootpath / ".payrecon",
    ) as found:
        yield found


@pytest_asyncio.fixture(scope="session")
async def template_database(server_urls: embedded.Servers) -> AsyncIterator[str]:
    """A migrated database that tests clone; dropped at the end of the session."""
    name = f"payrecon_tmpl_{_SESSION}"
    admin = await asyncpg.connect(server_urls.database_url)
    try:
        await admin.execute(f'create database "{name}"')
        conn = await asyncpg.connect(embedded.with_database(server_urls.database_url, name))
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()
        yield name
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


@pytest_asyncio.fixture
async def database_url(server_urls: embedded.Servers, template_database: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    name = f"payrecon_t_{_SESSION}_{next(_counter)}"
    admin = await asyncpg.connect(server_urls.database_url)
    try:
        await admin.execute(f'create database "{name}" template "{template_database}" strategy file_copy')
        yield embedded.with_database(server_urls.database_url, name)
    finally:
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def redis_url(server_urls: embedded.Servers) -> str:
    return server_urls.redis_url


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    """Settings for this test: its own database and its own arq queue on the shared Redis."""
    return load_settings(
        {},
        database_url=database_url,
        redis_url=redis_url,
        queue_name=f"payrecon:test:{uuid.uuid4().hex}",
        reconcile_grace=1.0,
    )
