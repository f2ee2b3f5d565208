"""Verified deliveries that cannot be stored as sent end in one stored row and a final answer (issue 10 item 4).

Before: a `\\u0000` anywhere in a verified payload, or a Stripe amount beyond bigint, reached the
ledger's insert, failed there, and was answered "retry later" (503, VNPay 99) on every redelivery
until the gateway gave up — the payment news was lost.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from providers.base import Ack, GatewayAdapter, OutcomeKind, PaymentEvent, PaymentStatus, WebhookRequest
from providers.vnpay.sim.signing import signed_query_string
from service.settings import Settings
from tests.e2e.harness import Running, events_of, order_json, register, rejected, running, stripe_webhook


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    async with running(settings) as found:
        yield found


def with_extra_field(body: bytes, **extra: object) -> bytes:
    """A MoMo IPN with fields MoMo's signature does not cover (it signs a fixed list)."""
    decoded = json.loads(body)
    decoded.update(extra)
    return json.dumps(decoded, separators=(",", ":")).encode()  # json.dumps writes NUL as \u0000


async def test_momo_nul_in_an_unsigned_field_is_stored_and_acknowledged(app: Running, pool: asyncpg.Pool) -> None:
    sim = app.sims["momo"]
    sim.create_payment(order_id="ord_m1", amount=50_000, currency="VND")
    await register(pool, "ord_m1", provider="momo", amount=50_000, currency="VND")
    sim.set_status("ord_m1", PaymentStatus.SUCCEEDED)
    body = with_extra_field(sim.ipn_body(sim.get_payment("ord_m1")), note="gift\u0000wrap", **{"k\u0000": ["\u0000"]})
    assert b"\\u0000" in body

    first = await app.http.post("/webhooks/momo", content=body, headers={"Content-Type": "application/json"})
    again = await app.http.post("/webhooks/momo", content=body, headers={"Content-Type": "application/json"})

    assert (first.status_code, again.status_code) == (204, 204)
    assert (await order_json(app, "ord_m1"))["status"] == "succeeded"
    stored = await events_of(pool, "momo")
    assert len(stored) == 1
    assert stored[0]["raw_body"] == body  # the truth, byte for byte
    payload = await pool.fetchval("select payload from payment_events where provider = 'momo'")
    assert payload["note"] == "gift\\u0000wrap"  # the jsonb copy spells NUL out
    assert payload["k\\u0000"] == ["\\u0000"]
    assert await rejected(pool) == []


async def test_stripe_nul_in_metadata_is_stored_and_acknowledged(app: Running, pool: asyncpg.Pool) -> None:
    sim = app.sims["stripe"]
    payment = sim.create_payment(order_id="ord_s1", amount=2500, currency="usd")
    await register(pool, "ord_s1", provider="stripe", amount=2500, currency="USD", reference=payment.reference)
    sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)
    event = copy.deepcopy(sim.events[-1])
    event["data"]["object"]["metadata"]["note"] = "a\u0000b"
    event["data"]["object"]["description"] = "\u0000"
    body, headers = stripe_webhook(sim, event)

    first = await app.http.post("/webhooks/stripe", content=body, headers=headers)
    again = await app.http.post("/webhooks/stripe", content=body, headers=headers)

    assert (first.status_code, again.status_code) == (200, 200)
    assert (await order_json(app, "ord_s1"))["status"] == "succeeded"
    stored = await events_of(pool, "stripe")
    assert [row["raw_body"] for row in stored] == [body]


async def test_vnpay_nul_in_a_signed_parameter_is_stored_and_confirmed(app: Running, pool: asyncpg.Pool) -> None:
    sim = app.sims["vnpay"]
    sim.create_payment(order_id="ord_v1", amount=150_000, currency="VND")
    await register(pool, "ord_v1", provider="vnpay", amount=150_000, currency="VND")
    sim.set_status("ord_v1", PaymentStatus.SUCCEEDED)
    params = sim.ipn_params(sim.transaction("ord_v1"))
    params["vnp_OrderInfo"] = "Thanh toan\u0000don hang"
    query = signed_query_string(params, sim.hash_secret)
    assert "%00" in query

    first = await app.http.get(f"/webhooks/vnpay?{query}")
    again = await app.http.get(f"/webhooks/vnpay?{query}")

    assert [first.json()["RspCode"], again.json()["RspCode"]] == ["00", "02"]
    assert (await order_json(app, "ord_v1"))["status"] == "succeeded"
    assert len(await events_of(pool, "vnpay")) == 1


