"""PostgreSQL going away is one log line, and its return another — not a traceback per reconnect attempt."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service import db
from tests.e2e.proxy import TcpProxy


async def test_outage_logs_one_line_down_and_one_back(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    proxy = TcpProxy.for_url(database_url)
    await proxy.start()
    pool = await db.create_pool(proxy.url_through(database_url), min_size=2, max_size=4)
    try:
        caplog.set_level(logging.INFO)
        await proxy.cut()  # every connection dropped, new ones refused: the pool restores its floor in a loop
        await asyncio.sleep(4.5)  # asyncpg retries after 1 s, 2 s, …: several failed attempts
        assert pool.get_size() < 2
        down = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down) == 1, [r.getMessage() for r in caplog.records]
        assert down[0].exc_info is None
        assert not [r for r in caplog.records if "connection floor" in r.getMessage() or r.exc_info]

        await proxy.restore()
        for _ in range(100):
            if [r for r in caplog.records if "reachable again" in r.getMessage()]:
                break
            await asyncio.sleep(0.1)
        assert await pool.fetchval("select 1") == 1
        back = [r for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(back) == 1
        assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    finally:
        await pool.close()
        await proxy.close()
