"""Shared helpers for the Stripe tests: vectors, accounts, signed deliveries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.base import WebhookRequest
from providers.stripe import Account, Adapter, EventsFeed
from providers.stripe.sim.signing import sign_header
from providers.stripe.sim.simulator import TEST_API_KEY, TEST_WEBHOOK_SECRET

VECTORS_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "vectors.json"
VECTORS: list[dict[str, Any]] = [
    v for v in json.loads(VECTORS_PATH.read_text())["vectors"] if v["provider"] == "stripe"
]
NOW = 1_764_000_060
OLD_SECRET = "whsec_payreconOLD1b2c3d4e5f60718293a4b5c6d7e8f901"


def vector(vector_id: str) -> dict[str, Any]:
    return next(v for v in VECTORS if v["id"] == vector_id)


def account(**overrides: Any) -> Account:
    fields: dict[str, Any] = {
        "account": "default",
        "api_base": "http://stripe.test",
        "api_key": TEST_API_KEY,
        "webhook_secrets": [TEST_WEBHOOK_SECRET],
    }
    fields.update(overrides)
    return Account(**fields)


def adapter(*accounts: Account) -> Adapter:
    return Adapter(list(accounts) or [account()])


def status_client(*accounts: Account, **kwargs: Any) -> EventsFeed:
    return EventsFeed(list(accounts) or [account()], **kwargs)


def at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def request(
    body: bytes, headers: dict[str, str], *, received: float = NOW, account_name: str | None = None
) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        body=body,
        headers={k.lower(): v for k, v in headers.items()},
        query_string="",
        account=account_name,
        received_at=at(received),
    )


def event(
    event_type: str, obj: dict[str, Any], *, event_id: str = "evt_test_1", created: int = NOW - 1, **top: Any
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "type": event_type,
        **top,
    }


def signed(
    payload: dict[str, Any] | bytes,
    *,
    secrets: list[str] | None = None,
    t: int = NOW - 1,
    received: float = NOW,
    account_name: str | None = None,
) -> WebhookRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, indent=2).encode()
    header = sign_header(body, secrets or [TEST_WEBHOOK_SECRET], t)
    return request(body, {"Stripe-Signature": header}, received=received, account_name=account_name)


def intent(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "pi_3T",
        "object": "payment_intent",
        "amount": 2599,
        "amount_capturable": 0,
        "amount_received": 0,
        "currency": "usd",
        "metadata": {"order_id": "ord_1"},
        "status": "requires_payment_method",
        "latest_charge": None,
        "last_payment_error": None,
        "cancellation_reason": None,
    }
    base.update(fields)
    return base


def charge(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "ch_3T",
        "object": "charge",
        "amount": 2599,
        "amount_captured": 2599,
        "amount_refunded": 0,
        "currency": "usd",
        "metadata": {"order_id": "ord_1"},
        "payment_intent": "pi_3T",
        "refunded": False,
        "status": "succeeded",
    }
    base.update(fields)
    return base
