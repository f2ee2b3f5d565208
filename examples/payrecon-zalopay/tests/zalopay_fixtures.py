"""An adapter and a simulator holding the same credentials, the simulator's API reached in process."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from payrecon_zalopay import GATEWAY, Account
from payrecon_zalopay.sim import Simulator
from providers.base import StatusQuery, WebhookRequest, utcnow
from providers.gateway import Connected
from providers.http import RetryPolicy

API_BASE = "http://zalopay.sim"
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)


def connected(sim: Simulator, *, retry: RetryPolicy = FAST_RETRY, **overrides: Any) -> Connected:
    """ZaloPay holding the simulator's account (with `overrides`), its status API at API_BASE."""
    table = {**sim.gateway_config(API_BASE), **overrides}
    return GATEWAY.connect([msgspec.convert(table, Account)], retry=retry)


def client_for(sim: Simulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.asgi_app()), base_url=API_BASE)


def webhook(body: bytes, account: str | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        body=body,
        headers={"content-type": "application/json"},
        query_string="",
        account=account,
        received_at=utcnow(),
    )


def query(reference: str, amount: int = 150_000) -> StatusQuery:
    return StatusQuery(
        order_id="ord_1", account="default", reference=reference, amount=amount, currency="VND", created_at=utcnow()
    )