async def test_stripe_amount_beyond_bigint_is_held_once_and_answered_2xx(app: Running, pool: asyncpg.Pool) -> None:
    sim = app.sims["stripe"]
    payment = sim.create_payment(order_id="ord_s2", amount=2500, currency="usd")
    sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)
    event = copy.deepcopy(sim.events[-1])
    event["data"]["object"]["amount"] = event["data"]["object"]["amount_received"] = 2**63
    body, headers = stripe_webhook(sim, event)

    first = await app.http.post("/webhooks/stripe", content=body, headers=headers)
    _, resigned = stripe_webhook(sim, event, timestamp=int(headers["Stripe-Signature"][2:12]) + 60)
    again = await app.http.post("/webhooks/stripe", content=body, headers=resigned)  # Stripe re-signs each attempt

    assert (first.status_code, again.status_code) == (200, 200)  # final: Stripe stops retrying
    rows = await rejected(pool)
    assert len(rows) == 1
    row = rows[0]
    assert (row["provider"], row["reason"], row["verified"], row["deliveries"]) == ("stripe", "malformed", True, 2)
    assert row["raw_body"] == body
    assert row["method"] == "POST"
    assert row["raw_headers"]["stripe-signature"] == headers["Stripe-Signature"]  # the first: replay re-verifies it
    assert "amount" in row["detail"]
    assert await events_of(pool, "stripe") == []


class Broken:
    """A real adapter whose parse has a bug, or whose events break a database check: a deploy to fix."""

    def __init__(self, real: GatewayAdapter, *, currency: str | None = None) -> None:
        self.real, self.currency = real, currency

    def verify(self, request: WebhookRequest) -> None:
        self.real.verify(request)

    def parse(self, request: WebhookRequest) -> list[PaymentEvent]:
        if self.currency is None:
            raise KeyError("resultCode")  # an adapter bug
        return [PaymentEvent(**{**_fields(e), "currency": self.currency}) for e in self.real.parse(request)]

    def acknowledge(self, outcomes: Sequence[OutcomeKind]) -> Ack:
        return self.real.acknowledge(outcomes)

    def reject(self, error: Exception) -> Ack:
        return self.real.reject(error)

    def retry_later(self) -> Ack:
        return self.real.retry_later()


def _fields(event: PaymentEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__struct_fields__}


async def momo_paid(app: Running, pool: asyncpg.Pool, order_id: str) -> bytes:
    sim = app.sims["momo"]
    sim.create_payment(order_id=order_id, amount=50_000, currency="VND")
    await register(pool, order_id, provider="momo", amount=50_000, currency="VND")
    sim.set_status(order_id, PaymentStatus.SUCCEEDED)
    body: bytes = sim.ipn_body(sim.get_payment(order_id))
    return body


async def test_a_check_the_event_breaks_is_held_not_retried(app: Running, pool: asyncpg.Pool) -> None:
    body = await momo_paid(app, pool, "ord_m2")
    momo = app.app.state.gateways["momo"]
    app.app.state.gateways["momo"] = dataclasses.replace(momo, adapter=Broken(momo.adapter, currency="VNDX"))

    response = await app.http.post("/webhooks/momo", content=body)

    assert response.status_code == 204  # was 503, forever
    [row] = await rejected(pool)
    assert (row["reason"], row["verified"], row["raw_body"]) == ("unstorable", True, body)
    assert "CheckViolation" in row["detail"]


