"""Benchmark: webhook ingest over HTTP (wrk) against the pgbench ceiling of the ledger's SQL, in one run.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 64] [--workers N] [--events 90000]
        [--pg-clients 8,64] [--batch-ceiling 16,2] [--rounds 3]

Everything runs on a private PostgreSQL 15 (bench/pgserver.py: its settings are printed) and a
private Redis, so other processes' tests are not in the figures. For each gateway, in turn:
  1. pgbench runs the ledger's own statements for one applied event (bench/ceiling.py) at each of
     `--pg-clients` (8 and 64): the best is the ceiling, measured right before the gateway's
     figure so machine noise hits both alike; then the group-commit statement the webhooks now
     run (`--batch-ceiling`: 16 events a statement, 2 clients, one per `serve` process), printed
     beside it with the ingest rate's ratio to it;
  2. wrk sends distinct signed deliveries (pre-signed into a file, read by bench/deliveries.lua)
     to `payrecon serve` in its own process(es), `--connections` at a time:
     - Stripe: `payment_intent.succeeded` of a NEW PaymentIntent per event, carrying
       `metadata.order_id` of a registered order (the claim path: the intent's id is unknown);
     - MoMo: the IPN POST of the order's payment; VNPay: the IPN GET with its signed query string.
The ingest rate counts events the ledger durably APPLIED (rows in payment_events with outcome
`applied` after the run, divided by wrk's duration), not HTTP answers. The ratio is to the
ceiling measured just before; p99 is wrk's. Steps 1-2 run `--rounds` times, each with its own
share of the deliveries, and the round with the median ratio is the gateway's figure (all
rounds' ratios are printed beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import ceiling
import ceiling_sql
import load
import msgspec
import pgserver

from providers.base import PaymentStatus
from providers.momo.sim.simulator import Simulator as MomoSimulator
from providers.stripe.sim.signing import sign_header
from providers.stripe.sim.simulator import Simulator as StripeSimulator
from providers.vnpay.sim.simulator import Simulator as VnpaySimulator
from service import embedded, migrate
from service.cli import gateways_toml
from service.serving import free_port

GATEWAYS = ("stripe", "momo", "vnpay")
PRICES = {"stripe": (1999, "USD"), "momo": (150_000, "VND"), "vnpay": (250_000, "VND")}
GOAL_RATIO, GOAL_P99_MS = 0.55, 50.0
CEILING_ORDERS = 100_000


class Gateway:
    """One simulated gateway: registers its orders in bulk and writes its pre-signed deliveries."""

    def __init__(self, name: str, count: int, tag: str = "", sim: Any = None) -> None:
        """`sim`: the simulator of an earlier figure, for a second batch of the same gateway's deliveries.

        One gateway numbers its payments once: a second simulator would count MoMo's transIds from
        the same start again, so the second batch's IPNs would carry the first's dedupe keys and be
        answered as duplicates instead of applied.
        """
        self.name, self.count = name, count
        self.amount, self.currency = PRICES[name]
        self.sim = sim or {"stripe": StripeSimulator, "momo": MomoSimulator, "vnpay": VnpaySimulator}[name]()
        self.orders = [f"{name}{tag}-{i:07d}" for i in range(count)]

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


async def applied(url: str, provider: str, since_id: int) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "select count(*) from payment_events where id > $2 and provider = $1 and outcome = 'applied'",
            provider,
            since_id,
        )
        return count
    finally:
        await conn.close()


async def last_event_id(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("select coalesce(max(id), 0) from payment_events"))
    finally:
        await conn.close()


class Figure(msgspec.Struct, frozen=True):
    gateway: str
    ceiling: ceiling.Ceiling
    clients: int  # pgbench clients of the ceiling: the count that gave the most
    wrk: load.WrkResult
    applied: int
    sent: int  # distinct deliveries in the file
    server_cpu: float  # seconds of CPU the server's processes used during the wrk run
    rounds: list[float] = []  # every round's ratio, when this is the median round of several
    batched: float = 0.0  # events/s of pgbench running the group-commit statement (ceiling_sql.batch_script…)

    @property
    def cpu_ms(self) -> float:
        """Server CPU per applied event (PostgreSQL's not included)."""
        return 1000 * self.server_cpu / max(1, self.applied)

    @property
    def rate(self) -> float:
        return self.applied / self.wrk.seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.ceiling.tps

    @property
    def batched_ratio(self) -> float:
        return self.rate / self.batched if self.batched else 0.0

    @property
    def met(self) -> bool:
        return self.ratio >= GOAL_RATIO and self.wrk.p99_ms < GOAL_P99_MS and self.wrk.errors == 0


def measure(
    g: Gateway,
    url: str,
    served: load.Served,
    folder: Path,
    *,
    seconds: float,
    connections: int,
    pg_clients: list[int],
    batch: tuple[int, int] | None = None,
    rounds: int = 1,
    profile: Path | None = None,
) -> Figure:
    """`rounds` times: the ceiling right before, then wrk with the next share of the gateway's pre-signed
    deliveries; counts applied events. The round of the median ratio is the figure: on a machine whose
    speed moves from one ten seconds to the next, one pair of runs can land on either side of the goal.
    """
    deliveries = g.deliveries()
    files = [folder / f"{g.name}.{r}.tsv" for r in range(rounds)]
    counts = [load.write_requests(f, itertools.islice(deliveries, g.count // rounds)) for f in files]
    figures = []
    for r, (requests_file, count) in enumerate(zip(files, counts, strict=True)):
        # The ceiling is what PostgreSQL allows at its best: at 64 clients on two cores it does less than at 8.
        tried = {c: ceiling.run(url, orders=CEILING_ORDERS, seconds=seconds, clients=c) for c in pg_clients}
        clients = max(tried, key=lambda c: tried[c].tps)
        limit = tried[clients]
        batched = 0.0
        if batch:  # what PostgreSQL allows the group-commit statement: `size` events a statement, `clients` at once
            size, batch_clients = batch
            _, text = ceiling_sql.batch_script_from_sql_module(size)
            found = ceiling.run(url, orders=CEILING_ORDERS, seconds=seconds, clients=batch_clients, text=text)
            batched = size * found.tps
        since = asyncio.run(last_event_id(url))
        cpu = load.cpu_seconds(served.pid)
        with load.profiled(served.pid, profile if r == 0 else None, seconds):
            result = load.run_wrk(served.url + "/", requests_file, seconds=seconds, connections=connections)
        cpu = load.cpu_seconds(served.pid) - cpu
        figure = Figure(
            g.name, limit, clients, result, asyncio.run(applied(url, g.name, since)), count, cpu, batched=batched
        )
        figures.append(figure)
        print(
            f"  {g.name} round {r + 1}: ceiling "
            + ", ".join(f"-c{c} {t.tps:,.0f} tps (p99 {t.p99_ms:.1f} ms)" for c, t in tried.items())
            + (f", group-commit statement {batched:,.0f} events/s" if batched else "")
            + f"; {figure.rate:,.0f} applied/s = {figure.ratio:.2f}, p99 {result.p99_ms:.1f} ms, "
            f"server CPU {figure.cpu_ms:.2f} ms per event",
            flush=True,
        )
    median = sorted(figures, key=lambda f: f.ratio)[len(figures) // 2]
    return msgspec.structs.replace(median, rounds=[f.ratio for f in figures])


@contextlib.contextmanager
def payrecon(
    url: str, folder: Path, gateways: list[Gateway], command: list[str] | None = None
) -> Iterator[load.Served]:
    """`payrecon serve` (or `command`, "{port}" replaced) with the gateways' accounts and a private Redis."""
    with embedded.redis_server(folder) as redis_url:
        gateways_file = folder / "gateways.toml"
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
        command = [c.format(port=port) for c in command] if command else load.payrecon_serve(None)
        print(f"server: {' '.join(command)}", flush=True)
        with load.server(command, env, port) as served:
            yield served


def table(figures: list[Figure]) -> None:
    goal = f"goal (≥ {GOAL_RATIO} and p99 < {GOAL_P99_MS:g} ms)"
    head = (
        "| gateway | ceiling (pgbench tps) | ceiling clients, p50 / p99 ms | ingest (applied/s) | ratio "
        "| p50 ms | p99 ms |"
    )
    print(f"{head} answers | errors | server CPU ms/event | {goal} | group-commit ceiling events/s | ÷ it |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for f in figures:
        r = f.wrk
        wrapped = f" ({r.requests - f.sent} re-sent)" if r.requests > f.sent else ""
        by_round = f" ({', '.join(f'{x:.2f}' for x in f.rounds)})" if len(f.rounds) > 1 else ""
        print(
            f"| {f.gateway} | {f.ceiling.tps:,.0f} | -c{f.clients}, {f.ceiling.p50_ms:.1f} / {f.ceiling.p99_ms:.1f} | "
            f"{f.rate:,.0f} | {f.ratio:.2f}{by_round} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.requests:,}{wrapped} | {r.errors} | {f.cpu_ms:.2f} | {'met' if f.met else 'NOT met'} | "
            f"{f.batched:,.0f} | {f.batched_ratio:.2f} |"
        )


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
    parser.add_argument(
        "--pg-clients", default="8,64", help="pgbench client counts tried for the ceiling; the best is the ceiling"
    )
    parser.add_argument(
        "--batch-ceiling",
        default="16,2",
        help="SIZE,CLIENTS: also pgbench the group-commit statement, SIZE events each, CLIENTS at once ('' to skip)",
    )
    parser.add_argument("--workers", type=int, default=None, help="payrecon serve --workers (default: its own)")
    parser.add_argument("--events", type=int, default=90_000, help="distinct deliveries per gateway, all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="ceiling + wrk pairs per gateway; the median is kept")
    parser.add_argument("--gateways", default=",".join(GATEWAYS))
    parser.add_argument("--server", help="a server command to measure instead ({port} replaced)")
    parser.add_argument("--profile", help="a folder: py-spy records the server during each wrk run (collapsed stacks)")
    args = parser.parse_args()
    load.wrk_binary()
    print(load.machine())
    print(pgserver.describe())
    source, _ = ceiling.script()
    pg_clients = [int(c) for c in args.pg_clients.split(",")]
    batch = None
    if args.batch_ceiling:
        size, batch_clients = (int(x) for x in args.batch_ceiling.split(","))
        batch = (size, batch_clients)
    print(f"ceiling SQL from {source}; pgbench -M prepared -j2, the best of -c {args.pg_clients}")
    gateways = [Gateway(n, args.events) for n in args.gateways.split(",") if n]
    command = args.server.split() if args.server else load.payrecon_serve(args.workers)
    figures = []
    with pgserver.private_postgres() as url, tempfile.TemporaryDirectory() as folder:
        asyncio.run(setup(url, gateways, ceiling_orders=CEILING_ORDERS))
        with payrecon(url, Path(folder), gateways, command) as served:
            for g in gateways:
                profile = Path(args.profile) / f"{g.name}.folded" if args.profile else None
                figures.append(
                    measure(
                        g,
                        url,
                        served,
                        Path(folder),
                        seconds=args.seconds,
                        connections=args.connections,
                        pg_clients=pg_clients,
                        batch=batch,
                        rounds=args.rounds,
                        profile=profile,
                    )
                )
    print()
    table(figures)


if __name__ == "__main__":
    main()
