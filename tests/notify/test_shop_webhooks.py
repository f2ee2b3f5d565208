"""Outbound webhooks end to end over real HTTP (issue 11): the API, the ledger's outbox, an arq worker
delivering, and a shop that verifies every delivery with the reference `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from providers.base import PaymentStatus
from reconciler.worker import close_worker, create_worker
from service import ledger
from service.app import create_app
from service.model import Source
from service.notify import deliveries, signing
from service.serving import serving
from service.settings import Settings
from tests.gateways import configured
from tests.notify.shop import Shop
from tests.service.test_ledger import event
from tests.service.test_orders_api import key_for, problem_fields

S = PaymentStatus
ORDER = {"id": "ord_w1", "amount": 2599, "currency": "USD", "provider": "stripe", "reference": "pi_w1"}
STEPS = [S.PROCESSING, S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Retries in milliseconds instead of hours, a sweep every second, no reconciliation in the way."""
    return msgspec_replace(
        settings, webhook_retry_scale=0.0002, webhook_sweep_every=1.0, reconcile_every=3600.0, reconcile_audit_every=0.0
    )


def msgspec_replace(settings: Settings, **changes: Any) -> Settings:
    return msgspec.structs.replace(settings, **changes)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    worker = create_worker(settings, gateways=configured(), handle_signals=False, poll_delay=0.05)
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await close_worker(worker)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    """Poll `check` (a condition in another process's hands: the worker, the database) until it holds."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 (nothing to wait on: the condition is in the database)
            await asyncio.sleep(0.1)


@pytest.fixture
async def api(fast: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    key = await key_for(pool, "orders:read", "orders:write", "webhooks:read", "webhooks:write")
    async with (
        serving(create_app(fast, gateways=configured())) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}) as client,
    ):
        yield client


async def walk_the_order(pool: asyncpg.Pool) -> None:
    """Paid, then refunded in two steps; and one transition that rolls back (never announced)."""
    at = event(S.PROCESSING).occurred_at
    assert at is not None
    for i, status in enumerate(STEPS):
        refunded = {S.PARTIALLY_REFUNDED: 1000, S.REFUNDED: 2599}.get(status)
        news = event(
            status,
            provider="stripe",
            reference="pi_w1",
            amount=2599,
            currency="USD",
            at=at.replace(second=i),
            refunded_amount=refunded,
        )
        if status is S.SUCCEEDED:
            rolled_back = event(S.FAILED, provider="stripe", reference="pi_w1", amount=2599, currency="USD")
            assert (await ledger.apply(pool, rolled_back, Source.WEBHOOK, dry_run=True)).kind == "applied"
        assert (await ledger.apply(pool, news, Source.WEBHOOK)).kind == "applied", status


async def test_a_paid_then_refunded_order_reaches_the_shop_once_per_transition(
    api: httpx.AsyncClient, fast: Settings, pool: asyncpg.Pool
) -> None:
    created = await api.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks"})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    endpoint_id = created.json()["endpoint"]["id"]

    # The shop fails every notification's first delivery, and is down until the order is refunded.
    shop = Shop([secret], refuse=lambda _id, seen: seen == 0)
    assert (await api.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"url": shop.url})).status_code == 200
    assert (await api.post("/v1/orders", json=ORDER)).status_code == 201

    async with running_worker(fast):
        await walk_the_order(pool)

        async def tried_while_down() -> bool:
            return bool(await pool.fetchval("select count(*) >= 4 from webhook_attempts where status_code is null"))

        await eventually(tried_while_down)
        async with shop.up():

            async def all_acknowledged() -> bool:
                return len(shop.acknowledged()) == len(STEPS)

            await eventually(all_acknowledged)

    assert shop.forged == 0
    done = shop.acknowledged()
    kinds = sorted((r.payload["data"]["version"], r.payload["type"]) for r in done.values())
    assert kinds == [
        (2, "order.processing"),
        (3, "order.succeeded"),
        (4, "order.partially_refunded"),
        (5, "order.refunded"),
    ]
    assert "order.failed" not in {r.payload["type"] for r in shop.received}  # the rolled-back transition
    for item in done.values():
        assert item.payload["data"]["order"]["id"] == "ord_w1"
        assert item.payload["data"]["order"]["version"] == item.payload["data"]["version"]
    # at least once: every repeat is the same message (same webhook-id, same bytes)
    by_id: dict[str, set[bytes]] = {}
    for item in shop.received:
        by_id.setdefault(item.webhook_id, set()).add(item.body)
    assert all(len(bodies) == 1 for bodies in by_id.values())
    assert all(sum(1 for r in shop.received if r.webhook_id == w) >= 2 for w in by_id)  # the refused first tries

    log = (await api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")).json()
    assert [d["status"] for d in log["items"]] == ["delivered"] * 4
    for delivery in log["items"]:
        codes = [a["status_code"] for a in delivery["attempts"]]
        assert codes[-1] == 204
        assert 500 in codes
        assert None in codes  # tried while the shop was down
        assert all(a["latency_ms"] >= 0 for a in delivery["attempts"])
        assert delivery["webhook_id"] == signing.message_id(delivery["notification_id"])


async def test_redelivery_rotation_and_the_circuit(api: httpx.AsyncClient, fast: Settings, pool: asyncpg.Pool) -> None:
    created = (
        await api.post(
            "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/x", "event_types": ["order.processing"]}
        )
    ).json()
    endpoint_id, old = created["endpoint"]["id"], created["secret"]
    assert (await api.post("/v1/orders", json=ORDER)).status_code == 201
    await ledger.apply(
        pool, event(S.PROCESSING, provider="stripe", reference="pi_w1", amount=2599, currency="USD"), Source.WEBHOOK
    )
    await ledger.apply(
        pool, event(S.SUCCEEDED, provider="stripe", reference="pi_w1", amount=2599, currency="USD"), Source.WEBHOOK
    )

    # Nobody listens: the failures open the circuit.
    retrying_before = REGISTRY.get_sample_value("payrecon_notification_deliveries_total", {"result": "retrying"}) or 0
    async with httpx.AsyncClient() as http:
        for _ in range(6):
            await deliveries.deliver_due(pool, http, scale=0.0)
    retrying = REGISTRY.get_sample_value("payrecon_notification_deliveries_total", {"result": "retrying"})
    assert (retrying or 0) - retrying_before >= 5
    endpoint = (await api.get(f"/v1/webhook-endpoints/{endpoint_id}")).json()
    assert endpoint["consecutive_failures"] >= 5
    assert endpoint["circuit_open_until"] is not None
    log = (await api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")).json()["items"]
    assert [d["type"] for d in log] == ["order.processing"]  # its event_types filter

    rotated = await api.post(f"/v1/webhook-endpoints/{endpoint_id}/secret/rotate", json={"overlap_seconds": 3600})
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert rotated.json()["endpoint"]["live_secrets"] == 2

    shop_old, shop_new = Shop([old]), Shop([new])
    for shop in (shop_old, shop_new):
        assert (
            await api.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"url": shop.url, "enabled": True})
        ).status_code == 200
        async with shop.up(), httpx.AsyncClient() as http:
            redone = await api.post(f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{log[0]['id']}/redeliver")
            assert redone.status_code == 202
            await deliveries.deliver_due(pool, http, scale=0.0)
        assert [r.acknowledged for r in shop.received] == [True]  # each secret alone verifies during the overlap
    assert shop_old.received[0].webhook_id == shop_new.received[0].webhook_id == log[0]["webhook_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x.example/h"}, "url"),
        ({"url": "http://x.example/h", "event_types": ["order.paid"]}, "event_types[0]"),
        ({"url": "http://x.example/h", "bogus": 1}, "bogus"),
        ({}, "url"),
    ],
)
async def test_bad_endpoints_are_400_naming_the_field(api: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    answer = await api.post("/v1/webhook-endpoints", json=body)
    assert answer.status_code == 400
    assert problem_fields(answer) == [field]


async def test_webhook_scopes(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    reader = await key_for(pool, "orders:read")
    answer = await api.get("/v1/webhook-endpoints", headers={"authorization": f"Bearer {reader}"})
    assert answer.status_code == 403
    assert (await api.get("/v1/webhook-endpoints/12345")).status_code == 404
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "insert into api_keys (name, prefix, key_hash, scopes) values ('x', 'p', 'h', '{webhooks:admin}')"
        )


async def test_a_deleted_endpoint_gets_nothing_more(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    made = (await api.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/gone"})).json()
    endpoint_id = made["endpoint"]["id"]
    assert (await api.post("/v1/orders", json=ORDER)).status_code == 201
    news = event(S.PROCESSING, provider="stripe", reference="pi_w1", amount=2599, currency="USD")
    await ledger.apply(pool, news, Source.WEBHOOK)
    async with pool.acquire() as conn:
        await deliveries.fan_out(conn)
    pending = (await api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")).json()["items"]
    assert [d["status"] for d in pending] == ["pending"]

    assert (await api.delete(f"/v1/webhook-endpoints/{endpoint_id}")).status_code == 204
    assert (await api.get(f"/v1/webhook-endpoints/{endpoint_id}")).status_code == 404
    assert (await api.delete(f"/v1/webhook-endpoints/{endpoint_id}")).status_code == 404
    assert (await api.get("/v1/webhook-endpoints")).json()["items"] == []
    redo = await api.post(f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{pending[0]['id']}/redeliver")
    assert redo.status_code == 404
    async with httpx.AsyncClient() as http:
        assert await deliveries.deliver_due(pool, http) == 0  # the pending delivery is not attempted
