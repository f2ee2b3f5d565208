"""Counting what a pool sends: every statement of every connection, through asyncpg's query logger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from service import db


@contextlib.asynccontextmanager
async def counted_pool(database_url: str, size: int) -> AsyncIterator[tuple[asyncpg.Pool, list[asyncpg.LoggedQuery]]]:
    """A pool of `size` connections, each logging every statement it sends into the list yielded beside it."""
    sent: list[asyncpg.LoggedQuery] = []
    pool = await db.create_pool(database_url, min_size=size, max_size=size)
    try:
        held = [await pool.acquire() for _ in range(size)]  # every connection of the pool, once
        for conn in held:
            conn.add_query_logger(sent.append)
        for conn in held:
            await pool.release(conn)
        yield pool, sent
    finally:
        await pool.close()
