"""Benchmark: what the Prometheus and auth middlewares cost per request (CPU, in process, no sockets).

    .venv/bin/python bench/middleware.py [--requests 20000]

Webhook routes pass through the same stack as every route: litestar's Prometheus middleware
(request counter, duration histogram, in-progress gauge) and the API-key middleware, which
lets them through by its exclusion pattern. This drives `GET /healthz` (a constant answer)
straight through the ASGI callable of four apps built in this process, one after another,
repeated `--rounds` times (the smallest time of each counts: noise only ever adds):
  bare                          the route alone;
  +litestar PrometheusMiddleware what service.app used until service.http_metrics replaced it;
  +service.http_metrics         the same series, written by our lean middleware;
  +auth                         the API-key middleware alone (an excluded, public path);
  payrecon                      `service.app.create_app()` itself, every middleware and plugin.
The differences are each middleware's CPU per request. `--multiprocess` measures with
prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR), as `/metrics` summed across
`serve --workers N` needs it: every value change is then a write to a memory-mapped file.
Compare them with a webhook's whole server-side CPU, which bench/ingest.py prints (ms per
applied event).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

# What imports prometheus_client is imported in main(): PROMETHEUS_MULTIPROC_DIR must be set first.

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
    """CPU seconds of this process for `requests` requests through the ASGI app (each answer checked).

    CPU time, not wall time: other processes on a shared machine do not count in it."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    started = time.process_time()
    for _ in range(requests):
        await app(dict(SCOPE, state={}), receive, send)
    elapsed = time.process_time() - started
    assert set(status) == {200}, set(status)
    return elapsed


def apps() -> dict[str, Any]:
    from litestar import Litestar
    from litestar.plugins.prometheus import PrometheusConfig

    from service import auth
    from service.api import health
    from service.app import create_app
    from service.http_metrics import HttpMetrics
    from service.settings import load_settings

    prometheus = PrometheusConfig(app_name="payrecon", prefix="payrecon_bench", group_path=True)
    settings = load_settings({}, database_url="postgresql://unused", redis_url="redis://unused")
    return {
        "bare": Litestar(route_handlers=[health.healthz]),
        "+litestar PrometheusMiddleware": Litestar(route_handlers=[health.healthz], middleware=[prometheus.middleware]),
        "+service.http_metrics": Litestar(route_handlers=[health.healthz], middleware=[HttpMetrics]),
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
    print("| app | CPU µs per request | over bare |")
    print("|---|---:|---:|")
    for name, seconds in best.items():
        us = seconds / requests * 1e6
        print(f"| {name} | {us:.1f} | {us - bare:+.1f} µs |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--multiprocess", action="store_true", help="prometheus-client's multiprocess mode, as `serve --workers N` runs"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.multiprocess:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        print("prometheus-client " + ("multiprocess mode (mmap files)" if args.multiprocess else "in-process values"))
        asyncio.run(main(args.requests, args.rounds))
