"""Benchmark: the reconciler — CPU per checked order, throughput under gateway latency, memory vs candidates.

    .venv/bin/python bench/reconcile.py [--orders 10000] [--latency-orders 3000] [--latency 0.05]
                                        [--concurrency 16] [--latency-concurrency 4] [--rss-candidates 1000000]

The three simulators run in a SEPARATE process (bench/simulators.py), so their CPU is not the
reconciler's; PostgreSQL is a private server (bench/pgserver.py). Orders are registered in bulk
(SQL), a third per gateway, each paid at its gateway while every webhook was lost. Phases, all in
one run of one process (the reconciler's figures are this process's CPU and memory):

  1. 0 ms latency: a run repairs `--orders` orders (status query over HTTP → ledger apply →
     finding), then a `since` sweep finds them all in sync. Candidates/s and CPU ms per checked
     order (this process's user+system time ÷ checked).
  2. `--latency` (50 ms) added to every status answer: a run repairs `--latency-orders` orders
     with `--latency-concurrency` query slots per account (3 accounts). Expected throughput is
     slots ÷ latency; the goal is ≥ 90 % of it while checking (the run's start to its last
     finding; the whole run adds Stripe's events catch-up). The mean query time and how busy the
     slots were tell the simulators' own time from the reconciler's.
  3. Memory: 10,000 open orders unknown to the gateways, checked for up to `--rss-seconds`;
     then `--rss-candidates` (1 M) more, checked for the same time. Peak RSS of this process
     during each (sampled every 0.2 s) must stay flat: a run holds a batch and its in-flight
     checks, never the candidate list.

Every run also reports its checking phase: the database time of its first and last finding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pgserver
import psutil
import simulators

from providers.base import StatusQuery
from providers.http import RetryPolicy
from providers.registry import gateways
from reconciler.http import http_client
from reconciler.run import RunEnv, execute
from service import db, metrics, migrate, runs
from service.settings import load_settings

HERE = Path(__file__).resolve().parent


async def register(pool: asyncpg.Pool, prefix: str, count: int) -> None:
    """`count` pending orders `prefix-i` at gateway i % 3 with the references bench/simulators.py uses."""
    async with pool.acquire() as conn:
        await conn.execute(
            """with o as (
                   select i, $1 || '-' || i as id, (array['stripe', 'momo', 'vnpay'])[1 + i % 3] as provider
                   from generate_series(0, $2 - 1) i),
               r as (
                   select o.*, case when provider = 'stripe' then 'pi_' || replace(id, '-', '_') else id end as ref
                   from o),
               inserted as (
                   insert into orders (id, amount, currency, provider, account, reference, request_hash, created_at)
                   select id, (array[1999, 150000, 250000])[1 + i % 3], (array['USD', 'VND', 'VND'])[1 + i % 3],
                          provider, 'default', ref, 'bench', now() - interval '1 minute'
                   from r)
               insert into order_references (provider, account, reference, order_id, provider_data)
               select provider, 'default', ref, id,
                      case when provider = 'vnpay' then jsonb_build_object('vnp_create_date', $3::text)
                           else '{}'::jsonb end
               from r""",
            prefix,
            count,
            simulators.VNPAY_CREATE_DATE,
            timeout=3600,  # 1 M rows take minutes on a busy machine (the pool's command timeout is 30 s)
        )
        await conn.execute("analyze orders, order_references", timeout=3600)


def adapters(tables: dict[str, dict[str, object]], concurrency: int) -> dict[str, object]:
    built = {}
    for name, table in tables.items():
        gateway = gateways()[name]
        account = msgspec.convert({**table, "query_concurrency": concurrency, "query_rate": 100_000.0}, gateway.account)
        built[name] = gateway.connect([account], retry=RetryPolicy(attempts=2, base_delay=0.01))
    return built


async def set_latency(tables: dict[str, dict[str, object]], latency: float) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for table in tables.values():
            answer = await client.put(f"{table['api_base']}/_sim/faults", json={"api_latency": latency})
            answer.raise_for_status()


async def bare_client(
    built: dict[str, object], http: httpx.AsyncClient, prefix: str, orders: int, per_account: int
) -> tuple[float, float]:
    """(queries/s, mean seconds per query) of a client that does nothing but ask: `per_account` slots per
    gateway, each asking its orders one after another, through the same adapters, connections and
    simulators as the run, with no run, ledger or limiter around them.

    What the simulators and HTTP allow this many slots on this machine: the most a run could do.
    """
    times: list[float] = []

    async def slot(gateway: int, first: int) -> None:
        name = simulators.GATEWAYS[gateway]
        adapter: Any = built[name]
        amount, currency = simulators.PRICES[name]
        for i in range(gateway + 3 * first, orders, 3 * per_account):
            order_id = f"{prefix}-{i}"
            query = StatusQuery(
                order_id=order_id,
                account="default",
                reference=simulators.reference(name, order_id),
                amount=amount,
                currency=currency,
                created_at=datetime.now(UTC),
                provider_payment_id=None,
                provider_data=simulators.provider_data(name),
            )
            started = time.perf_counter()
            await adapter.status.fetch_status(query, http)
            times.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(slot(g, k) for g in range(3) for k in range(per_account)))
    return len(times) / (time.perf_counter() - started), sum(times) / len(times)


class Peak:
    """This process's resident memory, sampled while a block runs."""

    def __init__(self) -> None:
        self.bytes = 0
        self._process = psutil.Process()

    async def sample(self) -> None:
        while True:
            self.bytes = max(self.bytes, self._process.memory_info().rss)
            await asyncio.sleep(0.2)


