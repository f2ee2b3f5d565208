"""A small world for the ops console's tests: orders paid through the simulators, a run, anomalies,
quarantined events, a held delivery — all made the way production makes them — and sign-in helpers.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from providers.base import PaymentEvent, PaymentStatus
from providers.stripe.sim.signing import sign_header
from reconciler.worker import close_worker, create_worker
from service import apikeys, ledger, rejections
from service.model import Source
from service.settings import Settings
from tests.reconciler.stage import S, Stage


class World(msgspec.Struct, kw_only=True):
    write_key: str  # recon:read + recon:write, named "alice"
    read_key: str  # recon:read only, named "bob"
    pending_paid: str  # paid at Stripe, pending in the ledger (its webhook was dropped)
    mismatch_anomaly: int  # an amount_mismatch anomaly on `mismatch_order`
    mismatch_order: str
    held_delivery: int  # a signed Stripe delivery held in rejected_deliveries, replayable
    held_order: str


async def build(stage: Stage) -> World:
    """Orders on every gateway, most webhooks dropped (the stage's faults), plus the console's cases."""
    for i in range(4):
        await stage.pay("stripe", f"st-{i}", [S.SUCCEEDED] if i % 2 == 0 else [S.PROCESSING])
        await stage.pay("momo", f"mo-{i}", [S.SUCCEEDED] if i % 2 else [S.FAILED])
    await stage.pay("stripe", "st-held", [S.SUCCEEDED])
    await stage.drain()
    pool = stage.pool
    # A wrong amount: the ledger refuses it and opens an anomaly with the event as evidence.
    gateway, reference = stage.references["st-1"]
    wrong = PaymentEvent(
        provider=gateway,
        dedupe_key="evt_console_wrong_amount",
        account="default",
        reference=reference,
        status=PaymentStatus.SUCCEEDED,
        amount=1,
        currency="USD",
        provider_payment_id=reference,
        occurred_at=datetime.now(UTC),
        payload={"id": "evt_console_wrong_amount", "amount": 1},
    )
    await ledger.apply(pool, wrong, Source.WEBHOOK)
    # An event for an order nobody registered: quarantined.
    stray = msgspec.structs.replace(wrong, dedupe_key="evt_console_stray", reference="pi_not_registered", amount=700)
    await ledger.apply(pool, stray, Source.WEBHOOK)
    # A Stripe delivery, correctly signed, that was held (as an adapter bug would have it): replayable.
    sim = stage.sims["stripe"]
    _, held_ref = stage.references["st-held"]
    event = next(e for e in reversed(sim.events) if e["data"]["object"]["id"] == held_ref)  # type: ignore[attr-defined]
    body = json.dumps(event).encode()
    signature = sign_header(body, sim.webhook_secrets, int(time.time()))  # type: ignore[attr-defined]
    held = rejections.rejection(
        provider="stripe",
        account=None,
        reason="adapter_error",
        detail="ValueError: the adapter of the day could not read this",
        remote_addr="127.0.0.1",
        body=body,
        received_at=datetime.now(UTC),
        verified=True,
        method="POST",
        headers={"content-type": "application/json", "stripe-signature": signature},
    )
    held_id = await rejections.record(pool, held, wait=5.0)
    async with pool.acquire() as conn:
        write = await apikeys.create(conn, "alice", ["recon:read", "recon:write"])
        read = await apikeys.create(conn, "bob", ["recon:read"])
        anomaly = await conn.fetchval("select id from anomalies where kind = 'amount_mismatch' and order_id = 'st-1'")
    return World(
        write_key=write.key,
        read_key=read.key,
        pending_paid="st-0",
        mismatch_anomaly=anomaly,
        mismatch_order="st-1",
        held_delivery=held_id,
        held_order="st-held",
    )


async def run_jobs(stage: Stage, settings: Settings) -> None:
    """Process every queued job (runs, checks) with a burst worker wired to the simulators."""
    async with stage.client() as http:
        worker = create_worker(
            settings, gateways=stage.adapters, http=http, burst=True, schedule=False, poll_delay=0.05
        )
        try:
            await worker.async_run()
        finally:
            await close_worker(worker)


# --- signing in over plain HTTP (httpx keeps no Secure cookie for http://, so we carry it) ---------

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def cookie_of(response: httpx.Response, name: str) -> tuple[str, str]:
    """The cookie's value and its whole Set-Cookie line."""
    for line in response.headers.get_list("set-cookie"):
        if line.startswith(f"{name}="):
            return line.split(";", 1)[0].split("=", 1)[1], line
    raise AssertionError(f"no {name} cookie set: {response.headers.get_list('set-cookie')}")


async def sign_in(http: httpx.AsyncClient, key: str) -> dict[str, str]:
    """Headers of a signed-in browser: the session cookie."""
    form = await http.get("/ops/login")
    login_token, _ = cookie_of(form, "payrecon_ops_login")
    answer = await http.post(
        "/ops/login",
        data={"csrf": csrf_of(form.text), "api_key": key, "next": "/ops"},
        headers={"cookie": f"payrecon_ops_login={login_token}"},
    )
    assert answer.status_code == 303, answer.text
    session, _ = cookie_of(answer, "payrecon_ops")
    return {"cookie": f"payrecon_ops={session}"}


async def page(http: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    response = await http.get(path, headers=headers, params=params)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return response
