"""Shared helpers for the MoMo tests: the vectors of tests/fixtures, signed IPNs, an adapter on the test account."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from providers.base import WebhookRequest
from providers.momo import Account, Adapter, StatusClient, signing

VECTORS_PATH = Path(__file__).parents[2] / "fixtures" / "vectors.json"
MOMO_VECTORS: list[dict[str, Any]] = [
    v for v in json.loads(VECTORS_PATH.read_text("utf-8"))["vectors"] if v["provider"] == "momo"
]

PARTNER = "MOMOPAYRECON2026"
ACCESS = "PRtestAccessKey01"
SECRET = "PRtestSecretKey0123456789abcdefXY"


def vector(vector_id: str) -> dict[str, Any]:
    return next(v for v in MOMO_VECTORS if v["id"] == vector_id)


def account(**overrides: Any) -> Account:
    fields: dict[str, Any] = {"partner_code": PARTNER, "access_key": ACCESS, "secret_keys": [SECRET]}
    return Account(**(fields | overrides))


def ipn_fields(**overrides: Any) -> dict[str, Any]:
    """A valid IPN (momo-01's fields) before signing."""
    fields: dict[str, Any] = {
        "partnerCode": PARTNER,
        "orderId": "ord_1001",
        "requestId": "req_ord_1001_01",
        "amount": 150000,
        "orderInfo": "Thanh toan don hang ord_1001",
        "orderType": "momo_wallet",
        "transId": 4088878653,
        "resultCode": 0,
        "message": "Successful.",
        "payType": "qr",
        "responseTime": 1764000063942,
        "extraData": "",
    }
    return fields | overrides


def signed_ipn(secret: str = SECRET, access_key: str = ACCESS, **overrides: Any) -> dict[str, Any]:
    fields = ipn_fields(**overrides)
    message = signing.raw_string(signing.IPN_FIELDS, {**fields, "accessKey": access_key})
    return fields | {"signature": signing.sign(secret, message)}


def request(body: bytes | dict[str, Any], *, account: str | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return WebhookRequest(
        method="POST",
        body=raw,
        headers={"content-type": "application/json"},
        query_string="",
        account=account,
        received_at=datetime(2025, 11, 24, 16, 1, 5, tzinfo=UTC),
    )


def adapter(*accounts: Account) -> Adapter:
    return Adapter(list(accounts) or [account()])


def status_client(*accounts: Account, **kwargs: Any) -> StatusClient:
    return StatusClient(list(accounts) or [account()], **kwargs)
