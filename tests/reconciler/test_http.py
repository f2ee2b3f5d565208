"""The reconciler's HTTP client keeps a connection per query slot alive, per gateway origin.

Against a plain HTTP/1.1 server on loopback that counts the connections it accepts and answers
after 100 ms: 30 query slots of one account ask at once, round after round (as a run's slots do
while their orders' ledger applies run in between). httpx's default client keeps 20 connections
alive: ten slots connect again every round. `reconciler.http.http_client` opens one connection
per slot, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest_asyncio

from providers.registry import gateways
from reconciler.http import http_client

SLOTS = 30
ROUNDS = 10


class Server(msgspec.Struct):
    url: str
    accepted: list[int]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    accepted = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):  # GETs: no body
                await asyncio.sleep(0.1)  # every slot's query in flight at once
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield Server(url=f"http://127.0.0.1:{port}", accepted=accepted)


async def ask_in_rounds(client: httpx.AsyncClient, url: str) -> None:
    for _ in range(ROUNDS):
        answers = await asyncio.gather(*(client.get(f"{url}/v2/gateway/api/query") for _ in range(SLOTS)))
        assert all(a.status_code == 200 for a in answers)


async def test_every_query_slot_keeps_its_connection(server: Server) -> None:
    momo = gateways()["momo"]
    account = msgspec.convert(
        {
            "partner_code": "P",
            "access_key": "A",
            "secret_keys": ["S"],
            "api_base": server.url,
            "query_concurrency": SLOTS,
        },
        momo.account,
    )
    async with http_client({"momo": momo.connect([account])}) as client:
        await ask_in_rounds(client, server.url)
    assert server.accepted[0] <= SLOTS + 1  # a slot's connection, reused by its next queries

    server.accepted[0] = 0
    async with httpx.AsyncClient() as default:  # what the worker used before: 20 kept alive
        await ask_in_rounds(default, server.url)
    assert server.accepted[0] > SLOTS + ROUNDS, server.accepted  # connected again, round after round
