"""Two VNPay terminals sharing vnp_TxnRef values (issue 10.2): each order ends in its own state.

vnp_TxnRef is unique per terminal only, and every unpaid IPN carries vnp_TransactionNo=0, so
terminal B's cancel of its order 1001 looks exactly like terminal A's but for vnp_TmnCode. Both
through webhooks and through the reconciler's status answers, each terminal's news must reach
its own order — not be dropped as the other's duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import msgspec
import pytest

from providers.base import PaymentStatus
from providers.registry import gateways
from providers.simkit import SimulatedGateway
from reconciler.run import RunEnv, execute
from service import ledger, runs
from service.app import create_app
from service.gateways import build_gateways
from service.model import NewOrder
from service.runs import RunParams, Trigger
from service.serving import free_port, serving
from service.settings import Settings
from tests.e2e.harness import vnpay_webhook

S = PaymentStatus
TERMINALS = {"terminal_a": ("PRCNAAAA", "SECRETOFTERMINALA0000000000000AA"), "terminal_b": ("PRCNBBBB", "SECRETB0")}


class Terminals(msgspec.Struct, kw_only=True):
    sims: dict[str, SimulatedGateway]
    http: httpx.AsyncClient  # to the app, as VNPay calls it
    env: RunEnv


@pytest.fixture
async def terminals(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Terminals]:
    sims = {
        account: gateways()["vnpay"].simulator(tmn_code=tmn, hash_secret=secret, account=account)
        for account, (tmn, secret) in TERMINALS.items()
    }
    apps = {f"{account}.sim": httpx.ASGITransport(app=sim.asgi_app()) for account, sim in sims.items()}

    class Router(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await apps[request.url.host].handle_async_request(request)

    connected = build_gateways(
        {"vnpay": [sim.gateway_config(f"http://{account}.sim") for account, sim in sims.items()]}
    )
    settings = msgspec.structs.replace(settings, reconcile_grace=0.05)
    app = create_app(settings, gateways=connected)
    port = free_port()
    async with (
        serving(app, port=port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as http,
        httpx.AsyncClient(transport=Router(), timeout=5.0) as sim_http,
    ):
        yield Terminals(
            sims=sims, http=http, env=RunEnv(pool=pool, gateways=connected, http=sim_http, settings=settings)
        )


async def open_orders(pool: asyncpg.Pool, terminals: Terminals, reference: str) -> None:
    """One order per terminal, both paying with vnp_TxnRef `reference`."""
    for account, sim in terminals.sims.items():
        payment = sim.create_payment(
            order_id=f"{account}-{reference}", amount=150_000, currency="VND", account=account, reference=reference
        )
        assert payment.reference == reference
        new = NewOrder(
            id=f"{account}-{reference}",
            amount=150_000,
            currency="VND",
            provider="vnpay",
            account=account,
            reference=reference,
            provider_data=payment.provider_data,
        )
        await ledger.register_order(pool, new)


async def statuses(pool: asyncpg.Pool, reference: str) -> dict[str, str]:
    rows = await pool.fetch("select id, status from orders where reference = $1 order by id", reference)
    return {r["id"]: r["status"] for r in rows}


async def test_each_terminal_cancel_reaches_its_own_order_through_webhooks(
    terminals: Terminals, pool: asyncpg.Pool
) -> None:
    await open_orders(pool, terminals, "1001")
    answers = {}
    for account, sim in terminals.sims.items():
        sim.set_status("1001", S.CANCELED)  # no webhook_url: the test delivers the IPN itself
        response = await terminals.http.get(f"/webhooks/vnpay?{vnpay_webhook(sim, '1001')}")
        answers[account] = response.json()["RspCode"]

    assert answers == {"terminal_a": "00", "terminal_b": "00"}  # B's was answered 02 and dropped before
    assert await statuses(pool, "1001") == {"terminal_a-1001": "canceled", "terminal_b-1001": "canceled"}
    keys = await pool.fetch("select account, dedupe_key from payment_events where reference = '1001' order by id")
    assert [(r["account"], r["dedupe_key"].split(":")[1]) for r in keys] == [
        ("terminal_a", "terminal_a"),
        ("terminal_b", "terminal_b"),
    ]


async def test_each_terminal_is_repaired_by_the_reconciler(terminals: Terminals, pool: asyncpg.Pool) -> None:
    # Both payments fail (querydr then answers the same for both but the terminal), and every IPN
    # is lost: only the status answers can tell.
    await open_orders(pool, terminals, "1002")
    await open_orders(pool, terminals, "1003")
    for sim in terminals.sims.values():
        sim.set_status("1002", S.FAILED)
    terminals.sims["terminal_a"].set_status("1003", S.SUCCEEDED)
    terminals.sims["terminal_b"].set_status("1003", S.FAILED)
    await asyncio.sleep(0.1)  # past the grace period
    async with pool.acquire() as conn:
        run = await runs.create_run(conn, trigger=Trigger.CLI, params=RunParams())
    assert run is not None

    ended = await execute(terminals.env, run)

    assert ended is not None
    assert await statuses(pool, "1002") == {"terminal_a-1002": "failed", "terminal_b-1002": "failed"}
    assert await statuses(pool, "1003") == {"terminal_a-1003": "succeeded", "terminal_b-1003": "failed"}
