"""Benchmark: webhook ingest over HTTP (wrk) against the pgbench ceiling of the ledger's SQL, in one run.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 64] [--workers N] [--events 15000]

Everything runs on a private PostgreSQL 15 (bench/pgserver.py: its settings are printed) and a
private Redis, so other processes' tests are not in the figures. For each gateway, in turn:
  1. pgbench runs the ledger's own statements for one applied event (bench/ceiling.py) — the
     ceiling, measured right before the gateway's figure so machine noise hits both alike;
  2. wrk sends distinct signed deliveries (pre-signed into a file, read by bench/deliveries.lua)
     to `payrecon serve` in its own process(es), `--connections` at a time:
     - Stripe: `payment_intent.succeeded` of a NEW PaymentIntent per event, carrying
       `metadata.order_id` of a registered order (the claim path: the intent's id is unknown);
     - MoMo: the IPN POST of the order's payment; VNPay: the IPN GET with its signed query string.
The ingest rate counts events the ledger durably APPLIED (rows in payment_events with outcome
`applied` after the run, divided by wrk's duration), not HTTP answers. The ratio is to the
ceiling measured just before; p99 is wrk's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import ceiling
import load
import msgspec
import pgserver

from providers.base import PaymentStatus
from providers.momo.simulator import Simulator as MomoSimulator
from providers.stripe.signing import sign_header
from providers.stripe.simulator import Simulator as StripeSimulator
from providers.vnpay.simulator import Simulator as VnpaySimulator
from service import embedded, migrate
from service.cli import gateways_toml
from service.serving import free_port

GATEWAYS = ("stripe", "momo", "vnpay")
PRICES = {"stripe": (1999, "USD"), "momo": (150_000, "VND"), "vnpay": (250_000, "VND")}
GOAL_RATIO, GOAL_P99_MS = 0.55, 50.0


class Gateway:
    """One simulated gateway: registers its orders in bulk and writes its pre-signed deliveries."""

    def __init__(self, name: str, count: int) -> None:
        self.name, self.count = name, count
        self.amount, self.currency = PRICES[name]
        self.sim = {"stripe": StripeSimulator, "momo": MomoSimulator, "vnpay": VnpaySimulator}[name]()
        self.orders = [f"{name}-{i:07d}" for i in range(count)]

    def references(self) -> Iterator[tuple[str, str]]:
        """(order id, the reference it is registered with)."""
        for order_id in self.orders:
            if self.name == "stripe":
                # The order was registered with a first PaymentIntent; each webhook below comes from a
                # new one, found through metadata.order_id (the claim path).
                yield order_id, f"pi_registered_{order_id}"
            else:
                yield (
                    order_id,
                    self.sim.create_payment(order_id=order_id, amount=self.amount, currency=self.currency).reference,
                )

    def deliveries(self) -> Iterator[load.Request]:
        if self.name == "stripe":
            now = int(time.time())  # signed now: the run must start within Stripe's 300 s tolerance
            for order_id in self.orders:
                pi = self.sim.create_payment(order_id=order_id, amount=self.amount, currency=self.currency)
                self.sim.set_status(pi.reference, PaymentStatus.SUCCEEDED)
                body = msgspec.json.encode(self.sim.events[-1])
                header = sign_header(body, self.sim.webhook_secrets, now)
                yield load.Request("POST", "/webhooks/stripe", ("Stripe-Signature", header), body)
        elif self.name == "momo":
            for order_id in self.orders:
                self.sim.set_status(order_id, PaymentStatus.SUCCEEDED)  # no webhook URL: nothing is sent
                yield load.Request("POST", "/webhooks/momo", None, self.sim.ipn_body(self.sim.get_payment(order_id)))
        else:
            for order_id in self.orders:
                self.sim.set_status(order_id, PaymentStatus.SUCCEEDED)
                yield load.Request("GET", f"/webhooks/vnpay?{self.sim.ipns[-1]}")


async def register(url: str, gateways: list[Gateway]) -> None:
    """Orders and their references in bulk (COPY): what `POST /v1/orders` would have stored."""
    conn = await asyncpg.connect(url)
    try:
        for g in gateways:
            refs = list(g.references())
            await conn.copy_records_to_table(
                "orders",
                columns=["id", "amount", "currency", "provider", "account", "reference", "request_hash"],
                records=[(o, g.amount, g.currency, g.name, "default", r, "bench") for o, r in refs],
            )
            await conn.copy_records_to_table(
                "order_references",
                columns=["provider", "account", "reference", "order_id"],
                records=[(g.name, "default", r, o) for o, r in refs],
            )
        await conn.execute("analyze")
    finally:
        await conn.close()


async def applied(url: str, provider: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "select count(*) from payment_events where provider = $1 and outcome = 'applied'", provider
        )
        return count
    finally:
        await conn.close()


async def setup(url: str, gateways: list[Gateway], ceiling_orders: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()
    await ceiling.prepare(url, ceiling_orders)
    await register(url, gateways)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="per figure (wrk and pgbench)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pg-clients", type=int, default=64, help="pgbench clients for the ceiling")
    parser.add_argument("--workers", type=int, default=None, help="payrecon serve --workers (default: its own)")
    parser.add_argument("--events", type=int, default=15_000, help="distinct deliveries per gateway")
    parser.add_argument("--gateways", default=",".join(GATEWAYS))
    parser.add_argument(
        "--server", help="another server command to measure instead of payrecon serve ({port} is replaced)"
    )
    parser.add_argument("--profile", help="a folder: py-spy records the server during each wrk run (collapsed stacks)")
    args = parser.parse_args()
    names = [n for n in args.gateways.split(",") if n]
    load.wrk_binary()

    print(load.machine())
    print(pgserver.describe())
    source, _ = ceiling.script()
    print(f"ceiling SQL from {source}; pgbench -M prepared -c{args.pg_clients} -j2")
    gateways = [Gateway(n, args.events) for n in names]
    rows = []
    with pgserver.private_postgres() as url, tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        with embedded.redis_server(folder_path) as redis_url:
            asyncio.run(setup(url, gateways, ceiling_orders=100_000))
            gateways_file = folder_path / "gateways.toml"
            # Status API base URLs are never called here: only webhooks are.
            tables = {g.name: [g.sim.gateway_config(f"http://{g.name}.invalid")] for g in gateways}
            gateways_file.write_text(gateways_toml(tables))
            port = free_port()
            env = {
                **os.environ,
                "PAYRECON_DATABASE_URL": url,
                "PAYRECON_REDIS_URL": redis_url,
                "PAYRECON_GATEWAYS": str(gateways_file),
                "PAYRECON_PORT": str(port),
                "PAYRECON_LOG_LEVEL": "WARNING",
            }
            command = args.server.format(port=port).split() if args.server else load.payrecon_serve(args.workers)
            print(f"server: {' '.join(command[1:] if not args.server else command)}")
            with load.server(command, env, port) as served:
                for g in gateways:
                    requests_file = folder_path / f"{g.name}.tsv"
                    count = load.write_requests(requests_file, g.deliveries())
                    tps = ceiling.run(url, orders=100_000, seconds=args.seconds, clients=args.pg_clients)
                    before = asyncio.run(applied(url, g.name))
                    profile = args.profile and Path(args.profile) / f"{g.name}.folded"
                    with load.profiled(served.pid, profile or None, args.seconds):
                        result = load.run_wrk(
                            served.url + "/", requests_file, seconds=args.seconds, connections=args.connections
                        )
                    stored = asyncio.run(applied(url, g.name)) - before
                    rows.append((g.name, tps, result, stored, count))
                    print(
                        f"  {g.name}: ceiling {tps:,.0f} tps; {stored / result.seconds:,.0f} applied/s, "
                        f"p99 {result.p99_ms:.1f} ms",
                        flush=True,
                    )
    print()
    goal = f"goal (≥ {GOAL_RATIO} and p99 < {GOAL_P99_MS:g} ms)"
    head = "| gateway | ceiling (pgbench tps) | ingest (applied/s) | ratio | p50 ms | p99 ms | answers | errors |"
    print(f"{head} {goal} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, tps, r, stored, count in rows:
        rate = stored / r.seconds
        ratio = rate / tps
        wrapped = f" ({r.requests - count} re-sent)" if r.requests > count else ""
        met = "met" if ratio >= GOAL_RATIO and r.p99_ms < GOAL_P99_MS and r.errors == 0 else "NOT met"
        print(
            f"| {name} | {tps:,.0f} | {rate:,.0f} | {ratio:.2f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.requests:,}{wrapped} | {r.errors} | {met} |"
        )


if __name__ == "__main__":
    main()
