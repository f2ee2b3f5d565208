"""Benchmark: does ingest cost grow with history? The ingest figure on empty tables, then with 10 M stored events.

    .venv/bin/python bench/history.py [--history 10000000] [--seconds 10] [--gateways momo,stripe]

One private PostgreSQL (bench/pgserver.py), one `payrecon serve`, one run:
  1. the ingest figure of bench/ingest.py (ceiling, then wrk) per gateway on empty tables;
  2. `--history` events are bulk-loaded the way years of traffic would have left them
     (generate_series, server-side): a tenth as many orders, each with its events spread over
     the three gateways, one transition per order, 1 % of the events still quarantined (no
     order: the partial quarantine indexes are not empty), each order's paying payment
     (order_payments) and its outbox row (notifications, fanned out), payloads and raw bodies left out
     (they widen the heap, which an insert only appends to; the indexes are what could grow
     a transaction's cost). Secondary indexes, unique and foreign-key constraints are dropped
     for the load and rebuilt after, as a restore does; then VACUUM ANALYZE, as autovacuum would
     have done by then;
  3. the same figure again, with fresh orders and deliveries.
Prints both, and the ratio of the rate at 10 M to the rate on empty tables (goal ≥ 0.8). Beside
each figure, what the server's one ledger statement (service.ledger.sql.APPLY) cost PostgreSQL per
call, from pg_stat_statements: shared blocks touched (and of those, read in from outside
shared_buffers) and execution time. Blocks do not depend on how busy the machine is: if a lookup
grew with history, they would show it where a loaded machine's rates cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import ingest
import load
import msgspec
import pgserver

from service.ledger import sql

GOAL = 0.8
TABLES = ("payment_events", "orders", "transitions", "order_payments", "notifications")


async def load_history(url: str, events: int) -> None:
    conn = await asyncpg.connect(url, command_timeout=None)
    try:
        # wrk has stopped, but the server may still be answering what it had queued: let it finish,
        # or the DDL below deadlocks with its transactions.
        for _ in range(300):
            busy = await conn.fetchval(
                """select count(*) from pg_stat_activity
                   where pid <> pg_backend_pid() and backend_type = 'client backend' and state <> 'idle'"""
            )
            if not busy:
                break
            await asyncio.sleep(0.2)
        started = time.perf_counter()
        indexes = await conn.fetch(
            """select i.indexname, i.indexdef from pg_indexes i
               where i.schemaname = 'public' and i.tablename = any($1::text[])
                 and not exists (select 1 from pg_constraint c where c.conname = i.indexname)""",
            list(TABLES),
        )
        # Unique and foreign-key constraints too: checked row by row, 10 M inserts would take an hour
        # here; re-adding them afterwards validates everything once (a sort, a join).
        constraints = await conn.fetch(
            """select conrelid::regclass::text as tbl, conname, pg_get_constraintdef(oid) as def from pg_constraint
               where conrelid = any($1::regclass[]) and contype in ('u', 'f') order by contype desc""",
            list(TABLES),
        )
        for c in reversed(constraints):  # foreign keys first
            await conn.execute(f'alter table {c["tbl"]} drop constraint "{c["conname"]}"')
        for index in indexes:
            await conn.execute(f'drop index "{index["indexname"]}"')
        orders = max(1, events // 10)
        await conn.execute("set maintenance_work_mem = '1GB'")
        await conn.execute(
            """insert into orders (id, amount, currency, provider, account, reference, request_hash, status,
                                   status_at, paid_at, provider_payment_id, version, created_at, updated_at)
               select 'hist-' || i, 150000, 'VND', (array['stripe', 'momo', 'vnpay'])[1 + i % 3], 'default',
                      'hist-ref-' || i, 'history', 'succeeded', t, t, 'txn-' || i, 2, t, t
               from generate_series(1, $1) i, lateral (select now() - (i || ' seconds')::interval as t) at""",
            orders,
        )
        await conn.execute(
            """insert into order_references (provider, account, reference, order_id)
               select (array['stripe', 'momo', 'vnpay'])[1 + i % 3], 'default', 'hist-ref-' || i, 'hist-' || i
               from generate_series(1, $1) i""",
            orders,
        )
        print(f"  {orders:,} orders in {time.perf_counter() - started:.0f} s", flush=True)
        # Event e belongs to order 1 + e % orders; every hundredth is still in quarantine.
        await conn.execute(
            """insert into payment_events (provider, dedupe_key, account, reference, order_id, status, amount,
                                           currency, provider_payment_id, occurred_at, source, outcome,
                                           received_at, applied_at)
               select (array['stripe', 'momo', 'vnpay'])[1 + o % 3], 'hist:' || e, 'default',
                      case when e % 100 = 0 then 'hist-lost-' || e else 'hist-ref-' || o end,
                      case when e % 100 = 0 then null else 'hist-' || o end,
                      (array['pending', 'processing', 'succeeded'])[1 + e % 3], 150000, 'VND', 'txn-' || o,
                      t, 'webhook', case when e % 100 = 0 then 'unknown_order' else 'applied' end, t, t
               from generate_series(1, $1) e,
                    lateral (select 1 + e % $2 as o, now() - ((e / 10) || ' seconds')::interval as t) x""",
            events,
            orders,
        )
        print(f"  {events:,} events in {time.perf_counter() - started:.0f} s", flush=True)
        # One per order: events 1..orders belong to orders 2..orders, 1. By the events' own ids, which
        # need not start at 1 (the figures before the load have used the sequence).
        await conn.execute(
            """insert into transitions (order_id, event_id, from_status, to_status, from_version, to_version,
                                        refunded_amount, source, created_at, provider_payment_id)
               select 'hist-' || (1 + k.e % $1), x.id, 'pending', 'succeeded', 1, 2, 0, 'webhook', x.received_at,
                      x.provider_payment_id
               from payment_events x, lateral (select substr(x.dedupe_key, 6)::bigint as e) k
               where x.dedupe_key like 'hist:%' and k.e <= $1""",
            orders,
        )
        # What the ledger wrote beside each transition: the paying payment's row (ledger_step reads it
        # for every event of the order) and the outbox row, long since fanned out to the shop.
        await conn.execute(
            """insert into order_payments (order_id, provider_payment_id, provider, account, amount, currency, status,
                                           status_at, paid_at, first_seen_at, updated_at)
               select 'hist-' || i, 'txn-' || i, (array['stripe', 'momo', 'vnpay'])[1 + i % 3], 'default', 150000,
                      'VND', 'succeeded', t, t, t, t
               from generate_series(1, $1) i, lateral (select now() - (i || ' seconds')::interval as t) at""",
            orders,
        )
        await conn.execute(
            """insert into notifications (type, order_id, order_version, data, created_at, fanned_out_at)
               select 'order.succeeded', 'hist-' || i, 2, '{}', t, t
               from generate_series(1, $1) i, lateral (select now() - (i || ' seconds')::interval as t) at""",
            orders,
        )
        for index in indexes:
            await conn.execute(index["indexdef"])
        for c in constraints:  # unique ones first: a foreign key may need one
            await conn.execute(f'alter table {c["tbl"]} add constraint "{c["conname"]}" {c["def"]}')
        print(f"  indexes rebuilt at {time.perf_counter() - started:.0f} s", flush=True)
        await conn.execute("vacuum analyze")
        size = await conn.fetchval("select pg_size_pretty(pg_total_relation_size('payment_events'))")
        print(f"  history loaded in {time.perf_counter() - started:.0f} s; payment_events is {size}", flush=True)
    finally:
        await conn.close()


class Cost(msgspec.Struct, frozen=True):
    """pg_stat_statements' counters of the server's ledger statements (or their growth over a figure).

    `calls` counts events: one per `APPLY`, and one per row of a group-commit `APPLY_BATCH`.
    """

    calls: int = 0
    ms: float = 0.0
    hit: int = 0
    read: int = 0

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.calls - other.calls, self.ms - other.ms, self.hit - other.hit, self.read - other.read)

    def per_call(self) -> str:
        n = max(1, self.calls)
        return (
            f"{(self.hit + self.read) / n:.1f} blocks ({self.read / n:.2f} read), {self.ms / n:.2f} ms"
            " per applied event"
        )


async def apply_cost(url: str) -> Cost:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """select sum(case when query = $2 then rows else calls end)::bigint as calls, sum(total_exec_time) as ms,
                      sum(shared_blks_hit)::bigint as hit, sum(shared_blks_read)::bigint as read
               from pg_stat_statements where query in ($1, $2)""",
            sql.APPLY,
            sql.APPLY_BATCH,
        )
        return Cost(row["calls"] or 0, row["ms"] or 0.0, row["hit"] or 0, row["read"] or 0) if row else Cost()
    finally:
        await conn.close()


async def track_statements(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("create extension pg_stat_statements")
    finally:
        await conn.close()


def measure(
    g: ingest.Gateway, url: str, served: load.Served, folder: Path, **options: Any
) -> tuple[ingest.Figure, Cost]:
    """bench/ingest.py's figure, and what its ledger statements cost PostgreSQL per call."""
    start = asyncio.run(apply_cost(url))
    figure = ingest.measure(g, url, served, folder, **options)
    cost = asyncio.run(apply_cost(url)) - start
    print(f"    {cost.per_call()}", flush=True)
    return figure, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=10_000_000, help="stored events before the second figure")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pg-clients", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--events", type=int, default=15_000, help="distinct deliveries per gateway and figure")
    parser.add_argument("--gateways", default="momo,stripe")
    args = parser.parse_args()
    load.wrk_binary()
    print(load.machine())
    print(pgserver.describe())
    names = [n for n in args.gateways.split(",") if n]
    empty = [ingest.Gateway(n, args.events, tag="e") for n in names]
    # The same simulators again: a gateway's second batch continues its numbering (ingest.Gateway).
    full = [ingest.Gateway(g.name, args.events, tag="f", sim=g.sim) for g in empty]
    options = {"seconds": args.seconds, "connections": args.connections, "pg_clients": [args.pg_clients]}
    with (
        pgserver.private_postgres(preload=("pg_stat_statements",)) as url,
        tempfile.TemporaryDirectory() as folder,
    ):
        folder_path = Path(folder)
        asyncio.run(track_statements(url))
        asyncio.run(ingest.setup(url, [*empty, *full], ceiling_orders=ingest.CEILING_ORDERS))
        with ingest.payrecon(url, folder_path, empty, load.payrecon_serve(args.workers)) as served:
            print("empty tables:")
            before = [measure(g, url, served, folder_path, **options) for g in empty]
            print(f"loading {args.history:,} events of history:")
            asyncio.run(load_history(url, args.history))
            print(f"{args.history:,} stored events:")
            after = [measure(g, url, served, folder_path, **options) for g in full]
    size = f"{args.history / 1e6:g} M"
    print()
    print(
        f"| gateway | empty: applied/s | empty: ceiling tps | {size}: applied/s | {size}: ceiling tps "
        f"| {size} p99 ms | blocks per apply: empty → {size} | rate at {size} ÷ empty |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (b, b_cost), (a, a_cost) in zip(before, after, strict=True):
        ratio = a.rate / b.rate
        blocks = [(c.hit + c.read) / max(1, c.calls) for c in (b_cost, a_cost)]
        print(
            f"| {b.gateway} | {b.rate:,.0f} | {b.ceiling.tps:,.0f} | {a.rate:,.0f} | {a.ceiling.tps:,.0f} | "
            f"{a.wrk.p99_ms:.1f} | {blocks[0]:.1f} → {blocks[1]:.1f} | "
            f"{ratio:.2f} ({'met' if ratio >= GOAL else 'NOT met'}: goal ≥ {GOAL}) |"
        )


if __name__ == "__main__":
    main()
