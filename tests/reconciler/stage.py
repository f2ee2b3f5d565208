"""A stage for reconciler tests: the app and the three simulators over real HTTP, and orders paid through them.

Every simulator runs under uvicorn on its own port; its webhooks go to the app (through the fault
knobs), and the reconciler's adapters ask its status API over HTTP. The adapters retry quickly
so a gateway that is down costs milliseconds, not the production retry budget.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import httpx
import msgspec
from litestar import Litestar

from providers.base import PaymentStatus, StatusQuery
from providers.gateway import Connected
from providers.http import RetryPolicy
from providers.registry import gateways
from providers.simkit import Faults, SimulatedGateway
from reconciler.run import RunEnv
from service import ledger
from service.app import create_app
from service.model import NewOrder
from service.serving import listening_socket, serving
from service.settings import Settings
from tests.gateways import GATEWAYS, simulator

FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
PAY = {"stripe": (2500, "USD"), "momo": (50_000, "VND"), "vnpay": (120_000, "VND")}
S = PaymentStatus


class Stage(msgspec.Struct, kw_only=True):
    settings: Settings
    app: Litestar  # serving webhooks and the REST API at app_url
    pool: asyncpg.Pool
    app_url: str
    sims: dict[str, SimulatedGateway]
    sim_urls: dict[str, str]
    adapters: dict[str, Connected]
    references: dict[str, tuple[str, str]] = {}  # order id → (gateway, reference)
    queries: list[str] = []  # every status-API request the reconciler made: method, URL and body

    def env(self, http: httpx.AsyncClient) -> RunEnv:
        return RunEnv(pool=self.pool, gateways=self.adapters, http=http, settings=self.settings)

    def client(self, log: list[str] | None = None) -> httpx.AsyncClient:
        """An HTTP client for the reconciler that records each request in `log` (default: `queries`)."""
        sink = self.queries if log is None else log

        async def record(request: httpx.Request) -> None:
            sink.append(f"{request.method} {request.url} {request.content.decode(errors='replace')}")

        return httpx.AsyncClient(timeout=5.0, event_hooks={"request": [record]})

    async def drain(self) -> None:
        for sim in self.sims.values():
            await sim.dispatcher.drain()

    async def pay(self, gateway: str, order_id: str, steps: Sequence[PaymentStatus]) -> None:
        """Register an order for a new payment at `gateway`, then move the payment through `steps`."""
        amount, currency = PAY[gateway]
        sim = self.sims[gateway]
        payment = sim.create_payment(order_id=order_id, amount=amount, currency=currency)
        await ledger.register_order(
            self.pool,
            NewOrder(
                id=order_id,
                amount=amount,
                currency=currency,
                provider=gateway,
                reference=payment.reference,
                provider_data=payment.provider_data,
            ),
        )
        self.references[order_id] = (gateway, payment.reference)
        for step in steps:
            if step is S.PARTIALLY_REFUNDED:
                sim.refund(payment.reference, amount // 2)
            else:
                sim.set_status(payment.reference, step)

    async def gateway_truth(self, http: httpx.AsyncClient) -> dict[str, str]:
        """What each gateway's status API says of every order now (asked directly, outside any run)."""
        truth: dict[str, str] = {}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("select id, amount, currency, created_at, provider_data from orders")
        for row in rows:
            gateway, reference = self.references[row["id"]]
            query = StatusQuery(
                order_id=row["id"],
                account="default",
                reference=reference,
                amount=row["amount"],
                currency=row["currency"],
                created_at=row["created_at"],
                provider_data=row["provider_data"],
            )
            event = await self.adapters[gateway].status.fetch_status(query, http)
            truth[row["id"]] = "missing" if event is None else event.status.value
        return truth

    async def ledger(self) -> dict[str, str]:
        return {r["id"]: r["status"] for r in await self.pool.fetch("select id, status from orders")}

    async def versions(self) -> dict[str, int]:
        return {r["id"]: r["version"] for r in await self.pool.fetch("select id, version from orders")}

    def set_faults(self, gateway: str, faults: Faults) -> None:
        self.sims[gateway].replace_faults(faults)  # type: ignore[attr-defined]


def reconciler_adapters(
    sims: dict[str, SimulatedGateway], urls: dict[str, str], *, concurrency: int = 8
) -> dict[str, Connected]:
    adapters: dict[str, Connected] = {}
    for name, sim in sims.items():
        table: dict[str, Any] = {
            **sim.gateway_config(urls[name]),
            "query_rate": 500.0,
            "query_concurrency": concurrency,
        }
        gateway = gateways()[name]
        adapters[name] = gateway.connect([msgspec.convert(table, gateway.account)], retry=FAST_RETRY)
    return adapters


@contextlib.asynccontextmanager
async def staged(
    settings: Settings,
    pool: asyncpg.Pool,
    *,
    faults: Faults | None = None,
    gateways: Sequence[str] = GATEWAYS,
    concurrency: int = 8,
) -> AsyncIterator[Stage]:
    """The app (webhooks) and the simulators (status APIs), all on real loopback HTTP."""
    faults = faults or Faults()
    app_socket = listening_socket()  # held: the simulators serve on free ports before the app does
    port = app_socket.getsockname()[1]
    sims = {
        name: simulator(
            name,
            webhook_url=f"http://127.0.0.1:{port}/webhooks/{name}",
            faults=msgspec.structs.replace(faults, seed=None if faults.seed is None else faults.seed + i),
        )
        for i, name in enumerate(gateways)
    }
    try:
        async with contextlib.AsyncExitStack() as stack:
            urls = {name: await stack.enter_async_context(serving(sim.asgi_app())) for name, sim in sims.items()}
            adapters = reconciler_adapters(sims, urls, concurrency=concurrency)
            app = create_app(settings, gateways=adapters)
            app_url = await stack.enter_async_context(serving(app, app_socket))
            yield Stage(
                settings=settings, app=app, pool=pool, app_url=app_url, sims=sims, sim_urls=urls, adapters=adapters
            )
    finally:
        app_socket.close()
        for sim in sims.values():
            await sim.dispatcher.aclose()