class Figure(msgspec.Struct):
    label: str
    checked: int
    seconds: float  # the whole run: plan, checks, the lead's last walk, Stripe's catch-up, the end
    cpu: float
    findings: str
    peak_rss: int = 0
    first: float = 0.0  # seconds from the run's start to its first finding (database clock)
    last: float = 0.0  # … and to its last: the checking phase
    queries: int = 0  # status queries made (service.metrics' histogram)
    query_seconds: float = 0.0  # their time, summed: what the query slots were busy with

    @property
    def rate(self) -> float:
        return self.checked / self.seconds

    @property
    def checking_rate(self) -> float:
        """Checks per second from the run's start to its last finding (the catch-up and the end left out)."""
        return self.checked / self.last if self.last else 0.0


def query_time() -> tuple[float, int]:
    """Seconds and number of every status query so far, from the reconciler's own histogram."""
    seconds, count = 0.0, 0
    for family in metrics.GATEWAY_QUERY_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                seconds += sample.value
            elif sample.name.endswith("_count"):
                count += int(sample.value)
    return seconds, count


async def timed_run(env: RunEnv, label: str, *, since: datetime | None = None, limit: float | None = None) -> Figure:
    async with env.pool.acquire() as conn:
        run = await runs.create_run(conn, trigger=runs.Trigger.CLI, params=runs.RunParams(since=since))
    assert run is not None
    peak = Peak()
    sampler = asyncio.create_task(peak.sample())
    asked = query_time()
    cpu, started = time.process_time(), time.perf_counter()
    task = asyncio.create_task(execute(env, run, lead=True))
    try:
        ended = await asyncio.wait_for(asyncio.shield(task), limit) if limit else await task
    except TimeoutError:
        task.cancel()  # bounded: the run stays `running` in this scratch database
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        ended = None
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    query_seconds, queries = (now - before for now, before in zip(query_time(), asked, strict=True))
    sampler.cancel()
    async with env.pool.acquire() as conn:
        counts = await conn.fetch("select kind, count(*) from reconcile_findings where run_id = $1 group by 1", run.id)
        first, last = await conn.fetchrow(
            """select extract(epoch from min(f.created_at) - r.started_at),
                      extract(epoch from max(f.created_at) - r.started_at)
               from reconcile_findings f join reconcile_runs r on r.id = f.run_id
               where f.run_id = $1 group by r.started_at""",
            run.id,
        ) or (0, 0)
    checked = sum(r[1] for r in counts)
    kinds = ", ".join(f"{r[0]} {r[1]}" for r in sorted(counts))
    if ended is not None:
        assert ended.counts["checked"] == checked, (ended.counts, checked)
    figure = Figure(
        label, checked, seconds, cpu, kinds, peak.bytes, float(first), float(last), int(queries), query_seconds
    )
    print(
        f"  {label}: {checked:,} checked in {seconds:.1f} s = {figure.rate:,.0f}/s "
        f"(first finding after {figure.first:.1f} s, last after {figure.last:.1f} s: {figure.checking_rate:,.0f}/s), "
        f"{1000 * cpu / max(1, checked):.2f} ms CPU each, peak RSS {peak.bytes / 2**20:.0f} MiB ({kinds})",
        flush=True,
    )
    return figure


