"""Benchmark: status reads — `GET /v1/orders/{id}` with an API key over 1 M orders, against a bare endpoint.

    .venv/bin/python bench/reads.py [--orders 1000000] [--seconds 10] [--connections 64] [--workers N]

On a private PostgreSQL (bench/pgserver.py) it stores `--orders` orders with one reference each
(generate_series), creates an API key with `orders:read`, starts `payrecon serve`, and runs wrk
twice against that one server: `/healthz` (no work: a constant answer through the same
middleware stack) and `GET /v1/orders/{id}` for distinct random orders (authenticated, the order
and its references read from PostgreSQL). The ratio of the two rates is the figure (goal ≥ 0.5).
Every answer must be a 200: wrk counts any other status as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import asyncpg
import load
import pgserver

from service import apikeys, embedded, migrate
from service.serving import free_port

GOAL = 0.5


async def setup(url: str, orders: int) -> str:
    """The orders (bulk), and an API key allowed to read them; returns the key."""
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
        started = time.perf_counter()
        await conn.execute(
            """insert into orders (id, amount, currency, provider, account, reference, request_hash, status,
                                   created_at, updated_at)
               select 'ord-' || i, 150000, 'VND', 'momo', 'default', 'ref-' || i, 'bench',
                      (array['pending', 'succeeded', 'failed'])[1 + i % 3],
                      now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval
               from generate_series(1, $1) i""",
            orders,
        )
        await conn.execute(
            """insert into order_references (provider, account, reference, order_id)
               select 'momo', 'default', 'ref-' || i, 'ord-' || i from generate_series(1, $1) i""",
            orders,
        )
        await conn.execute("vacuum analyze orders, order_references")
        print(f"stored {orders:,} orders in {time.perf_counter() - started:.0f} s", flush=True)
        return (await apikeys.create(conn, "bench", ["orders:read"])).key
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="payrecon serve --workers (default: its own)")
    parser.add_argument("--reads", type=int, default=200_000, help="distinct random orders in the request file")
    parser.add_argument("--profile", help="a folder: py-spy records the server during each wrk run (collapsed stacks)")
    args = parser.parse_args()
    load.wrk_binary()
    print(load.machine())
    print(pgserver.describe())
    rng = random.Random(9)
    with pgserver.private_postgres() as url, tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        key = asyncio.run(setup(url, args.orders))
        ids = rng.sample(range(1, args.orders + 1), min(args.reads, args.orders))
        reads = folder_path / "reads.tsv"
        load.write_requests(
            reads, (load.Request("GET", f"/v1/orders/ord-{i}", ("Authorization", f"Bearer {key}")) for i in ids)
        )
        bare = folder_path / "bare.tsv"
        load.write_requests(bare, [load.Request("GET", "/healthz")] * 1000)
        with embedded.redis_server(folder_path) as redis_url:
            port = free_port()
            env = {
                **os.environ,
                "PAYRECON_DATABASE_URL": url,
                "PAYRECON_REDIS_URL": redis_url,
                "PAYRECON_PORT": str(port),
                "PAYRECON_LOG_LEVEL": "WARNING",
            }
            command = load.payrecon_serve(args.workers)
            print(f"server: {' '.join(command[1:])}")
            with load.server(command, env, port) as served:
                figures = {}
                cpu: dict[str, tuple[float, float]] = {}  # CPU ms per request: server, PostgreSQL
                postgres = load.listener_pid(int(url.rsplit(":", 1)[1].split("/")[0]))
                for label, requests in (("bare: GET /healthz", bare), ("GET /v1/orders/{id}", reads)):
                    name = label.split()[-1].strip("/{}").replace("/", "_")
                    profile = Path(args.profile) / f"{name}.folded" if args.profile else None
                    before = load.cpu_seconds(served.pid), load.cpu_seconds(postgres)
                    with load.profiled(served.pid, profile, args.seconds):
                        result = load.run_wrk(served.url, requests, seconds=args.seconds, connections=args.connections)
                    server_cpu = load.cpu_seconds(served.pid) - before[0]
                    database_cpu = load.cpu_seconds(postgres) - before[1]
                    figures[label] = result
                    per_request = 1000 / max(1, result.requests)
                    cpu[label] = (server_cpu * per_request, database_cpu * per_request)
                    print(f"  {label}: {result.rate:,.0f}/s, p99 {result.p99_ms:.1f} ms", flush=True)
    print()
    print(
        "| endpoint | requests/s | p50 ms | p99 ms | errors | server CPU ms/request | PostgreSQL CPU ms/request"
        " | ratio to bare |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base = figures["bare: GET /healthz"].rate
    for label, r in figures.items():
        server_ms, database_ms = cpu[label]
        print(
            f"| {label} | {r.rate:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {server_ms:.3f}"
            f" | {database_ms:.3f} | {r.rate / base:.2f} |"
        )
    ratio = figures["GET /v1/orders/{id}"].rate / base
    print(f"\nreads / bare = {ratio:.2f} (goal ≥ {GOAL}): {'met' if ratio >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
