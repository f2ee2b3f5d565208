"""Issue #5's proof that adapter, simulator and ledger agree: simulators deliver, orders end right.

Orders are registered first; then each simulator moves its payments the way the gateway would
and its own dispatcher sends the signed webhooks over real HTTP to the running app — with
duplicates and random delays that reorder them. Every order must end in the state the
gateway's story implies, each notification accepted, nothing refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from providers.base import PaymentStatus
from providers.simkit import Faults
from service.settings import Settings
from tests.e2e.harness import Running, order_json, register, rejected, running

S = PaymentStatus
FAULTS = Faults(duplicate_rate=0.5, max_delay=0.05, seed=20261124)

# gateway → order id → (amount, currency, the steps the payment goes through, final status)
STORIES: dict[str, dict[str, tuple[int, str, list[PaymentStatus | int], PaymentStatus]]] = {
    "stripe": {
        "st_paid": (4200, "USD", [S.PROCESSING, S.SUCCEEDED], S.SUCCEEDED),
        "st_declined": (1500, "EUR", [S.PROCESSING, S.FAILED], S.FAILED),
        "st_canceled": (990, "USD", [S.PENDING, S.CANCELED], S.CANCELED),
        "st_refunded": (150_000, "VND", [S.SUCCEEDED, 50_000], S.PARTIALLY_REFUNDED),
        "st_authorized": (7700, "USD", [S.AUTHORIZED], S.AUTHORIZED),
    },
    "momo": {
        "mo_paid": (120_000, "VND", [S.SUCCEEDED], S.SUCCEEDED),
        "mo_declined": (60_000, "VND", [S.CANCELED], S.CANCELED),
        "mo_authorized": (80_000, "VND", [S.AUTHORIZED], S.AUTHORIZED),
        "mo_captured": (90_000, "VND", [S.AUTHORIZED, S.SUCCEEDED], S.SUCCEEDED),
    },
    "vnpay": {
        "vn_paid": (150_000, "VND", [S.SUCCEEDED], S.SUCCEEDED),
        "vn_canceled": (36_000, "VND", [S.CANCELED], S.CANCELED),
        "vn_failed": (49_000, "VND", [S.FAILED], S.FAILED),
    },
}


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    async with running(settings, deliver=True, faults=FAULTS) as found:
        yield found


@pytest.mark.parametrize("gateway", sorted(STORIES))
async def test_simulator_webhooks_drive_orders_to_their_final_state(
    app: Running, pool: asyncpg.Pool, gateway: str
) -> None:
    sim = app.sims[gateway]
    story = STORIES[gateway]
    for order_id, (amount, currency, _, _) in story.items():
        payment = sim.create_payment(order_id=order_id, amount=amount, currency=currency)
        await register(
            pool,
            order_id,
            provider=gateway,
            amount=amount,
            currency=currency,
            reference=payment.reference,
            provider_data=payment.provider_data,
        )
        for step in story[order_id][2]:
            if isinstance(step, int):
                sim.refund(payment.reference, step)
            else:
                sim.set_status(payment.reference, step)

    await sim.dispatcher.drain()

    finals = {order_id: (await order_json(app, order_id))["status"] for order_id in story}
    assert finals == {order_id: str(final) for order_id, (*_, final) in story.items()}
    if gateway == "stripe":
        assert (await order_json(app, "st_refunded"))["refunded_amount"] == 50_000
    deliveries = sim.dispatcher.deliveries
    assert deliveries, "the simulator delivered nothing"
    assert all(d.accepted for d in deliveries), [d for d in deliveries if not d.accepted]
    assert sim.dispatcher.dropped == []
    assert await rejected(pool) == []
    # Duplicates were delivered and absorbed: one stored event per notification.
    notifications = {d.notification for d in deliveries}
    stored = await pool.fetchval("select count(*) from payment_events where provider = $1", gateway)
    assert stored == len(notifications)
    assert len(deliveries) > len(notifications)  # the seed makes duplicates: the test exercises them
