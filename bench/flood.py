"""Genuine webhooks under a forged flood: throughput, latency and database rows, with and without sampling.

    .venv/bin/python bench/flood.py [--rate 100] [--seconds 15]

`payrecon serve` runs in its own process against a private PostgreSQL (bench/pgserver.py) and Redis,
never the machine's shared ones.
Genuine MoMo IPNs (signed, each for a registered order) are sent at a fixed rate from this
process; a forged flood (MoMo IPNs signed with a wrong key) is sent by `wrk` at the highest rate
it can (`apt-get install -y wrk`). Phases, each `--seconds` long:

1. genuine alone;
2. genuine + the flood, refusals sampled (the defaults: PAYRECON_REFUSAL_SAMPLE_*);
3. genuine + the flood, sampling off (every refusal a row: what the flood used to cost);
4. closed loop: genuine as fast as `--connections` connections go, alone and under the flood.

It prints genuine deliveries/s, latency percentiles, forged requests/s and rows written per
second into rejected_deliveries + refusal_tallies. Every phase is bounded in time and only
127.0.0.1 is addressed; the server and wrk are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import load
import pgserver

from providers.base import PaymentStatus
from providers.momo.sim.simulator import WRONG_SECRET_KEY
from providers.momo.sim.simulator import Simulator as MomoSimulator
from service import db, embedded, ledger, migrate
from service.cli import gateway_table
from service.model import NewOrder
from service.serving import free_port

AMOUNT, CURRENCY = 50_000, "VND"
UNLIMITED = {"PAYRECON_REFUSAL_SAMPLE_RATE": "1e9", "PAYRECON_REFUSAL_SAMPLE_BURST": "1000000000",
             "PAYRECON_REFUSAL_SAMPLE_TOTAL": "1e9"}  # fmt: skip


async def fresh_database(admin_url: str, name: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.execute(f'create database "{name}"')
    finally:
        await admin.close()
    return embedded.with_database(admin_url, name)


class Genuine:
    """Signed IPN bodies of registered orders, handed out once each."""

    def __init__(self, momo: MomoSimulator) -> None:
        self.momo, self.bodies, self.next = momo, [], 0

    async def prepare(self, pool: asyncpg.Pool, prefix: str, count: int) -> None:
        orders = []
        for i in range(count):
            order_id = f"{prefix}-{len(self.bodies) + i:07d}"
            payment = self.momo.create_payment(order_id=order_id, amount=AMOUNT, currency=CURRENCY)
            orders.append(NewOrder(id=order_id, amount=AMOUNT, currency=CURRENCY, provider="momo", reference=order_id))
            self.momo.set_status(payment.reference, PaymentStatus.SUCCEEDED)
            self.bodies.append(self.momo.ipn_body(self.momo.payments[payment.reference]))
        for start in range(0, len(orders), 16):
            await asyncio.gather(*(ledger.register_order(pool, new) for new in orders[start : start + 16]))

    def take(self) -> bytes | None:
        if self.next >= len(self.bodies):
            return None  # a closed loop faster than --closed-orders: it stops early (and says so)
        body = self.bodies[self.next]
        self.next += 1
        return body


class Result:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures = 0
        self.elapsed = 0.0  # first request to last answer

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def line(self, label: str) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return f"{label:<46} {self.rate:>9.1f}/s  p50 {p50:>7.1f} ms  p99 {p99:>8.1f} ms  failed {self.failures}"


async def send(client: httpx.AsyncClient, body: bytes, result: Result) -> None:
    started = time.perf_counter()
    try:
        answer = await client.post("/webhooks/momo", content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError:
        result.failures += 1
        return
    if answer.status_code == 204:
        result.latencies.append(time.perf_counter() - started)
    else:
        result.failures += 1


async def at_rate(client: httpx.AsyncClient, genuine: Genuine, rate: float, seconds: float) -> Result:
    """Open loop: one delivery every 1/rate s whatever the server does (a gateway does not wait for us).

    Throughput counts until the last answer: a server that falls behind shows it here, not only in latency.
    """
    result, tasks = Result(), []
    start = time.perf_counter()
    n = 0
    while (due := start + n / rate) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        body = genuine.take()
        assert body is not None
        tasks.append(asyncio.create_task(send(client, body, result)))
        n += 1
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    return result


async def closed_loop(client: httpx.AsyncClient, genuine: Genuine, connections: int, seconds: float) -> Result:
    result = Result()
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop and (body := genuine.take()) is not None:
            await send(client, body, result)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.elapsed = time.perf_counter() - started
    return result


def wrk_script(body: bytes, folder: Path) -> Path:
    script = folder / "forged.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body.decode()}]==]\n'
    )
    return script


async def flood(url: str, script: Path, seconds: float, connections: int) -> tuple[float, int]:
    """wrk at full speed for `seconds`; (requests/s, requests answered non-2xx)."""
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    text = out.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if rate is None:
        raise SystemExit(f"wrk said:\n{text}")
    return float(rate.group(1)), int(non2xx.group(1)) if non2xx else 0


async def rows(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "select (select count(*) from rejected_deliveries) + (select coalesce(count(*), 0) from refusal_tallies)"
    )
    return count


async def serve(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "service.cli", "serve", env=env)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(1200):  # two minutes: a loaded machine starts two workers slowly
            if server.returncode is not None:
                raise SystemExit(f"payrecon serve exited with {server.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    server.terminate()
    raise SystemExit("payrecon serve did not become ready")


async def stop(server: asyncio.subprocess.Process) -> None:
    server.terminate()
    try:
        await asyncio.wait_for(server.wait(), 20)
    except TimeoutError:
        server.kill()
        await server.wait()


async def main(
    servers: tuple[str, str],
    rate: float,
    seconds: float,
    connections: int,
    flood_connections: int,
    closed_orders: int,
    workers: int,
) -> None:
    database_url, redis_url = servers
    momo = MomoSimulator()
    forged = momo.ipn_body(
        momo.payments[momo.create_payment(order_id="forged", amount=AMOUNT, currency=CURRENCY).reference],
        secret=WRONG_SECRET_KEY,
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = await fresh_database(database_url, "payrecon_bench_flood")
        pool = await db.create_pool(url, min_size=1, max_size=4)
        folder = Path(tmp)
        gateways = folder / "gateways.toml"
        gateways.write_text(gateway_table("momo", momo.gateway_config("http://momo.invalid")))
        script = wrk_script(forged, folder)
        try:
            async with pool.acquire() as conn:
                await migrate.migrate(conn)
            genuine = Genuine(momo)
            per_phase = int(rate * seconds) + 1
            print(f"registering {3 * per_phase + closed_orders} orders and signing their IPNs…", flush=True)
            await genuine.prepare(pool, "g", 3 * per_phase)
            await genuine.prepare(pool, "c", closed_orders)  # the closed-loop phases take as many as they send
            port = free_port()
            base_env = {
                **os.environ,
                "PAYRECON_DATABASE_URL": url,
                "PAYRECON_REDIS_URL": redis_url,
                "PAYRECON_GATEWAYS": str(gateways),
                "PAYRECON_PORT": str(port),
                "PAYRECON_LOG_LEVEL": "WARNING",
                "PAYRECON_WORKERS": str(workers),
                "PAYRECON_REFUSAL_TALLY_EVERY": "5",
            }
            target = f"http://127.0.0.1:{port}/webhooks/momo"
            limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
            print(
                f"payrecon serve with {workers} worker(s); genuine MoMo IPNs at {rate:g}/s for {seconds:g} s "
                f"per phase; wrk -t1 -c{flood_connections} forged IPNs\n"
            )

            async def phase(env: dict[str, str], label: str, work: Callable[[httpx.AsyncClient], Awaitable[Result]],
                            with_flood: bool) -> Result:  # fmt: skip
                server = await serve(env, port)
                try:
                    async with httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60.0
                    ) as client:
                        before, started = await rows(pool), time.perf_counter()
                        if with_flood:
                            flooding = asyncio.create_task(flood(target, script, seconds + 1, flood_connections))
                            await asyncio.sleep(0.5)  # the flood is at full speed before genuine traffic starts
                        result = await work(client)
                        elapsed = time.perf_counter() - started
                        print(result.line(label), flush=True)
                        if with_flood:
                            forged_rate, refused = await flooding
                            await asyncio.sleep(0.2)
                            elapsed = time.perf_counter() - started
                            written = await rows(pool) - before
                            print(f"{'':<46} forged {forged_rate:>9.0f}/s ({refused} refused); rows written "
                                  f"{written / elapsed:.1f}/s during the flood")  # fmt: skip
                finally:
                    await stop(server)
                if with_flood:
                    print(f"{'':<46} rows after shutdown flush: {await rows(pool) - before}")
                return result

            alone = await phase(base_env, "genuine alone", lambda c: at_rate(c, genuine, rate, seconds), False)
            sampled = await phase(
                base_env, "genuine + flood, sampled", lambda c: at_rate(c, genuine, rate, seconds), True
            )
            unsampled = await phase(
                {**base_env, **UNLIMITED}, "genuine + flood, every refusal a row",
                lambda c: at_rate(c, genuine, rate, seconds), True,
            )  # fmt: skip
            loop_alone = await phase(
                base_env, f"closed loop ({connections} conns) alone",
                lambda c: closed_loop(c, genuine, connections, seconds), False,
            )  # fmt: skip
            loop_flood = await phase(
                base_env, f"closed loop ({connections} conns) + flood",
                lambda c: closed_loop(c, genuine, connections, seconds), True,
            )  # fmt: skip
            print()
            for label, result in (("sampled", sampled), ("every refusal a row", unsampled)):
                loss = 1 - result.rate / max(alone.rate, 1e-9)
                print(f"genuine at {rate:g}/s under the flood ({label}): {loss:.1%} lower throughput than alone")
            ratio = loop_flood.rate / max(loop_alone.rate, 1e-9)
            print(f"closed-loop genuine throughput under the flood: {ratio:.2f}x of alone")
            paid = await pool.fetchval("select count(*) from orders where status = 'succeeded'")
            print(f"orders paid: {paid}")
        finally:
            await pool.close()


if __name__ == "__main__":
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="genuine IPNs per second (open loop)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--connections", type=int, default=16, help="genuine sender's connections")
    parser.add_argument("--flood-connections", type=int, default=32, help="wrk's connections")
    parser.add_argument("--closed-orders", type=int, default=40_000, help="orders for the two closed-loop phases")
    parser.add_argument("--workers", type=int, default=2, help="payrecon serve processes (PAYRECON_WORKERS)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    print(load.machine())
    print(pgserver.describe())
    with (
        pgserver.private_postgres() as database,
        tempfile.TemporaryDirectory() as data,
        embedded.redis_server(Path(data)) as redis,
    ):
        asyncio.run(
            main(
                (database, redis),
                args.rate,
                args.seconds,
                args.connections,
                args.flood_connections,
                args.closed_orders,
                args.workers,
            )
        )
