"""A run that cannot check a candidate says so: `skipped` findings, and `partial` instead of `completed`.

Here an audit (a `since` sweep: every order of the window, whatever its backoff) meets orders
that another run holds leased; before issue 14 it reported `completed` having checked fewer
orders than it set out to, without a word. (MoMo: Stripe's events feed would check them anyway.)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import msgspec

from providers.simkit import Faults
from reconciler import candidates
from reconciler.run import LEASE_SECONDS, execute
from service import runs
from service.runs import FindingKind, RunParams, RunStatus, Trigger
from service.settings import Settings
from tests.reconciler.stage import S, staged

ORDERS = 10
HELD = 3


async def test_candidates_leased_to_another_run_are_skipped_not_silently_dropped(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    quick = msgspec.structs.replace(settings, reconcile_grace=0.05, reconcile_batch=HELD)
    async with staged(quick, pool, faults=Faults(drop_rate=1.0), gateways=("momo",)) as stage:
        for i in range(ORDERS):
            await stage.pay("momo", f"ord-{i:02}", [S.SUCCEEDED])
        await asyncio.sleep(0.1)
        since = datetime.now(UTC) - timedelta(hours=1)
        async with pool.acquire() as conn:
            other = await runs.create_run(conn, trigger=Trigger.API, params=RunParams())
            audit = await runs.create_run(conn, trigger=Trigger.CLI, params=RunParams(since=since))
        assert other is not None
        assert audit is not None
        # Another run's worker claims a batch and is still asking the gateway about it.
        rule = candidates.ClaimRule(
            run_id=other.id,
            grace=0.05,
            horizon=86400,
            since=None,
            gateways=["momo"],
            batch=HELD,
            lease=LEASE_SECONDS,
            dry_run=False,
            holder="elsewhere/1/alive",
        )
        await candidates.prepare(pool, rule)
        held, _ = await candidates.claim(pool, rule)
        assert len(held) == HELD
        async with httpx.AsyncClient(timeout=10) as http:
            ended = await execute(stage.env(http), audit)
        assert ended is not None
        assert ended.status is RunStatus.PARTIAL, ended.counts
        assert (ended.counts["planned"], ended.counts["checked"], ended.counts["skipped"]) == (
            ORDERS,
            ORDERS - HELD,
            HELD,
        )
        async with pool.acquire() as conn:
            skipped = await runs.list_findings(conn, audit.id, kind=FindingKind.SKIPPED, after_id=None, limit=100)
        assert {f.order_id for f in skipped} == {c.id for c in held}
        assert all(f"leased by run {other.id}" in (f.detail or "") for f in skipped)
