"""Benchmark: reconciliation throughput — candidates checked per second against the three simulators.

    .venv/bin/python bench/reconcile.py [--orders 600] [--concurrency 16] [--helpers 0] [--batch 50]

Registers `--orders` orders (a third per gateway) whose payments succeeded at the gateway while
every webhook was lost, then times one run that repairs them all (status query over HTTP,
ledger apply, finding), and a second sweep that finds them all in sync. The simulators serve
from the same process and event loop, so their CPU counts against the figure: a real gateway's
latency, not its CPU, would bound a production run. Uses PAYRECON_DATABASE_URL's server (or the
embedded one) and a scratch database `payrecon_bench`, recreated each time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import msgspec

from providers.base import PaymentStatus
from providers.http import RetryPolicy
from providers.registry import adapter_classes
from reconciler.demo import fresh_database
from reconciler.run import RunEnv, execute
from service import db, embedded, ledger, migrate, runs
from service.model import NewOrder
from service.serving import free_port as pick_port
from service.serving import serving
from service.settings import load_settings

GATEWAYS = ("stripe", "momo", "vnpay")
PRICES = {"stripe": (1999, "USD"), "momo": (150_000, "VND"), "vnpay": (250_000, "VND")}


@contextlib.asynccontextmanager
async def simulators(concurrency: int) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    import importlib

    sims = {n: importlib.import_module(f"providers.{n}.simulator").Simulator() for n in GATEWAYS}
    async with contextlib.AsyncExitStack() as stack:
        urls = {n: await stack.enter_async_context(serving(s.asgi_app(), pick_port())) for n, s in sims.items()}
        classes = adapter_classes()
        adapters = {}
        for name, sim in sims.items():
            table = {**sim.gateway_config(urls[name]), "query_concurrency": concurrency, "query_rate": 100_000.0}
            account = msgspec.convert(table, classes[name].Account)
            adapters[name] = classes[name]([account], retry=RetryPolicy(attempts=2, base_delay=0.01))
        yield sims, adapters


async def register(pool: asyncpg.Pool, sims: dict[str, Any], orders: int) -> None:
    for i in range(orders):
        gateway = GATEWAYS[i % 3]
        amount, currency = PRICES[gateway]
        order_id = f"bench-{i:06d}"
        payment = sims[gateway].create_payment(order_id=order_id, amount=amount, currency=currency)
        new = NewOrder(
            id=order_id,
            amount=amount,
            currency=currency,
            provider=gateway,
            reference=payment.reference,
            provider_data=payment.provider_data,
        )
        await ledger.register_order(pool, new)
        sims[gateway].set_status(payment.reference, PaymentStatus.SUCCEEDED)  # no webhook_url: lost


async def timed_run(envs: list[RunEnv], since: datetime | None) -> tuple[float, runs.ReconcileRun]:
    async with envs[0].pool.acquire() as conn:
        run = await runs.create_run(conn, trigger=runs.Trigger.CLI, params=runs.RunParams(since=since))
    assert run is not None
    started = time.perf_counter()
    results = await asyncio.gather(
        execute(envs[0], run, lead=True), *(execute(env, run, lead=False) for env in envs[1:])
    )
    ended = results[0]
    assert ended is not None
    return time.perf_counter() - started, ended


async def main(args: argparse.Namespace) -> None:
    settings = load_settings(reconcile_grace=0.001, reconcile_batch=args.batch)
    with embedded.resolved(settings, redis=False) as s:
        assert s.database_url is not None
        url = await fresh_database(s.database_url, "payrecon_bench")
        pool = await db.create_pool(url, min_size=2, max_size=20)
        try:
            async with pool.acquire() as conn:
                await migrate.migrate(conn)
            async with simulators(args.concurrency) as (sims, adapters):
                began = datetime.now(UTC)
                await register(pool, sims, args.orders)
                await asyncio.sleep(0.01)
                clients = [httpx.AsyncClient(timeout=10.0) for _ in range(1 + args.helpers)]
                envs = [RunEnv(pool=pool, gateways=adapters, http=c, settings=s) for c in clients]
                try:
                    first_s, first = await timed_run(envs, None)
                    second_s, second = await timed_run(envs, began)
                finally:
                    for c in clients:
                        await c.aclose()
        finally:
            await pool.close()
    participants = 1 + args.helpers
    print(f"orders={args.orders} batch={args.batch} concurrency/account={args.concurrency} workers={participants}")
    print("| run | checked | findings | seconds | candidates/s |")
    print("|---|---:|---:|---:|---:|")
    for label, seconds, run in (("repair (all pending)", first_s, first), ("sweep (all in sync)", second_s, second)):
        checked = run.counts["checked"]
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(run.counts["findings"].items()))
        print(f"| {label} | {checked} | {kinds} | {seconds:.2f} | {checked / seconds:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16, help="query_concurrency per gateway account")
    parser.add_argument("--helpers", type=int, default=0, help="extra participants of the same run")
    parser.add_argument("--batch", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
