"""Does anything in `serve` grow per request? tracemalloc over the webhook and REST paths (issue 14.7).

    PAYRECON_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres PAYRECON_REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/memory.py --requests 20000

The app runs in this process (uvicorn on loopback) so tracemalloc sees its allocations; a scratch
database `payrecon_bench_memory` is created and dropped. After a warm-up (caches, pools and
statement caches fill), it snapshots, sends the requests — signed MoMo IPNs (new events and
redeliveries), signed VNPay IPNs, REST reads of orders — snapshots again and prints the traced
size's growth per 1,000 requests and the top allocation sites that grew. Something that grows
per request shows up as a site whose growth scales with --requests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import os
import sys
import tracemalloc
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from providers.base import PaymentStatus
from reconciler.demo import fresh_database
from service import apikeys, db, embedded, migrate
from service.app import create_app
from service.serving import free_port, serving
from service.settings import load_settings
from tests.e2e.harness import momo_webhook, register, vnpay_webhook
from tests.gateways import adapters_for, sim_api_bases, simulator

DATABASE = "payrecon_bench_memory"
ORDERS = 200


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=3_000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    server = os.environ.get("PAYRECON_DATABASE_URL")
    redis_url = os.environ.get("PAYRECON_REDIS_URL")
    if not server or not redis_url:
        raise SystemExit(
            "set PAYRECON_DATABASE_URL (a server to create the scratch database on) and PAYRECON_REDIS_URL"
        )
    url = await fresh_database(server, DATABASE)
    url = embedded.with_database(server, DATABASE)
    conn = await db.create_pool(url, min_size=1, max_size=1)
    async with conn.acquire() as c:
        await migrate.migrate(c)
    await conn.close()

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would be most of the allocations
    sims = {name: simulator(name) for name in ("momo", "vnpay")}
    settings = load_settings({}, database_url=url, redis_url=redis_url, queue_name="payrecon:bench:memory")
    app = create_app(settings, gateways=adapters_for(sims, sim_api_bases(tuple(sims))))
    port = free_port()
    async with serving(app, port=port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        pool = app.state.pool
        async with pool.acquire() as c:
            key = await apikeys.create(c, "memory", ["orders:read"])
        auth = {"Authorization": f"Bearer {key.key}"}
        momo, vnpay = sims["momo"], sims["vnpay"]
        deliveries: list[tuple[str, str, bytes]] = []
        for i in range(ORDERS):
            momo.create_payment(order_id=f"m-{i}", amount=10_000 + i, currency="VND")
            await register(pool, f"m-{i}", provider="momo", amount=10_000 + i, currency="VND")
            momo.set_status(f"m-{i}", PaymentStatus.SUCCEEDED)
            deliveries.append(("POST", "/webhooks/momo", momo_webhook(momo, f"m-{i}")))
            vnpay.create_payment(order_id=f"v-{i}", amount=20_000 + 100 * i, currency="VND")
            await register(pool, f"v-{i}", provider="vnpay", amount=20_000 + 100 * i, currency="VND")
            vnpay.set_status(f"v-{i}", PaymentStatus.SUCCEEDED)
            deliveries.append(("GET", f"/webhooks/vnpay?{vnpay_webhook(vnpay, f'v-{i}')}", b""))
        requests = itertools.cycle(
            [*deliveries, *(("GET", f"/v1/orders/m-{i}", b"") for i in range(ORDERS)), ("GET", "/v1/orders", b"")]
        )

        async def send(n: int) -> None:
            room = asyncio.Semaphore(8)

            async def one() -> None:
                method, path, body = next(requests)
                async with room:
                    headers = auth if path.startswith("/v1") else {"Content-Type": "application/json"}
                    response = await http.request(method, path, content=body or None, headers=headers)
                    assert response.status_code < 500, response.text

            await asyncio.gather(*(one() for _ in range(n)))

        tracemalloc.start(6)
        await send(args.warmup)
        gc.collect()
        before = tracemalloc.take_snapshot()
        size_before = tracemalloc.get_traced_memory()[0]
        await send(args.requests)
        gc.collect()
        after = tracemalloc.take_snapshot()
        size_after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()

    growth = size_after - size_before
    print(
        f"traced memory after warm-up {size_before / 1e6:.2f} MB; after {args.requests:,} more requests "
        f"{size_after / 1e6:.2f} MB: {growth / 1e3:+.1f} kB ({growth / args.requests * 1000:+.1f} bytes per 1,000)"
    )
    ours = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    stats = after.filter_traces(ours).compare_to(before.filter_traces(ours), "traceback")
    print(f"top {args.top} allocation sites by growth:")
    for stat in stats[: args.top]:
        frame = next((f for f in stat.traceback if "site-packages" not in f.filename), stat.traceback[0])
        print(
            f"  {stat.size_diff / 1e3:+9.1f} kB {stat.count_diff:+7d} blocks  {frame.filename}:{frame.lineno}"
            f"  (allocated at {stat.traceback[0].filename.rsplit('/', 2)[-1]}:{stat.traceback[0].lineno})"
        )
    admin = await db.create_pool(server, min_size=1, max_size=1)
    await admin.execute(f'drop database if exists "{DATABASE}" with (force)')
    await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
