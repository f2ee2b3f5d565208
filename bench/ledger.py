"""Benchmark: the ledger's write path, alone and behind real HTTP webhooks.

    .venv/bin/python bench/ledger.py [--orders 1000] [--concurrency 16]

On a scratch database `payrecon_bench_ledger` (recreated each time) on PAYRECON_DATABASE_URL's
server, or the embedded one, it times:
  1. `ledger.apply` of one success event per order, one at a time;
  2. the same with `--concurrency` applies in flight (separate connections);
  3. every event again (the duplicate path: the dedupe insert finds the row, nothing else runs);
  4. MoMo IPNs, signed by the simulator, POSTed over real HTTP with `--concurrency` connections to
     `payrecon serve` in its own process: size check, signature, parse, apply, acknowledgement.
Each line prints events per second and the ratio to the sequential apply.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from providers.base import PaymentEvent, PaymentStatus
from providers.momo.sim.simulator import Simulator as MomoSimulator
from reconciler.demo import fresh_database
from service import db, embedded, ledger, migrate
from service.cli import gateway_table
from service.model import NewOrder, Source
from service.serving import free_port as pick_port
from service.settings import load_settings

AMOUNT, CURRENCY = 150_000, "VND"


def success(order_id: str, n: int) -> PaymentEvent:
    return PaymentEvent(
        provider="vnpay",
        dedupe_key=f"bench:{order_id}",
        account="default",
        reference=order_id,
        status=PaymentStatus.SUCCEEDED,
        amount=AMOUNT,
        currency=CURRENCY,
        provider_payment_id=str(n),
        occurred_at=datetime.now(UTC),
    )


async def register(pool: asyncpg.Pool, prefix: str, count: int, provider: str = "vnpay") -> list[str]:
    ids = [f"{prefix}-{i:06d}" for i in range(count)]
    for order_id in ids:
        await ledger.register_order(pool, NewOrder(id=order_id, amount=AMOUNT, currency=CURRENCY, provider=provider))
    return ids


async def timed(label: str, count: int, work) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    await work()
    rate = count / (time.perf_counter() - started)
    print(f"{label:<44} {rate:>10,.0f} events/s", flush=True)
    return rate


async def bounded(concurrency: int, jobs) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Semaphore(concurrency)

    async def one(job) -> None:  # type: ignore[no-untyped-def]
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


async def main(orders: int, concurrency: int) -> None:
    settings = load_settings()
    with embedded.resolved(settings) as s:
        assert s.database_url is not None
        assert s.redis_url is not None
        url = await fresh_database(s.database_url, "payrecon_bench_ledger")
        pool = await db.create_pool(url, min_size=concurrency, max_size=concurrency + 4)
        try:
            async with pool.acquire() as conn:
                await migrate.migrate(conn)
            ids = await register(pool, "seq", orders)
            events = [success(order_id, n) for n, order_id in enumerate(ids)]

            async def sequential() -> None:
                for event in events:
                    await ledger.apply(pool, event, Source.WEBHOOK)

            base = await timed("apply, one at a time", orders, sequential)
            ids = await register(pool, "par", orders)
            parallel = [success(order_id, n) for n, order_id in enumerate(ids)]

            async def concurrent() -> None:
                await bounded(concurrency, [lambda e=e: ledger.apply(pool, e, Source.WEBHOOK) for e in parallel])

            rate = await timed(f"apply, {concurrency} in flight", orders, concurrent)
            print(f"{'':<44} {rate / base:>10.2f}x sequential")

            async def duplicates() -> None:
                await bounded(concurrency, [lambda e=e: ledger.apply(pool, e, Source.WEBHOOK) for e in parallel])

            rate = await timed(f"duplicates, {concurrency} in flight", orders, duplicates)
            print(f"{'':<44} {rate / base:>10.2f}x sequential")

            await http_ingest(s, url, pool, orders, concurrency, base)
        finally:
            await pool.close()


async def http_ingest(settings, url: str, pool: asyncpg.Pool, orders: int, concurrency: int, base: float) -> None:  # type: ignore[no-untyped-def]
    """MoMo IPNs against `payrecon serve` in its own process, as in production: the sender's CPU is not the server's."""
    momo = MomoSimulator()
    bodies = []
    for i in range(orders):
        payment = momo.create_payment(order_id=f"ipn-{i:06d}", amount=AMOUNT, currency=CURRENCY)
        new = NewOrder(
            id=f"ipn-{i:06d}", amount=AMOUNT, currency=CURRENCY, provider="momo", reference=payment.reference
        )
        await ledger.register_order(pool, new)
        momo.set_status(payment.reference, PaymentStatus.SUCCEEDED)  # no webhook URL: we send them below
        bodies.append(momo.ipn_body(momo.payments[payment.reference]))
    port = pick_port()
    with tempfile.TemporaryDirectory() as folder:
        gateways = Path(folder) / "gateways.toml"
        gateways.write_text(gateway_table("momo", momo.gateway_config("http://momo.invalid")))
        env = {
            **os.environ,
            "PAYRECON_DATABASE_URL": url,
            "PAYRECON_REDIS_URL": settings.redis_url,
            "PAYRECON_GATEWAYS": str(gateways),
            "PAYRECON_PORT": str(port),
            "PAYRECON_DB_POOL_MAX": str(concurrency + 4),
            "PAYRECON_LOG_LEVEL": "WARNING",
        }
        server = await asyncio.create_subprocess_exec(sys.executable, "-m", "service.cli", "serve", env=env)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:
                await ready(client, server)

                async def deliver() -> None:
                    async def one(body: bytes) -> None:
                        answer = await client.post(
                            "/webhooks/momo", content=body, headers={"content-type": "application/json"}
                        )
                        assert answer.status_code == 204, answer.text

                    await bounded(concurrency, [lambda b=b: one(b) for b in bodies])

                rate = await timed(f"MoMo IPN over HTTP, {concurrency} connections", orders, deliver)
                print(f"{'':<44} {rate / base:>10.2f}x sequential apply")
        finally:
            server.terminate()
            await server.wait()
    applied = await pool.fetchval("select count(*) from orders where id like 'ipn-%' and status = 'succeeded'")
    print(f"{'':<44} {applied} of {orders} orders succeeded")


async def ready(client: httpx.AsyncClient, server: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if server.returncode is not None:
            raise SystemExit(f"payrecon serve exited with {server.returncode}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("payrecon serve did not become ready")


if __name__ == "__main__":
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would be the benchmark
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency))
