"""Benchmark: does ingest cost grow with history? The ingest figure on empty tables, then with 10 M stored events.

    .venv/bin/python bench/history.py [--history 10000000] [--seconds 10] [--gateways momo,stripe]

One private PostgreSQL (bench/pgserver.py), one `payrecon serve`, one run:
  1. the ingest figure of bench/ingest.py (ceiling, then wrk) per gateway on empty tables;
  2. `--history` events are bulk-loaded the way years of traffic would have left them
     (generate_series, server-side): a tenth as many orders, each with its events spread over
     the three gateways, one transition per order, 1 % of the events still quarantined (no
     order: the partial quarantine indexes are not empty), payloads and raw bodies left out
     (they widen the heap, which an insert only appends to; the indexes are what could grow
     a transaction's cost). Secondary indexes, unique and foreign-key constraints are dropped
     for the load and rebuilt after, as a restore does; then VACUUM ANALYZE, as autovacuum would
     have done by then;
  3. the same figure again, with fresh orders and deliveries.
Prints both, and the ratio of the rate at 10 M to the rate on empty tables (goal ≥ 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import asyncpg
import ingest
import load
import pgserver

GOAL = 0.8
TABLES = ("payment_events", "orders", "transitions")


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
        await conn.execute(
            """insert into transitions (order_id, event_id, from_status, to_status, from_version, to_version,
                                        refunded_amount, source, created_at)
               select 'hist-' || (1 + e % $2), e, 'pending', 'succeeded', 1, 2, 0, 'webhook', now()
               from generate_series(1, $1) e where e <= $2""",
            events,
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
    options = {"seconds": args.seconds, "connections": args.connections, "pg_clients": args.pg_clients}
    with pgserver.private_postgres() as url, tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        asyncio.run(ingest.setup(url, [*empty, *full], ceiling_orders=ingest.CEILING_ORDERS))
        with ingest.payrecon(url, folder_path, empty, load.payrecon_serve(args.workers)) as served:
            print("empty tables:")
            before = [ingest.measure(g, url, served, folder_path, **options) for g in empty]  # type: ignore[arg-type]
            print(f"loading {args.history:,} events of history:")
            asyncio.run(load_history(url, args.history))
            print(f"{args.history:,} stored events:")
            after = [ingest.measure(g, url, served, folder_path, **options) for g in full]  # type: ignore[arg-type]
    print()
    print(
        "| gateway | empty: applied/s | empty: ceiling tps | 10 M: applied/s | 10 M: ceiling tps | 10 M p99 ms "
        "| rate at 10 M ÷ empty |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for b, a in zip(before, after, strict=True):
        ratio = a.rate / b.rate
        print(
            f"| {b.gateway} | {b.rate:,.0f} | {b.ceiling.tps:,.0f} | {a.rate:,.0f} | {a.ceiling.tps:,.0f} | "
            f"{a.wrk.p99_ms:.1f} | {ratio:.2f} ({'met' if ratio >= GOAL else 'NOT met'}: goal ≥ {GOAL}) |"
        )


if __name__ == "__main__":
    main()
