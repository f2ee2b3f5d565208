"""Shared bits of the VNPay tests: the vectors, an adapter on the test terminal, request builders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.base import WebhookRequest
from providers.vnpay import Account, Adapter, StatusClient
from providers.vnpay.sim.signing import signed_query_string
from providers.vnpay.sim.simulator import TEST_HASH_SECRET, TEST_TMN_CODE

VECTORS_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "vectors.json"
VECTORS: list[dict[str, Any]] = [v for v in json.loads(VECTORS_PATH.read_text())["vectors"] if v["provider"] == "vnpay"]
RECEIVED_AT = datetime(2025, 11, 24, 10, 2, tzinfo=UTC)


def vectors(kind: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["kind"] == kind]


def vector(vector_id: str) -> dict[str, Any]:
    return next(v for v in VECTORS if v["id"] == vector_id)


def account(**overrides: Any) -> Account:
    fields: dict[str, Any] = {"tmn_code": TEST_TMN_CODE, "hash_secrets": [TEST_HASH_SECRET]}
    fields.update(overrides)
    return Account(**fields)


def adapter(*accounts: Account) -> Adapter:
    return Adapter(list(accounts) or [account()])


def status_client(*accounts: Account, **kwargs: Any) -> StatusClient:
    return StatusClient(list(accounts) or [account()], **kwargs)


def ipn(query_string: str, *, method: str = "GET", body: bytes = b"", url_account: str | None = None) -> WebhookRequest:
    return WebhookRequest(
        method=method,
        body=body,
        headers={},
        query_string=query_string,
        account=url_account,
        received_at=RECEIVED_AT,
    )


def ipn_params(**overrides: str) -> dict[str, str]:
    params = {
        "vnp_Amount": "15000000",
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14226112",
        "vnp_CardType": "ATM",
        "vnp_OrderInfo": "Thanh toan don hang ord1001",
        "vnp_PayDate": "20251124170112",
        "vnp_ResponseCode": "00",
        "vnp_TmnCode": TEST_TMN_CODE,
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": "ord1001",
    }
    params.update(overrides)
    return params


def signed_ipn(secret: str = TEST_HASH_SECRET, **overrides: str) -> WebhookRequest:
    return ipn(signed_query_string(ipn_params(**overrides), secret))
