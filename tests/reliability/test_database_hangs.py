"""PostgreSQL hangs (a partition: connections stay open, no byte moves) under webhook load.

The app reaches the test's database through a TCP proxy that the test stalls for a few seconds
mid-load. Every delivery must hear 2xx or the gateway's retry answer within the webhook budget,
never a 500, and once the database answers again every delivery lands exactly once.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from providers.base import PaymentStatus
from service.app import settings_with
from service.ingest import APPLY_BUDGET
from service.settings import Settings
from tests.e2e.harness import register, rejected, running, stripe_webhook
from tests.e2e.proxy import TcpProxy

ORDERS = 60
STALL = 3.0


async def test_a_hanging_database_gets_retry_answers_in_time_and_loses_nothing(
    settings: Settings, database_url: str, pool: asyncpg.Pool
) -> None:
    proxy = TcpProxy.for_url(database_url)
    await proxy.start()
    proxied = settings_with(settings, database_url=proxy.url_through(database_url), db_pool_min=2, db_pool_max=6)
    try:
        async with running(proxied) as app:
            stripe = app.sims["stripe"]
            deliveries = []
            for i in range(ORDERS):
                pi = stripe.create_payment(order_id=f"ord_{i}", amount=500 + i, currency="usd").reference
                await register(pool, f"ord_{i}", provider="stripe", amount=500 + i, currency="USD", reference=pi)
                stripe.set_status(pi, PaymentStatus.SUCCEEDED)
                deliveries.append(stripe_webhook(stripe))
            answers: list[tuple[int, float]] = []

            async def deliver(body: bytes, headers: dict[str, str], at: float) -> None:
                await asyncio.sleep(at)
                for _ in range(100):
                    started = time.monotonic()
                    try:
                        response = await app.http.post("/webhooks/stripe", content=body, headers=headers)
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                        continue
                    answers.append((response.status_code, time.monotonic() - started))
                    if response.status_code == 200:
                        return
                    await asyncio.sleep(0.2)
                raise AssertionError("never acknowledged")

            async def hang() -> None:
                await asyncio.sleep(0.5)
                proxy.stall()
                await asyncio.sleep(STALL)
                await proxy.restore()

            await asyncio.gather(hang(), *(deliver(b, h, i * 0.05) for i, (b, h) in enumerate(deliveries)))

        statuses = {status for status, _ in answers}
        assert statuses <= {200, 503}, statuses
        assert 503 in statuses  # the stall was felt
        assert max(seconds for _, seconds in answers) < APPLY_BUDGET + 2
        stored = await pool.fetchval("select count(*) from payment_events")
        transitions = await pool.fetchval("select count(*) from transitions")
        succeeded = await pool.fetchval("select count(*) from orders where status = 'succeeded'")
        assert (stored, transitions, succeeded) == (ORDERS, ORDERS, ORDERS)
        assert await rejected(pool) == []
    finally:
        await proxy.close()


async def test_api_reads_answer_503_while_the_database_is_gone(settings: Settings, database_url: str) -> None:
    proxy = TcpProxy.for_url(database_url)
    await proxy.start()
    try:
        async with running(settings_with(settings, database_url=proxy.url_through(database_url))) as app:
            assert (await app.api.get("/v1/orders")).status_code == 200
            await proxy.cut()
            for path in ("/v1/orders", "/v1/orders/ord_1", "/v1/anomalies"):
                response = await app.api.get(path)
                assert response.status_code == 503, (path, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.headers["retry-after"] == "5"
            # the key was verified before the cut (service.apikeys.KeyCache): its missing scope is
            # answered without the database, as it would be with it
            assert (await app.api.get("/v1/reconciliation/runs")).status_code == 403
            await proxy.restore()
            assert (await app.api.get("/v1/orders")).status_code == 200
    finally:
        await proxy.close()