async def test_an_adapter_bug_is_held_then_replayed_through_the_api(app: Running, pool: asyncpg.Pool) -> None:
    body = await momo_paid(app, pool, "ord_m3")
    real = app.app.state.gateways["momo"]
    app.app.state.gateways["momo"] = dataclasses.replace(real, adapter=Broken(real.adapter))

    held = await app.http.post("/webhooks/momo", content=body)

    assert held.status_code == 204
    [row] = await rejected(pool)
    assert (row["reason"], row["verified"]) == ("adapter_error", True)
    assert (await order_json(app, "ord_m3"))["status"] == "pending"

    reader, writer = await keys(app, "recon:read"), await keys(app, "recon:write")
    listed = await app.http.get("/v1/rejected-deliveries", headers=reader, params={"verified": "true"})
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert (item["id"], item["has_body"], item["deliveries"], item["replayed_at"]) == (row["id"], True, 1, None)
    assert (await app.http.post(f"/v1/rejected-deliveries/{row['id']}/replay", headers=reader)).status_code == 403

    still = await app.http.post(f"/v1/rejected-deliveries/{row['id']}/replay", headers=writer)
    assert still.status_code == 200
    assert (still.json()["ok"], still.json()["error"].split(":")[0]) == (False, "adapter_error")

    app.app.state.gateways["momo"] = real  # the fix is deployed
    dry = await app.http.post(f"/v1/rejected-deliveries/{row['id']}/replay?dry_run=true", headers=writer)
    assert (dry.json()["ok"], dry.json()["outcomes"], dry.json()["replayed_at"]) == (True, ["applied"], None)
    assert (await order_json(app, "ord_m3"))["status"] == "pending"  # rolled back

    done = await app.http.post(f"/v1/rejected-deliveries/{row['id']}/replay", headers=writer)
    assert (done.json()["ok"], done.json()["outcomes"]) == (True, ["applied"])
    order = await order_json(app, "ord_m3")
    assert (order["status"], order["version"]) == ("succeeded", 2)
    [event] = await pool.fetch("select source, raw_body from payment_events")
    assert (event["source"], event["raw_body"]) == ("manual", body)
    twice = await app.http.post(f"/v1/rejected-deliveries/{row['id']}/replay", headers=writer)
    assert twice.json()["outcomes"] == ["duplicate"]
    detail = (await app.http.get(f"/v1/rejected-deliveries/{row['id']}", headers=reader)).json()
    assert detail["replay_outcome"] == "duplicate"
    assert detail["replayed_at"] is not None


async def test_a_row_without_its_body_cannot_be_replayed(app: Running, pool: asyncpg.Pool) -> None:
    row_id = await pool.fetchval(
        "insert into rejected_deliveries (provider, reason, body_sha256, body_size)"
        " values ('momo', 'signature', 'ab', 2) returning id"
    )
    writer = await keys(app, "recon:write")

    refused = await app.http.post(f"/v1/rejected-deliveries/{row_id}/replay", headers=writer)
    missing = await app.http.post("/v1/rejected-deliveries/999999/replay", headers=writer)

    assert refused.status_code == 409
    assert "hash" in refused.text
    assert missing.status_code == 404


async def test_rejected_deliveries_page_by_cursor(app: Running, pool: asyncpg.Pool) -> None:
    for n in range(3):
        await app.http.post(f"/webhooks/nowhere{n}", content=b"x")
    reader = await keys(app, "recon:read")
    first = (await app.http.get("/v1/rejected-deliveries", headers=reader, params={"limit": 2})).json()
    rest = (
        await app.http.get(
            "/v1/rejected-deliveries", headers=reader, params={"limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [i["provider"] for i in first["items"] + rest["items"]] == ["nowhere0", "nowhere1", "nowhere2"]
    assert rest["next_cursor"] is None
    bad = await app.http.get("/v1/rejected-deliveries", headers=reader, params={"cursor": "nope"})
    assert bad.status_code == 400


async def keys(app: Running, *scopes: str) -> dict[str, str]:
    from service import apikeys

    async with app.app.state.pool.acquire() as conn:
        key = await apikeys.create(conn, "held-tests", list(scopes))
    return {"Authorization": f"Bearer {key.key}"}
