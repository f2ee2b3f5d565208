"""Every backend of the app's database terminated mid-load: no 500, nothing lost, nothing applied twice.

The test database is this test's own clone, so terminating its backends touches nobody else's
work (the shared server itself is never stopped). A gateway retries every non-2xx: the test does
the same until each delivery is acknowledged, then checks what PostgreSQL holds.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from providers.base import PaymentStatus
from service.app import settings_with
from service.settings import Settings
from tests.e2e.harness import register, rejected, running, stripe_webhook

ORDERS = 120
ROUNDS = 6


async def terminate_backends(admin: asyncpg.Connection, database: str) -> int:
    """pg_terminate_backend on every backend of `database` (ours alone) but the admin connection.

    Each call waits (up to 5 s) until its backend has exited, so the storm is over when the last round returns.
    """
    killed: int = await admin.fetchval(
        "select count(*) from (select pg_terminate_backend(pid, 5000) from pg_stat_activity"
        " where datname = $1 and pid <> pg_backend_pid()) t",
        database,
    )
    return killed


async def test_terminated_backends_mid_load_never_answer_500(
    settings: Settings, database_url: str, pool: asyncpg.Pool
) -> None:
    async with running(settings_with(settings, db_pool_min=4, db_pool_max=8)) as app:
        stripe = app.sims["stripe"]
        deliveries: list[tuple[bytes, dict[str, str]]] = []
        for i in range(ORDERS):
            pi = stripe.create_payment(order_id=f"ord_{i}", amount=1000 + i, currency="usd").reference
            await register(pool, f"ord_{i}", provider="stripe", amount=1000 + i, currency="USD", reference=pi)
            stripe.set_status(pi, PaymentStatus.SUCCEEDED)
            deliveries.append(stripe_webhook(stripe))
        database = await pool.fetchval("select current_database()")
        statuses: list[int] = []

        async def deliver(body: bytes, headers: dict[str, str]) -> None:
            for _ in range(60):  # a gateway's redeliveries, compressed
                try:
                    response = await app.http.post("/webhooks/stripe", content=body, headers=headers)
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                statuses.append(response.status_code)
                if response.status_code == 200:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("a delivery was never acknowledged")

        async def killer() -> None:
            admin = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/postgres")
            try:
                for _ in range(ROUNDS):
                    await asyncio.sleep(0.15)
                    await terminate_backends(admin, database)
            finally:
                await admin.close()

        room = asyncio.Semaphore(12)

        async def one(body: bytes, headers: dict[str, str]) -> None:
            async with room:
                await deliver(body, headers)

        kill = asyncio.create_task(killer())
        await asyncio.gather(*(one(b, h) for b, h in deliveries))
        await kill

        assert 500 not in statuses, f"answers: {sorted(set(statuses))}"
        assert set(statuses) <= {200, 503}
        # The storm terminated this test's own idle connections too: read through fresh ones.
        await pool.expire_connections()
        stored = await pool.fetchval("select count(*) from payment_events where provider = 'stripe'")
        succeeded = await pool.fetchval("select count(*) from orders where status = 'succeeded'")
        transitions = await pool.fetchval("select count(*) from transitions")
        assert (stored, succeeded, transitions) == (ORDERS, ORDERS, ORDERS)
        assert [r["reason"] for r in await rejected(pool)] == []  # a connectivity blip is no rejection
        # The pool is whole again: a burst of reads right after the storm all succeed.
        answers = await asyncio.gather(*(app.api.get(f"/v1/orders/ord_{i}") for i in range(20)))
        assert {a.status_code for a in answers} == {200}
