"""The HTTP client a worker asks the gateways' status APIs with: a pool of kept-alive connections per gateway origin.

httpx's default client keeps 20 idle connections over all hosts: with more query slots than that
(three accounts of 16 in bench/reconcile.py), a burst of queries left more idle connections than
it keeps, which it closed, and the next burst connected again (against a real gateway: a TLS
handshake per reconnect). Kept alive, one connection per slot, they meet httpcore's other cost:
on each request and each answer its pool looks at every connection it holds (expiry, a
readability poll of each idle one, a count of all of them per idle one), so the work grows with
the square of the connections. One pool keeping 48 connections alive spent 41 % of the
benchmark's CPU there; a pool per origin, 16 each, 22 %. So each origin (scheme, host, port) of an
account's `api_base` gets its own pool, keeping alive as many connections as its accounts have
query slots (plus one for an events feed). Proxies from the environment still apply: httpx routes
to them before this transport.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from providers.gateway import Connected
from reconciler.limits import accounts_of

TIMEOUT = httpx.Timeout(10.0, connect=3.0)  # an account's `timeout` replaces the total per query
MAX_CONNECTIONS = 100  # per origin: runs of one worker each have their own limits, room for several at once

Origin = tuple[str, str, int | None]


def origin_of(url: httpx.URL) -> Origin:
    return (url.scheme, url.host, url.port)


class PoolPerOrigin(httpx.AsyncBaseTransport):
    """httpx's transport, one instance (one connection pool) per origin, each keeping `keep[origin]` alive."""

    def __init__(self, keep: Mapping[Origin, int], *, default: int = 20) -> None:
        self.keep = dict(keep)
        self.default = default
        self._pools: dict[Origin, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = origin_of(request.url)
        pool = self._pools.get(origin)
        if pool is None:
            keep = self.keep.get(origin, self.default)
            limits = httpx.Limits(max_connections=max(MAX_CONNECTIONS, keep), max_keepalive_connections=keep)
            pool = self._pools[origin] = httpx.AsyncHTTPTransport(limits=limits)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def http_client(gateways: Mapping[str, Connected]) -> httpx.AsyncClient:
    """A client with a pool per gateway origin, each keeping a connection per query slot alive (see above)."""
    keep: dict[Origin, int] = {}
    for gateway in gateways.values():
        for account in accounts_of(gateway):
            origin = origin_of(httpx.URL(account.api_base))
            keep[origin] = keep.get(origin, 1) + max(1, account.query_concurrency)  # 1: the events feed
    return httpx.AsyncClient(timeout=TIMEOUT, transport=PoolPerOrigin(keep))
