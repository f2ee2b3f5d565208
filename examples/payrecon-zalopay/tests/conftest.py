"""Fixtures for the ZaloPay package's tests: payrecon's own real PostgreSQL and Redis fixtures.

These tests run inside the payrecon repository (the README's test command installs the
package and collects them), so they reuse its per-test database fixtures. Only the migrated
template is this directory's own: fixtures are per directory, so tests/conftest.py's session
template would be created a second time under the same name.
A venv made before the package joined dev.py's install skips them; CI never does.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from service import embedded, migrate
from tests.conftest import database_url, pool, redis_url, server_urls, settings

__all__ = ["database_url", "pool", "redis_url", "server_urls", "settings", "template_database"]

if importlib.util.find_spec("payrecon_zalopay") is None:
    if os.environ.get("CI"):
        raise RuntimeError("payrecon-zalopay is not installed: `python3 dev.py test` installs it (pip install -e)")
    collect_ignore_glob = ["test_*.py"]


@pytest_asyncio.fixture(scope="session")
async def template_database(server_urls: embedded.Servers) -> AsyncIterator[str]:
    """A migrated database the tests here clone; dropped at the end of the session."""
    name = f"payrecon_tmpl_zalopay_{uuid.uuid4().hex[:8]}"
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