def main(args: argparse.Namespace) -> None:
    paid = [f"rA:{args.orders}", f"rB:{args.latency_orders}"]
    sims = subprocess.Popen(
        [sys.executable, str(HERE / "simulators.py"), *(a for p in paid for a in ("--paid", p))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert sims.stdout is not None
        tables = json.loads(sims.stdout.readline())
        print(f"simulators: process {sims.pid}, {args.orders + args.latency_orders:,} paid payments")
        print(pgserver.describe())
        with pgserver.private_postgres() as url:
            asyncio.run(phases(args, url, tables))
    finally:
        sims.terminate()
        sims.wait()


async def phases(args: argparse.Namespace, url: str, tables: dict[str, dict[str, object]]) -> None:
    pool = await db.create_pool(url, min_size=2, max_size=20)
    try:
        async with pool.acquire() as conn:
            await migrate.migrate(conn)
        await run_phases(args, pool, tables)
    finally:
        await pool.close()


async def run_phases(args: argparse.Namespace, pool: asyncpg.Pool, tables: dict[str, dict[str, object]]) -> None:
    figures: list[Figure] = []
    s = load_settings({}, reconcile_grace=0.001, reconcile_batch=args.batch, database_url="unused")
    fast_gateways = adapters(tables, args.concurrency)
    slow_gateways = adapters(tables, args.latency_concurrency)
    # The client a worker builds for its gateways (reconciler.limits.http_client): one kept-alive
    # connection per query slot.
    async with http_client(fast_gateways) as fast_http, http_client(slow_gateways) as slow_http:
        fast = RunEnv(pool=pool, gateways=fast_gateways, http=fast_http, settings=s)
        print(f"1. 0 ms latency, {args.concurrency} query slots per account:")
        await set_latency(tables, 0.0)
        await register(pool, "rA", args.orders)
        began = datetime.now(UTC).replace(year=2000)
        figures.append(await timed_run(fast, f"repair {args.orders:,} (0 ms)"))
        figures.append(await timed_run(fast, f"in-sync sweep {args.orders:,} (0 ms)", since=began))

        slots = 3 * args.latency_concurrency
        expected = slots / args.latency
        print(f"2. {args.latency * 1000:.0f} ms latency, {args.latency_concurrency} query slots per account:")
        slow = RunEnv(pool=pool, gateways=slow_gateways, http=slow_http, settings=s)
        await set_latency(tables, args.latency)
        bare_rate, bare_time = await bare_client(
            slow_gateways, slow_http, "rB", min(args.latency_orders, 40 * slots), args.latency_concurrency
        )
        print(
            f"  a bare client with the same {slots} slots: {bare_rate:,.0f} queries/s, {bare_time * 1000:.1f} ms each"
        )
        await register(pool, "rB", args.latency_orders)
        latency_figure = await timed_run(slow, f"repair {args.latency_orders:,} ({args.latency * 1000:.0f} ms)")
        figures.append(latency_figure)
        await set_latency(tables, 0.0)

        print(f"3. memory: candidates unknown to the gateways, each run for up to {args.rss_seconds:.0f} s:")
        rss = []
        for prefix, count in (("rS", 10_000), ("rL", args.rss_candidates)):
            started = time.perf_counter()
            await register(pool, prefix, count)
            print(f"  registered {count:,} open orders in {time.perf_counter() - started:.0f} s", flush=True)
            figure = await timed_run(fast, f"{count:,} candidates", limit=args.rss_seconds)
            rss.append(figure)
            figures.append(figure)

    print()
    print(
        "| run | checked | seconds | checked/s | first finding s | last finding s | checked/s while checking "
        "| CPU ms per check | peak RSS MiB | findings |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for f in figures:
        print(
            f"| {f.label} | {f.checked:,} | {f.seconds:.1f} | {f.rate:,.0f} | {f.first:.1f} | {f.last:.1f} "
            f"| {f.checking_rate:,.0f} | {1000 * f.cpu / max(1, f.checked):.2f} | {f.peak_rss / 2**20:.0f} "
            f"| {f.findings} |"
        )
    ratio, whole = latency_figure.checking_rate / expected, latency_figure.rate / expected
    answered = latency_figure.query_seconds / max(1, latency_figure.queries)
    busy = latency_figure.query_seconds / (slots * latency_figure.last) if latency_figure.last else 0.0
    print(
        f"\n{args.latency * 1000:.0f} ms latency: {latency_figure.checking_rate:,.0f}/s while checking, of "
        f"{slots} slots ÷ {args.latency:g} s = {expected:,.0f}/s expected: {ratio:.0%} (goal ≥ 90 %: "
        f"{'met' if ratio >= 0.9 else 'NOT met'}); over the whole run, catch-up and end included: {whole:.0%}. "
        f"A query took {answered * 1000:.1f} ms on average (the simulators' own time on top of the latency): "
        f"the slots were busy {busy:.0%} of the checking time. A bare client with the same slots, asking and "
        f"nothing else, did {bare_rate:,.0f}/s ({bare_time * 1000:.1f} ms a query): the run did "
        f"{latency_figure.checking_rate / bare_rate:.0%} of that"
    )
    growth = rss[1].peak_rss / rss[0].peak_rss
    reached = f"reached after {rss[1].first:.1f} s" if rss[1].checked else "NOT reached"
    print(
        f"peak RSS with {args.rss_candidates:,} candidates ÷ with 10,000: {growth:.2f} "
        f"({'flat' if growth < 1.1 else 'NOT flat'}; checking {reached}); "
        f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--latency-orders", type=int, default=3_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16, help="query slots per gateway account at 0 ms")
    parser.add_argument("--latency-concurrency", type=int, default=4, help="query slots per account at --latency")
    parser.add_argument("--rss-candidates", type=int, default=1_000_000)
    parser.add_argument("--rss-seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=50)
    main(parser.parse_args())
