"""Refused deliveries through real HTTP: the gateway's rejection answer, a row, a metric — never a 500."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from providers.base import PaymentStatus
from providers.momo.sim.simulator import DEFAULT_SECRET_KEY as MOMO_SECRET
from providers.vnpay.sim.signing import signed_query_string
from providers.vnpay.sim.simulator import TEST_HASH_SECRET
from service.app import settings_with
from service.settings import Settings
from tests.e2e.harness import (
    Running,
    momo_webhook,
    rejected,
    running,
    stripe_webhook,
    vectors,
    vnpay_webhook,
)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    async with running(settings_with(settings, webhook_max_body=4096)) as found:
        yield found


def rejected_metric(provider: str, reason: str) -> float:
    labels = {"provider": provider, "reason": reason}
    return REGISTRY.get_sample_value("payrecon_webhooks_rejected_total", labels) or 0.0


async def only_row(pool: asyncpg.Pool) -> asyncpg.Record:
    rows = await rejected(pool)
    assert len(rows) == 1, rows
    return rows[0]


def stripe_paid(app: Running) -> None:
    sim = app.sims["stripe"]
    payment = sim.create_payment(order_id="ord_s1", amount=2500, currency="usd")
    sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)


async def test_stripe_wrong_key_is_refused_with_a_row(app: Running, pool: asyncpg.Pool) -> None:
    stripe_paid(app)
    body, headers = stripe_webhook(app.sims["stripe"], wrong_key=True)
    before = rejected_metric("stripe", "signature")

    response = await app.http.post("/webhooks/stripe", content=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["reason"] == "signature"
    row = await only_row(pool)
    assert (row["provider"], row["account"], row["reason"]) == ("stripe", None, "signature")
    assert row["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert row["body_size"] == len(body)
    assert row["remote_addr"] == "127.0.0.1"
    assert "secret" in row["detail"]
    assert rejected_metric("stripe", "signature") == before + 1
    metrics = (await app.http.get("/metrics")).text
    assert 'payrecon_webhooks_rejected_total{provider="stripe",reason="signature"}' in metrics
    assert 'payrecon_webhooks_received_total{provider="stripe"}' in metrics


async def test_stripe_timestamp_outside_tolerance_is_a_replay(app: Running, pool: asyncpg.Pool) -> None:
    stripe_paid(app)
    body, headers = stripe_webhook(app.sims["stripe"], timestamp=int(time.time()) - 3600)

    response = await app.http.post("/webhooks/stripe", content=body, headers=headers)

    assert response.status_code == 400
    assert (await only_row(pool))["reason"] == "replay"


async def test_stripe_vectors_signed_long_ago_are_refused(app: Running, pool: asyncpg.Pool) -> None:
    # Correctly signed in 2025 (valid at the vector's `now`), replayed today: never accepted.
    for vector in vectors("stripe", "webhook"):
        body = vector["input"]["body"].encode()
        response = await app.http.post("/webhooks/stripe", content=body, headers=vector["input"]["headers"])
        assert response.status_code == 400, vector["id"]
    rows = await rejected(pool)
    assert len(rows) == len(vectors("stripe", "webhook"))
    assert {row["reason"] for row in rows} <= {"replay", "signature", "malformed"}
    valid = [v for v in vectors("stripe", "webhook") if v["valid"]]
    replays = [row for row in rows if row["reason"] == "replay"]
    assert len(replays) >= len(valid)


async def test_stripe_reserialized_body_is_refused(app: Running, pool: asyncpg.Pool) -> None:
    stripe_paid(app)
    body, headers = stripe_webhook(app.sims["stripe"])
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()  # same JSON, other bytes
    assert compact != body

    response = await app.http.post("/webhooks/stripe", content=compact, headers=headers)

    assert response.status_code == 400
    row = await only_row(pool)
    assert row["reason"] == "signature"
    assert row["body_sha256"] == hashlib.sha256(compact).hexdigest()


async def test_oversized_body_is_413_with_a_row(app: Running, pool: asyncpg.Pool) -> None:
    body = b'{"pad":"' + b"x" * 10_000 + b'"}'
    response = await app.http.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": "t=1,v1=00"})

    assert response.status_code == 413
    assert response.json()["error"]["reason"] == "malformed"
    row = await only_row(pool)
    assert (row["provider"], row["reason"], row["body_size"]) == ("stripe", "body_too_large", len(body))
    assert "4096" in row["detail"]


async def test_oversized_chunked_body_is_413_without_reading_it_all(app: Running, pool: asyncpg.Pool) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for _ in range(4):
            yield b"y" * 2000

    response = await app.http.post("/webhooks/momo", content=chunks())

    assert response.status_code == 413
    row = await only_row(pool)
    assert (row["provider"], row["reason"]) == ("momo", "body_too_large")
    assert 4096 < row["body_size"] <= 8000


async def test_oversized_body_for_an_unknown_gateway_is_a_413_problem(app: Running, pool: asyncpg.Pool) -> None:
    response = await app.http.post("/webhooks/paypal", content=b"z" * 5000)

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await only_row(pool))["reason"] == "body_too_large"


async def test_unknown_provider_is_404_problem_with_a_row(app: Running, pool: asyncpg.Pool) -> None:
    before = rejected_metric("_unknown", "unknown_provider")

    response = await app.http.post("/webhooks/paypal/main", content=b'{"id":"x"}', headers={"X-Sig": "1"})

    assert response.status_code == 404
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "paypal" in problem["detail"]
    row = await only_row(pool)
    assert (row["provider"], row["account"], row["reason"]) == ("paypal", "main", "unknown_provider")
    assert row["body_sha256"] == hashlib.sha256(b'{"id":"x"}').hexdigest()
    assert rejected_metric("_unknown", "unknown_provider") == before + 1


async def test_unknown_account_is_refused_with_a_row(app: Running, pool: asyncpg.Pool) -> None:
    stripe_paid(app)
    body, headers = stripe_webhook(app.sims["stripe"])

    response = await app.http.post("/webhooks/stripe/elsewhere", content=body, headers=headers)

    assert response.status_code == 400
    row = await only_row(pool)
    assert (row["provider"], row["account"], row["reason"]) == ("stripe", "elsewhere", "unknown_account")


async def test_momo_wrong_key_is_refused(app: Running, pool: asyncpg.Pool) -> None:
    sim = app.sims["momo"]
    sim.create_payment(order_id="ord_m1", amount=50_000, currency="VND")
    sim.set_status("ord_m1", PaymentStatus.SUCCEEDED)
    body = momo_webhook(sim, "ord_m1", wrong_key=True)

    response = await app.http.post("/webhooks/momo", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert (await only_row(pool))["reason"] == "signature"


def tampered(provider: str, kind: str, secret: str) -> list[dict[str, Any]]:
    # Negative vectors made by editing a signed request. (The others — a good request checked
    # with a wrong secret — verify fine for us, who hold the right one.)
    return [v for v in vectors(provider, kind) if not v["valid"] and v["secret"] == secret]


@pytest.mark.parametrize("vector", tampered("momo", "ipn", MOMO_SECRET), ids=lambda v: v["id"])
async def test_momo_tampered_vectors_are_refused(app: Running, pool: asyncpg.Pool, vector: dict[str, Any]) -> None:
    given = vector["input"]
    response = await app.http.post("/webhooks/momo", content=given["body"].encode(), headers=given["headers"])

    assert response.status_code == 400
    assert (await only_row(pool))["reason"] == "signature"


async def test_vnpay_bad_signature_is_97_and_malformed_is_99(app: Running, pool: asyncpg.Pool) -> None:
    sim = app.sims["vnpay"]
    sim.create_payment(order_id="ord_v1", amount=150_000, currency="VND")
    sim.set_status("ord_v1", PaymentStatus.SUCCEEDED)
    forged = vnpay_webhook(sim, "ord_v1", wrong_key=True)

    bad_signature = await app.http.get(f"/webhooks/vnpay?{forged}")
    malformed = await app.http.get("/webhooks/vnpay?hello=world")

    assert (bad_signature.status_code, bad_signature.json()["RspCode"]) == (200, "97")
    assert (malformed.status_code, malformed.json()["RspCode"]) == (200, "99")
    assert [row["reason"] for row in await rejected(pool)] == ["signature", "malformed"]


@pytest.mark.parametrize("vector", tampered("vnpay", "ipn", TEST_HASH_SECRET), ids=lambda v: v["id"])
async def test_vnpay_tampered_vectors_answer_97(app: Running, pool: asyncpg.Pool, vector: dict[str, Any]) -> None:
    response = await app.http.get(f"/webhooks/vnpay?{vector['input']['query_string']}")

    assert response.status_code == 200
    assert response.json() == vector["ack"]["body"]
    assert (await only_row(pool))["reason"] == "signature"


async def test_momo_deeply_nested_body_is_malformed_not_an_adapter_error(app: Running, pool: asyncpg.Pool) -> None:
    # Issue 10.6: a RecursionError inside the decode was recorded as adapter_error with a traceback.
    body = b'{"partnerCode":' + b"[" * 2000 + b"]" * 2000 + b"}"  # within the 4 KiB cap

    response = await app.http.post("/webhooks/momo", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"error": "malformed"}
    assert (await only_row(pool))["reason"] == "malformed"


async def test_vnpay_amount_not_vnd_times_100_is_04_and_unknown_terminal_is_97(
    app: Running, pool: asyncpg.Pool
) -> None:
    # Issue 10.6, from VNPay's IPN sample: it checks the checksum with the merchant's own secret
    # (an unknown terminal's cannot match: 97), then compares vnp_Amount / 100 with the order (04).
    sim = app.sims["vnpay"]
    sim.create_payment(order_id="ord_v9", amount=150_000, currency="VND")
    sim.set_status("ord_v9", PaymentStatus.SUCCEEDED)
    params = sim.ipn_params(sim.transaction("ord_v9"))  # type: ignore[attr-defined]
    odd_amount = signed_query_string({**params, "vnp_Amount": "15000050"}, TEST_HASH_SECRET)
    stranger = signed_query_string({**params, "vnp_TmnCode": "NOTOURS1"}, "A-SECRET-WE-DO-NOT-HOLD")

    amount = await app.http.get(f"/webhooks/vnpay?{odd_amount}")
    terminal = await app.http.get(f"/webhooks/vnpay?{stranger}")

    assert (amount.status_code, amount.json()) == (200, {"RspCode": "04", "Message": "Invalid amount"})
    assert (terminal.status_code, terminal.json()) == (200, {"RspCode": "97", "Message": "Invalid signature"})
    assert [row["reason"] for row in await rejected(pool)] == ["invalid_amount", "unknown_terminal"]
