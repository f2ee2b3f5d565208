"""ZaloPay settles orders end to end: callbacks through the app, and the reconciler through `/v2/query`.

The app and the simulator run on loopback HTTP under uvicorn, with real PostgreSQL: the same
path a production delivery and a production reconciliation run take.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import msgspec

from payrecon_zalopay import GATEWAY, Account
from payrecon_zalopay.sim import Simulator
from providers.base import PaymentStatus
from providers.gateway import Connected
from providers.simkit import Faults
from reconciler.run import RunEnv, execute
from service import ledger, runs
from service.app import create_app
from service.model import NewOrder
from service.runs import FindingKind, RunParams, RunStatus, Trigger
from service.serving import listening_socket, serving
from service.settings import Settings
from zalopay_fixtures import FAST_RETRY

S = PaymentStatus
AMOUNT = 150_000


class Stage(msgspec.Struct, kw_only=True):
    sim: Simulator
    zalopay: Connected
    pool: asyncpg.Pool
    references: dict[str, str] = {}  # order id → app_trans_id

    async def checkout(self, order_id: str, steps: list[PaymentStatus]) -> None:
        payment = self.sim.create_payment(order_id=order_id, amount=AMOUNT, currency="VND")
        order = NewOrder(id=order_id, amount=AMOUNT, currency="VND", provider="zalopay", reference=payment.reference)
        await ledger.register_order(self.pool, order)
        self.references[order_id] = payment.reference
        for step in steps:
            self.sim.set_status(payment.reference, step)

    async def statuses(self) -> dict[str, str]:
        return {r["id"]: r["status"] for r in await self.pool.fetch("select id, status from orders")}


@contextlib.asynccontextmanager
async def staged(settings: Settings, pool: asyncpg.Pool, faults: Faults) -> AsyncIterator[Stage]:
    app_socket = listening_socket()  # held: the simulators serve on free ports before the app does
    port = app_socket.getsockname()[1]
    sim = Simulator(webhook_url=f"http://127.0.0.1:{port}/webhooks/zalopay", faults=faults)
    try:
        async with contextlib.AsyncExitStack() as stack:
            sim_url = await stack.enter_async_context(serving(sim.asgi_app()))
            account = msgspec.convert({**sim.gateway_config(sim_url), "query_rate": 500.0}, Account)
            zalopay = GATEWAY.connect([account], retry=FAST_RETRY)
            await stack.enter_async_context(serving(create_app(settings, gateways={"zalopay": zalopay}), app_socket))
            yield Stage(sim=sim, zalopay=zalopay, pool=pool)
    finally:
        app_socket.close()
        await sim.dispatcher.aclose()


async def test_callbacks_settle_orders_once_however_often_zalopay_calls_back(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with staged(settings, pool, Faults(duplicate_rate=1.0, max_delay=0.05, seed=5)) as stage:
        for i in range(4):
            await stage.checkout(f"zp-paid-{i}", [S.SUCCEEDED])
        await stage.checkout("zp-unpaid", [])
        await stage.sim.dispatcher.drain()

        assert await stage.statuses() == {**{f"zp-paid-{i}": "succeeded" for i in range(4)}, "zp-unpaid": "pending"}
        # Every callback was sent twice; ZaloPay heard 1 for the first and 2 ("already processed") for the copy.
        deliveries = stage.sim.dispatcher.deliveries
        assert len(deliveries) == 8
        assert all(d.accepted and d.status_code == 200 for d in deliveries)
        rows = await pool.fetch("select provider_payment_id, dedupe_key from payment_events where provider='zalopay'")
        assert len(rows) == 4
        transitions = await pool.fetchval("select count(*) from transitions")
        assert transitions == 4
        paid = stage.sim.get_payment(stage.references["zp-paid-0"])
        order = await pool.fetchrow("select provider_payment_id, paid_at from orders where id = 'zp-paid-0'")
        assert order["provider_payment_id"] == str(paid.zp_trans_id)


async def test_a_forged_callback_is_refused_and_settles_nothing(settings: Settings, pool: asyncpg.Pool) -> None:
    async with staged(settings, pool, Faults(wrong_key=True)) as stage:
        await stage.checkout("zp-forged", [S.SUCCEEDED])
        await stage.sim.dispatcher.drain()
        assert await stage.statuses() == {"zp-forged": "pending"}
        assert stage.sim.dispatcher.deliveries
        assert not any(d.accepted for d in stage.sim.dispatcher.deliveries)
        assert all(d.status_code == 400 for d in stage.sim.dispatcher.deliveries)
        reasons = [r["reason"] for r in await pool.fetch("select reason from rejected_deliveries")]
        assert reasons
        assert set(reasons) == {reasons[0]}
        assert "signature" in reasons[0]


async def test_the_reconciler_settles_what_zalopay_never_called_back(settings: Settings, pool: asyncpg.Pool) -> None:
    quick = msgspec.structs.replace(settings, reconcile_grace=0.05)
    # Every callback is lost, and ZaloPay calls back for payments only: expiries, failures and
    # cancellations are never announced. The query API is the only way to learn them.
    scenario = {
        "zp-paid-a": [S.SUCCEEDED],
        "zp-paid-b": [S.PROCESSING, S.SUCCEEDED],
        "zp-expired": [S.CANCELED],
        "zp-failed": [S.FAILED],
        "zp-paying": [S.PROCESSING],
        "zp-unpaid": [],
    }
    async with staged(quick, pool, Faults(drop_rate=1.0, seed=1)) as stage:
        for order_id, steps in scenario.items():
            await stage.checkout(order_id, steps)
        await stage.sim.dispatcher.drain()
        assert set((await stage.statuses()).values()) == {"pending"}
        await asyncio.sleep(0.1)  # past the grace period

        async with pool.acquire() as conn:
            run = await runs.create_run(conn, trigger=Trigger.CLI, params=RunParams(), dry_run=False)
        assert run is not None
        async with httpx.AsyncClient(timeout=5.0) as http:
            ended = await execute(
                RunEnv(pool=pool, gateways={"zalopay": stage.zalopay}, http=http, settings=quick), run
            )
        assert ended is not None
        assert ended.status is RunStatus.COMPLETED, ended

        assert await stage.statuses() == {
            "zp-paid-a": "succeeded",
            "zp-paid-b": "succeeded",
            "zp-expired": "canceled",
            "zp-failed": "failed",
            "zp-paying": "processing",
            "zp-unpaid": "pending",
        }
        async with pool.acquire() as conn:
            found = {
                f.order_id: f for f in await runs.list_findings(conn, ended.id, kind=None, after_id=None, limit=100)
            }
        repaired = {o for o, f in found.items() if f.kind is FindingKind.REPAIRED}
        assert repaired == {"zp-paid-a", "zp-paid-b", "zp-expired", "zp-failed", "zp-paying"}
        assert found["zp-unpaid"].kind is FindingKind.IN_SYNC
