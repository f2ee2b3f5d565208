"""PAYRECON_LOG_JSON: one JSON object per line with the request's context, and no secret in any line."""

from __future__ import annotations

import copy
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import msgspec
import pytest

from providers.base import PaymentStatus
from providers.stripe.sim.signing import sign_header
from service import apikeys, logs
from service.settings import Settings
from tests.e2e.harness import Running, register, running, stripe_webhook

CARD = "4242 4242 4242 4242"  # passes Luhn, like a real PAN


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every line any logger writes during the test, through the JSON handler the app uses."""
    out = io.StringIO()
    handler = logs.handler(True, stream=out)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    json_settings = msgspec.structs.replace(settings, log_json=True)
    async with running(json_settings) as found:
        yield found


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def test_json_lines_carry_context_and_no_secret(app: Running, pool: asyncpg.Pool, captured: io.StringIO) -> None:
    sim = app.sims["stripe"]
    payment = sim.create_payment(order_id="ord_log1", amount=2500, currency="usd")
    await register(pool, "ord_log1", provider="stripe", amount=2500, currency="USD", reference=payment.reference)
    sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)
    body, _ = stripe_webhook(sim)
    # The customer typed a card number into a free-text field the gateway echoes back.
    event = json.loads(body)
    event["data"]["object"]["metadata"]["note"] = f"card {CARD}"
    event["data"]["object"]["description"] = CARD.replace(" ", "")
    body = json.dumps(event).encode()
    secret = sim.webhook_secrets[0]
    headers = {"Content-Type": "application/json", "Stripe-Signature": sign_header(body, [secret], int(time.time()))}
    async with pool.acquire() as conn:
        key = (await apikeys.create(conn, "log-test", ["orders:read"])).key

    accepted = await app.http.post("/webhooks/stripe", content=body, headers={**headers, "X-Request-ID": "req-log-1"})
    refused = await app.http.post(
        "/webhooks/stripe", content=body, headers={**headers, "Stripe-Signature": f"t=1,v1={'0' * 64}"}
    )
    read = await app.http.get("/v1/orders/ord_log1", headers={"Authorization": f"Bearer {key}"})
    bad_key = await app.http.get("/v1/orders/ord_log1", headers={"Authorization": f"Bearer {key}x"})

    assert (accepted.status_code, refused.status_code, read.status_code, bad_key.status_code) == (200, 400, 200, 401)
    assert accepted.headers["x-request-id"] == "req-log-1"
    text = captured.getvalue()
    found = lines(captured)
    assert found, "nothing was logged"
    for secret_text in (secret, key, key.split("_", 2)[2], CARD, CARD.replace(" ", ""), "4242424242424242"):
        assert secret_text not in text
    applied = [line for line in found if line.get("outcome") == "applied"]
    assert len(applied) == 1
    line = applied[0]
    assert line["request_id"] == "req-log-1"
    assert (line["gateway"], line["account"], line["order_id"]) == ("stripe", "default", "ord_log1")
    assert isinstance(line["event_id"], int)
    assert any(str(entry.get("outcome", "")).startswith("rejected:signature") for entry in found)
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in found)


def test_redact_masks_keys_secrets_and_card_numbers() -> None:
    text = "key prk_0a1b2c3d_AbC-def_123 secret whsec_abc123 Bearer tok.en card 4111-1111-1111-1111 order 1234567890123"
    clean = logs.redact(text)
    assert "prk_0a1b2c3d_AbC" not in clean
    assert "whsec_abc123" not in clean
    assert "tok.en" not in clean
    assert "4111" not in clean.replace("****1111", "")
    assert "order 1234567890123" in clean  # not a Luhn number: an order id, left alone


def test_an_exception_line_is_json_and_redacted() -> None:
    out = io.StringIO()
    logger = logging.getLogger("tests.ops.exception")
    handler = logs.handler(True, stream=out)
    logger.addHandler(handler)
    try:
        with logs.bound(gateway="momo", order_id="o1"):
            try:
                raise ValueError("body had 4242424242424242")
            except ValueError:
                logger.exception("failed with prk_0a1b2c3d_secretpart")
    finally:
        logger.removeHandler(handler)
    (line,) = lines(out)
    assert (line["gateway"], line["order_id"], line["level"]) == ("momo", "o1", "error")
    assert "secretpart" not in json.dumps(line)
    assert "4242424242424242" not in json.dumps(line)
    assert "ValueError" in str(line["exception"])
    assert copy.copy(line)  # plain data
