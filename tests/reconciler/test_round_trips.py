"""What a run costs the database per checked order: the ledger's one statement, and a few per batch.

Every statement the run sends is counted with asyncpg's query logger on each connection of the
run's pool. A check used to end in a transaction of its own (status read, finding insert, lease
release, BEGIN, COMMIT) and claims recomputed every candidate; now a batch of checks ends in
one transaction and a claim is one statement.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import msgspec

from providers.simkit import Faults
from reconciler.run import RunEnv, execute
from service import runs
from service.runs import FindingKind, RunParams, RunStatus, Trigger
from service.settings import Settings
from tests.reconciler.stage import S, staged
from tests.statements import counted_pool

ORDERS = 60  # per gateway: MoMo and VNPay (no events feed: every statement is the checks')
BATCH = 10
CONNECTIONS = 6


def kind(statement: str) -> str:
    for mark, name in (
        ("from ledger_apply(", "ledger apply"),
        ("insert into reconcile_findings", "findings insert"),
        ("update order_checks c set lease_until = null", "lease release"),
        ("from run_candidates rc cross join lateral", "claim"),
        ("select id, status from orders", "statuses"),
    ):
        if mark in statement:
            return name
    return "other"


async def test_a_run_writes_findings_and_ends_leases_a_batch_at_a_time(
    settings: Settings, pool: asyncpg.Pool, database_url: str
) -> None:
    quick = msgspec.structs.replace(settings, reconcile_grace=0.05, reconcile_batch=BATCH)
    async with staged(quick, pool, faults=Faults(drop_rate=1.0), gateways=("momo", "vnpay")) as stage:
        for gateway in ("momo", "vnpay"):
            for i in range(ORDERS):
                await stage.pay(gateway, f"{gateway}-{i:03}", [S.SUCCEEDED])  # its webhook lost
        await stage.drain()
        await asyncio.sleep(0.1)  # past the grace period
        checked = 2 * ORDERS
        async with counted_pool(database_url, CONNECTIONS) as (counted, logged), httpx.AsyncClient(timeout=10) as http:
            async with counted.acquire() as conn:
                run = await runs.create_run(conn, trigger=Trigger.CLI, params=RunParams())
            assert run is not None
            before = len(logged)
            ended = await execute(RunEnv(pool=counted, gateways=stage.adapters, http=http, settings=quick), run)
            await asyncio.sleep(0)  # the logger's callbacks run soon after each statement
            statements = [" ".join(q.query.split()) for q in logged[before:]]
    assert ended is not None
    assert ended.status is RunStatus.COMPLETED, ended.counts
    assert ended.counts["findings"] == {FindingKind.REPAIRED.value: checked}

    kinds = Counter(kind(s) for s in statements)
    batches = -(-checked // BATCH)
    assert kinds["ledger apply"] == checked  # the ledger's one statement per answer
    # A batch ends in one transaction: its statuses, its findings, its leases; a claim is one
    # statement. (Batches written early, because their oldest check waited a second on a slow
    # machine, are allowed for: half the batch size still tells one statement per check apart.)
    for name in ("findings insert", "lease release", "statuses", "claim"):
        assert batches <= kinds[name] <= 2 * batches + 2, (name, kinds)
    # Everything else (joining, the plan, heartbeats, BEGIN/COMMIT of the batches, the end) is a
    # handful per batch plus a fixed few per run, never one per check.
    assert kinds["other"] <= 3 * batches + 40, kinds
    assert len(statements) / checked < 2.5, kinds  # it was 6 and more: a transaction per check
