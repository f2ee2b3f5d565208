"""PostgreSQL unreachable: webhooks hear "retry later", and the redeliveries land exactly once.

The app reaches its database through a TCP proxy (tests.e2e.proxy) that the test cuts or
stalls; the test itself reads and writes through its own direct pool.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from providers.base import PaymentStatus
from service.app import settings_with
from service.ingest import APPLY_BUDGET, CONNECT_WAIT
from service.settings import Settings
from tests.e2e.harness import (
    Running,
    events_of,
    momo_webhook,
    order_json,
    order_row,
    register,
    rejected,
    running,
    stripe_webhook,
    vnpay_webhook,
)
from tests.e2e.proxy import TcpProxy

JSON = {"Content-Type": "application/json"}


class Outage:
    def __init__(self, app: Running, proxy: TcpProxy) -> None:
        self.app, self.proxy = app, proxy


@pytest.fixture
async def outage(settings: Settings, database_url: str) -> AsyncIterator[Outage]:
    proxy = TcpProxy.for_url(database_url)
    await proxy.start()
    try:
        proxied = settings_with(settings, database_url=proxy.url_through(database_url), db_pool_min=1)
        async with running(proxied) as app:
            yield Outage(app, proxy)
    finally:
        await proxy.close()


def unavailable(provider: str) -> float:
    return REGISTRY.get_sample_value("payrecon_webhooks_unavailable_total", {"provider": provider}) or 0.0


class Deliveries:
    """One succeeded payment per gateway, registered, and the webhook each gateway would send."""

    def __init__(self, app: Running) -> None:
        stripe, momo, vnpay = app.sims["stripe"], app.sims["momo"], app.sims["vnpay"]
        self.pi = stripe.create_payment(order_id="ord_s", amount=1200, currency="usd").reference
        stripe.set_status(self.pi, PaymentStatus.SUCCEEDED)
        self.stripe = stripe_webhook(stripe)
        momo.create_payment(order_id="ord_m", amount=60_000, currency="VND")
        momo.set_status("ord_m", PaymentStatus.SUCCEEDED)
        self.momo = momo_webhook(momo, "ord_m")
        vnpay.create_payment(order_id="ord_v", amount=70_000, currency="VND")
        vnpay.set_status("ord_v", PaymentStatus.SUCCEEDED)
        self.vnpay = vnpay_webhook(vnpay, "ord_v")

    async def register(self, pool: asyncpg.Pool) -> None:
        await register(pool, "ord_s", provider="stripe", amount=1200, currency="USD", reference=self.pi)
        await register(pool, "ord_m", provider="momo", amount=60_000, currency="VND")
        await register(pool, "ord_v", provider="vnpay", amount=70_000, currency="VND")

    async def send(self, http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        body, headers = self.stripe
        return (
            await http.post("/webhooks/stripe", content=body, headers=headers),
            await http.post("/webhooks/momo", content=self.momo, headers=JSON),
            await http.get(f"/webhooks/vnpay?{self.vnpay}"),
        )


def assert_retry(stripe: httpx.Response, momo: httpx.Response, vnpay: httpx.Response) -> None:
    assert stripe.status_code == 503
    assert momo.status_code == 503
    assert (vnpay.status_code, vnpay.json()["RspCode"]) == (200, "99")


async def test_database_down_then_back_lands_each_webhook_once(outage: Outage, pool: asyncpg.Pool) -> None:
    app = outage.app
    deliveries = Deliveries(app)
    await deliveries.register(pool)
    before = {name: unavailable(name) for name in ("stripe", "momo", "vnpay")}

    await outage.proxy.cut()
    started = time.monotonic()
    assert_retry(*await deliveries.send(app.http))
    assert time.monotonic() - started < 10  # refused connections fail fast: no webhook hangs
    forged = await app.http.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=ab"})
    assert forged.status_code == 400  # a refusal stays a refusal even when its row cannot be written
    assert {name: unavailable(name) - before[name] for name in before} == {"stripe": 1, "momo": 1, "vnpay": 1}
    metrics = (await app.http.get("/metrics")).text  # served without the database
    assert 'payrecon_webhooks_unavailable_total{provider="vnpay"}' in metrics
    for order_id in ("ord_s", "ord_m", "ord_v"):
        assert (await order_row(pool, order_id))["status"] == "pending"  # nothing acknowledged, nothing stored

    await outage.proxy.restore()
    stripe, momo, vnpay = await deliveries.send(app.http)  # the gateways' redeliveries
    assert (stripe.status_code, momo.status_code, vnpay.json()["RspCode"]) == (200, 204, "00")
    stripe, momo, vnpay = await deliveries.send(app.http)  # and one more: already stored
    assert (stripe.status_code, momo.status_code, vnpay.json()["RspCode"]) == (200, 204, "02")

    for order_id, provider in (("ord_s", "stripe"), ("ord_m", "momo"), ("ord_v", "vnpay")):
        order = await order_json(app, order_id)
        assert (order["status"], order["version"]) == ("succeeded", 2)
        assert len(await events_of(pool, provider)) == 1
    transitions = await pool.fetchval("select count(*) from transitions")
    assert transitions == 3
    assert await rejected(pool) == []  # the forged delivery's row was lost with the database: logged only


async def test_stalled_database_answers_retry_within_the_budget(outage: Outage, pool: asyncpg.Pool) -> None:
    app = outage.app
    deliveries = Deliveries(app)
    await deliveries.register(pool)

    outage.proxy.stall()  # connections stay open, nothing moves: only our own deadline ends the wait
    started = time.monotonic()
    body, headers = deliveries.stripe
    response = await app.http.post("/webhooks/stripe", content=body, headers=headers)
    waited = time.monotonic() - started

    assert response.status_code == 503
    assert waited < APPLY_BUDGET + 3
    started = time.monotonic()
    forged = await app.http.post("/webhooks/momo", content=b"{}", headers=JSON)
    assert forged.status_code == 400  # its row cannot be written; the refusal is still answered, in time
    assert time.monotonic() - started < 2 * CONNECT_WAIT + 3

    await outage.proxy.restore()
    response = await app.http.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200
    assert (await order_json(app, "ord_s"))["status"] == "succeeded"
    assert len(await events_of(pool, "stripe")) == 1
