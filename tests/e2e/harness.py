"""A running payrecon app wired to the three gateway simulators, for webhook and end-to-end tests.

The app is served by uvicorn on a free port in the test's own loop (service.serving.serving), its
adapters hold the simulators' credentials, and each simulator's webhooks point at the app.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from litestar import Litestar

from providers.momo.sim.simulator import WRONG_SECRET_KEY
from providers.simkit import Faults, SimulatedGateway
from providers.stripe.sim.signing import sign_header
from providers.stripe.sim.simulator import WRONG_WEBHOOK_SECRET
from providers.vnpay.sim.signing import signed_query_string
from providers.vnpay.sim.simulator import WRONG_HASH_SECRET
from service import apikeys, ledger
from service.app import create_app
from service.model import NewOrder
from service.serving import free_port, serving
from service.settings import Settings
from tests.gateways import GATEWAYS, adapters_for, sim_api_bases, simulator

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "vectors.json").read_text()
)["vectors"]


class Running(msgspec.Struct, kw_only=True):
    app: Litestar
    base_url: str
    http: httpx.AsyncClient  # talks to the app as a gateway does: no credentials
    api: httpx.AsyncClient  # talks to the REST API with an `orders:read` key
    sims: dict[str, SimulatedGateway]


@asynccontextmanager
async def running(settings: Settings, *, deliver: bool = False, faults: Faults | None = None) -> AsyncIterator[Running]:
    """The app with every gateway configured against its simulator.

    `deliver=True` points the simulators' webhooks at the app (their dispatchers send them);
    otherwise the test builds each delivery itself with the helpers below and sends it.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sims = {
        name: simulator(name, webhook_url=f"{base}/webhooks/{name}" if deliver else None, faults=faults)
        for name in GATEWAYS
    }
    app = create_app(settings, gateways=adapters_for(sims, sim_api_bases()))
    try:
        async with serving(app, port=port), httpx.AsyncClient(base_url=base, timeout=30.0) as http:
            async with app.state.pool.acquire() as conn:
                key = await apikeys.create(conn, "webhook-tests", ["orders:read"])
            headers = {"Authorization": f"Bearer {key.key}"}
            async with httpx.AsyncClient(base_url=base, timeout=30.0, headers=headers) as api:
                yield Running(app=app, base_url=base, http=http, api=api, sims=sims)
    finally:
        for sim in sims.values():
            await sim.dispatcher.aclose()


def vectors(provider: str, kind: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["provider"] == provider and v["kind"] == kind]


async def rejected(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every rejected_deliveries row, oldest first."""
    return await pool.fetch("select * from rejected_deliveries order by id")


async def rejected_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("select count(*) from rejected_deliveries")
    return count


# --- deliveries built exactly as each gateway builds them, with its simulator's own signing ---


def stripe_webhook(
    sim: SimulatedGateway, event: dict[str, Any] | None = None, *, timestamp: int | None = None, wrong_key: bool = False
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a Stripe delivery of `event` (default: the simulator's newest event)."""
    event = event if event is not None else sim.events[-1]  # type: ignore[attr-defined]
    body = json.dumps(event, indent=2).encode()  # Stripe pretty-prints, as the simulator does
    secrets = [WRONG_WEBHOOK_SECRET] if wrong_key else sim.webhook_secrets  # type: ignore[attr-defined]
    when = timestamp if timestamp is not None else int(time.time())
    headers = {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": sign_header(body, secrets, when)}
    return body, headers


def momo_webhook(sim: SimulatedGateway, reference: str, *, wrong_key: bool = False) -> bytes:
    """The IPN body MoMo POSTs for the payment's current state."""
    payment = sim.get_payment(reference)  # type: ignore[attr-defined]
    return sim.ipn_body(payment, secret=WRONG_SECRET_KEY if wrong_key else None)  # type: ignore[attr-defined,no-any-return]


def vnpay_webhook(sim: SimulatedGateway, reference: str, *, wrong_key: bool = False) -> str:
    """The IPN query string VNPay GETs for the transaction's current state."""
    params = sim.ipn_params(sim.transaction(reference))  # type: ignore[attr-defined]
    secret = WRONG_HASH_SECRET if wrong_key else sim.hash_secret  # type: ignore[attr-defined]
    return signed_query_string(params, secret)


# --- orders: registered through the ledger, read back through the REST API or PostgreSQL ---


async def register(
    pool: asyncpg.Pool,
    order_id: str,
    *,
    provider: str,
    amount: int,
    currency: str,
    reference: str | None = None,
    provider_data: dict[str, Any] | None = None,
) -> None:
    new = NewOrder(
        id=order_id,
        amount=amount,
        currency=currency,
        provider=provider,
        reference=reference,
        provider_data=provider_data or {},
    )
    await ledger.register_order(pool, new)


async def order_json(app: Running, order_id: str) -> dict[str, Any]:
    """The order as the REST API shows it (GET /v1/orders/{id})."""
    response = await app.api.get(f"/v1/orders/{order_id}")
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


async def order_row(pool: asyncpg.Pool, order_id: str) -> dict[str, Any]:
    """The order as stored, read straight from PostgreSQL (works while the app's database is cut off)."""
    row = await pool.fetchrow(
        "select status, amount, currency, refunded_amount, provider_payment_id, version from orders where id = $1",
        order_id,
    )
    assert row is not None, f"order {order_id} is not registered"
    return dict(row)


async def events_of(pool: asyncpg.Pool, provider: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "select dedupe_key, order_id, outcome, status, raw_body, raw_headers from payment_events"
        " where provider = $1 order by id",
        provider,
    )
