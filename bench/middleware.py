"""Benchmark: what the Prometheus and auth middlewares cost per request (CPU, in process, no sockets).

    .venv/bin/python bench/middleware.py [--requests 20000]

Webhook routes pass through the same stack as every route: litestar's Prometheus middleware
(request counter, duration histogram, in-progress gauge) and the API-key middleware, which
lets them through by its exclusion pattern. This drives `GET /healthz` (a constant answer)
straight through the ASGI callable of four apps built in this process, one after another,
repeated `--rounds` times (the smallest time of each counts: noise only ever adds):
  bare        the route alone;
  +prometheus litestar's PrometheusMiddleware as service.app configures it;
  +auth       the API-key middleware alone (an excluded, public path);
  payrecon    `service.app.create_app()` itself, every middleware and plugin.
The differences are each middleware's CPU per request. Compare them with a webhook's whole
server-side CPU, which bench/ingest.py prints (ms per applied event).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from litestar import Litestar
from litestar.plugins.prometheus import PrometheusConfig

from service import auth
from service.api import health
from service.app import create_app
from service.settings import load_settings

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/healthz",
    "raw_path": b"/healthz",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk")],
    "client": ("127.0.0.1", 40000),
    "server": ("127.0.0.1", 8000),
}


async def drive(app: Any, requests: int) -> float:
    """Seconds for `requests` requests through the ASGI app (each answer checked)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(SCOPE, state={}), receive, send)
    elapsed = time.perf_counter() - started
    assert set(status) == {200}, set(status)
    return elapsed


def apps() -> dict[str, Litestar]:
    prometheus = PrometheusConfig(app_name="payrecon", prefix="payrecon_bench", group_path=True)
    settings = load_settings({}, database_url="postgresql://unused", redis_url="redis://unused")
    return {
        "bare": Litestar(route_handlers=[health.healthz]),
        "+prometheus": Litestar(route_handlers=[health.healthz], middleware=[prometheus.middleware]),
        "+auth": Litestar(route_handlers=[health.healthz], middleware=[*auth.middleware()]),
        "payrecon (create_app)": create_app(settings, gateways={}),
    }


async def main(requests: int, rounds: int) -> None:
    built = apps()
    best = dict.fromkeys(built, float("inf"))
    for app in built.values():
        await drive(app, 200)  # warm: route caches, lazily built handlers
    for _ in range(rounds):
        for name, app in built.items():
            best[name] = min(best[name], await drive(app, requests))
    bare = best["bare"] / requests * 1e6
    print(f"{requests:,} requests per app, best of {rounds} rounds")
    print("| app | µs per request | over bare |")
    print("|---|---:|---:|")
    for name, seconds in best.items():
        us = seconds / requests * 1e6
        print(f"| {name} | {us:.1f} | {us - bare:+.1f} µs |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
