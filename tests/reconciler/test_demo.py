"""The README's run command end to end: `payrecon run --once` in a subprocess, as a newcomer runs it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid

import asyncpg
import pytest

from providers.registry import gateways
from reconciler.demo import fresh_database
from service import embedded
from service.cli import CliError
from service.serving import free_port
from service.settings import Settings
from tests.conftest import REPO


async def test_the_demo_tells_the_whole_story_and_ends_with_every_order_matching(
    settings: Settings, tmp_path: object
) -> None:
    assert settings.database_url is not None
    assert settings.redis_url is not None
    name = f"payrecon_demo_{uuid.uuid4().hex[:8]}"  # its own database: parallel sessions do not collide
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAYRECON_")},
        "PAYRECON_DATABASE_URL": settings.database_url,
        "PAYRECON_REDIS_URL": settings.redis_url,
        "PAYRECON_QUEUE_NAME": settings.queue_name,
        "PAYRECON_PORT": str(free_port()),
        "PAYRECON_DATA_DIR": str(tmp_path),
        "COLUMNS": "160",
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from service.cli import main; main()",
        "run",
        "--once",
        "--seed",
        "7",
        "--database",
        name,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        admin = await asyncpg.connect(embedded.with_database(settings.database_url, "postgres"))
        demo_rows = None
        try:
            demo = await asyncpg.connect(embedded.with_database(settings.database_url, name))
            try:
                demo_rows = await demo.fetch("select kind, count(*) as n from reconcile_findings group by kind")
            finally:
                await demo.close()
        finally:
            await admin.execute(f'drop database if exists "{name}" with (force)')
            await admin.close()
    text = out.decode()
    assert process.returncode == 0, text
    assert time.monotonic() - started < 60, "a newcomer sees it work in under a minute"
    lost = re.search(r"lost (\d+)", text)
    orders = 12 * len(gateways())  # the default --orders per installed gateway (plugins included)
    before = re.search(rf"(\d+) of {orders} orders disagree with their gateway, e\.g\.", text)
    assert lost is not None, text
    assert int(lost[1]) > 0, text
    assert before is not None, text
    assert int(before[1]) > 0, text
    assert f"0 of {orders} orders disagree with their gateway." in text, text
    assert re.search(r"Run \d+ \(api, all gateways.*\): completed", text), text
    assert demo_rows is not None
    kinds = {r["kind"]: r["n"] for r in demo_rows}
    assert kinds["repaired"] == int(before[1])  # the report names exactly what was wrong
    assert "Traceback" not in text


async def test_the_demo_never_drops_a_database_it_did_not_create(server_urls) -> None:
    name = f"payrecon_not_a_demo_{uuid.uuid4().hex[:8]}"
    scratch = f"payrecon_demo_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_urls.database_url)
    try:
        await admin.execute(f'create database "{name}"')
        with pytest.raises(CliError, match="was not created by the demo"):
            await fresh_database(server_urls.database_url, name)
        assert await admin.fetchval("select 1 from pg_database where datname = $1", name) == 1
        await fresh_database(server_urls.database_url, scratch)  # new: created and marked
        await fresh_database(server_urls.database_url, scratch)  # marked: recreated
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.execute(f'drop database if exists "{scratch}" with (force)')
        await admin.close()
