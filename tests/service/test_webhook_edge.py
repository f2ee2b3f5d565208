"""The webhook edge under hostile traffic, through real HTTP (issue 15).

Source allowlists (IPv4, IPv6, CIDR) judged on the client address behind a trusted proxy — and
on the peer when the proxy is not trusted, whatever headers it sends; a trickling body answered
408 within the deadline; a forged flood costing a bounded number of rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar
from prometheus_client import REGISTRY

from providers.base import PaymentStatus
from providers.simkit import SimulatedGateway
from service import refusals
from service.app import create_app, settings_with
from service.gateways import build_gateways
from service.serving import free_port, serving
from service.settings import Settings, SettingsError, load_settings
from tests.e2e.harness import rejected, stripe_webhook, vnpay_webhook
from tests.gateways import GATEWAYS, simulator


class Edge(msgspec.Struct, kw_only=True):
    app: Litestar
    http: httpx.AsyncClient
    sims: dict[str, SimulatedGateway]
    base_url: str


def gateway_document(sims: dict[str, SimulatedGateway], allowed: dict[str, list[str]]) -> dict[str, Any]:
    document: dict[str, list[dict[str, Any]]] = {}
    for name, sim in sims.items():
        table = sim.gateway_config(f"http://{name}.sim")
        if name in allowed:
            table["allowed_sources"] = allowed[name]
        document[name] = [table]
    return document


@asynccontextmanager
async def edge(
    settings: Settings, *, allowed: dict[str, list[str]] | None = None, **changes: Any
) -> AsyncIterator[Edge]:
    sims = {name: simulator(name) for name in GATEWAYS}
    app = create_app(settings_with(settings, **changes), gateways=build_gateways(gateway_document(sims, allowed or {})))
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        yield Edge(app=app, http=http, sims=sims, base_url=base)


def stripe_delivery(sims: dict[str, SimulatedGateway]) -> tuple[bytes, dict[str, str]]:
    sim = sims["stripe"]
    payment = sim.create_payment(order_id="ord_e1", amount=2500, currency="usd")
    sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)
    return stripe_webhook(sim)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- allowlists ---------------------------------------------------------------------------------


async def test_allowlist_ipv4_ipv6_and_cidr_through_a_trusted_proxy(settings: Settings, pool: asyncpg.Pool) -> None:
    allowed = {"stripe": ["203.0.113.0/24", "2001:db8::/32", "192.0.2.10"]}
    async with edge(settings, allowed=allowed, trusted_proxies="127.0.0.1/32") as e:
        body, headers = stripe_delivery(e.sims)

        async def send(client: str) -> httpx.Response:
            return await e.http.post("/webhooks/stripe", content=body, headers={**headers, "X-Forwarded-For": client})

        admitted = [await send(c) for c in ("203.0.113.50", "2001:db8:1::7", "192.0.2.10", "6.6.6.6, 203.0.113.9")]
        refused = [await send(c) for c in ("198.51.100.1", "2001:db9::7", "192.0.2.11", "203.0.113.9, 6.6.6.6")]

    assert [r.status_code for r in admitted] == [200, 200, 200, 200]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    rows = await rejected(pool)
    assert [(r["reason"], r["remote_addr"]) for r in rows] == [
        ("source_not_allowed", "198.51.100.1"),
        ("source_not_allowed", "2001:db9::7"),
        ("source_not_allowed", "192.0.2.11"),
        ("source_not_allowed", "6.6.6.6"),  # the hop our proxy saw, not what the client wrote before it
    ]
    assert rows[0]["body_size"] == len(body)  # announced; the body itself was never read
    assert await pool.fetchval("select count(*) from payment_events") == 1  # the admitted ones: one event


async def test_allowlist_behind_an_untrusted_proxy_judges_the_peer(settings: Settings, pool: asyncpg.Pool) -> None:
    async with edge(settings, allowed={"stripe": ["203.0.113.0/24"]}, trusted_proxies="10.0.0.0/8") as e:
        body, headers = stripe_delivery(e.sims)
        spoofed = {**headers, "X-Forwarded-For": "203.0.113.50", "Forwarded": "for=203.0.113.50"}

        response = await e.http.post("/webhooks/stripe", content=body, headers=spoofed)

    assert response.status_code == 403
    [row] = await rejected(pool)
    assert (row["reason"], row["remote_addr"]) == ("source_not_allowed", "127.0.0.1")


async def test_spoofed_headers_never_change_the_recorded_address(settings: Settings, pool: asyncpg.Pool) -> None:
    async with edge(settings, allowed={"stripe": ["127.0.0.1"]}) as e:  # no trusted proxies at all
        response = await e.http.post(
            "/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00", "X-Forwarded-For": "6.6.6.6"}
        )

    assert response.status_code == 400  # admitted by address, refused by signature
    [row] = await rejected(pool)
    assert (row["reason"], row["remote_addr"]) == ("signature", "127.0.0.1")


async def test_vnpay_ipn_from_outside_its_terminal_list_is_403(settings: Settings, pool: asyncpg.Pool) -> None:
    async with edge(settings, allowed={"vnpay": ["113.160.92.202"]}, trusted_proxies="127.0.0.1") as e:
        sim = e.sims["vnpay"]
        sim.create_payment(order_id="ord_v1", amount=150_000, currency="VND")
        sim.set_status("ord_v1", PaymentStatus.SUCCEEDED)
        query = vnpay_webhook(sim, "ord_v1")

        outsider = await e.http.get(f"/webhooks/vnpay?{query}", headers={"X-Forwarded-For": "198.51.100.1"})
        insider = await e.http.get(f"/webhooks/vnpay?{query}", headers={"X-Forwarded-For": "113.160.92.202"})

    assert outsider.status_code == 403
    assert (insider.status_code, insider.json()["RspCode"]) == (200, "01")  # admitted; no such order here
    assert [r["reason"] for r in await rejected(pool)] == ["source_not_allowed"]


async def test_allowlist_for_a_direct_ipv6_peer(settings: Settings, pool: asyncpg.Pool) -> None:
    sims = {name: simulator(name) for name in GATEWAYS}
    document = gateway_document(sims, {"stripe": ["::1/128"], "momo": ["2001:db8::/32"]})
    app = create_app(settings, gateways=build_gateways(document))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="::1", port=port, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the IPv6 server did not start"
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://[::1]:{port}") as http:
            stripe = await http.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
            momo = await http.post("/webhooks/momo", content=b"{}")
    finally:
        server.should_exit = True
        await task

    assert (stripe.status_code, momo.status_code) == (400, 403)  # ::1 admitted for Stripe (then unsigned)
    rows = await rejected(pool)
    assert [(r["provider"], r["reason"], r["remote_addr"]) for r in rows] == [
        ("stripe", "signature", "::1"),
        ("momo", "source_not_allowed", "::1"),
    ]


def test_bad_allowlists_and_proxies_fail_at_start_naming_them() -> None:
    sims = {"stripe": simulator("stripe")}
    from service.allowlists import Allowlists

    with pytest.raises(SettingsError, match=r"\[\[stripe\]\] account 'default'.*'10.0.0.0/33'"):
        Allowlists(build_gateways(gateway_document(sims, {"stripe": ["10.0.0.0/33"]})))
    with pytest.raises(SettingsError, match=r"PAYRECON_TRUSTED_PROXIES: 'proxy\.local'"):
        load_settings({"PAYRECON_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"})


# --- slow clients -------------------------------------------------------------------------------


async def test_a_trickling_body_is_answered_408_within_the_deadline(settings: Settings, pool: asyncpg.Pool) -> None:
    async with edge(settings, webhook_body_timeout=1.0) as e:
        host, port = e.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        writer.write(b"POST /webhooks/momo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 1000\r\n\r\n{")
        await writer.drain()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(40):  # one byte every 0.25 s: 10 s for the whole body
                    await asyncio.sleep(0.25)
                    writer.write(b" ")
                    await writer.drain()

        dripping = asyncio.create_task(trickle())
        status_line = await asyncio.wait_for(reader.readline(), timeout=5.0)
        elapsed = time.monotonic() - started
        dripping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dripping
        writer.close()

    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert 0.9 <= elapsed < 2.5  # the deadline, not the client, decided
    [row] = await rejected(pool)
    assert (row["provider"], row["reason"]) == ("momo", "body_timeout")
    assert 1 <= row["body_size"] < 1000


# --- a forged flood costs a bounded number of rows -----------------------------------------------


async def test_refusals_beyond_the_bucket_are_tallied_not_stored(settings: Settings, pool: asyncpg.Pool) -> None:
    async with edge(settings, refusal_sample_burst=3, refusal_sample_rate=0.001, refusal_sample_total=100.0) as e:
        before = metric("payrecon_webhooks_refusals_tallied_total", provider="stripe", reason="signature")
        forged = [
            await e.http.post(
                "/webhooks/stripe", content=b'{"n":%d}' % n, headers={"Stripe-Signature": f"t={int(time.time())},v1=00"}
            )
            for n in range(12)
        ]
        # a verified delivery is never sampled: held in full however many refusals came before
        event = {"id": "evt_big", "object": "event", "type": "payment_intent.succeeded", "created": 1}
        event["data"] = {"object": {"id": "pi_1", "object": "payment_intent", "amount": 2**64, "currency": "usd"}}
        event["data"]["object"]["status"] = "succeeded"
        body, headers = stripe_webhook(e.sims["stripe"], event)
        held = await e.http.post("/webhooks/stripe", content=body, headers=headers)
        written = await refusals.flush(e.app.state.pool, e.app.state.refusals)

    assert {r.status_code for r in forged} == {400}
    assert held.status_code == 200
    rows = await rejected(pool)
    assert [(r["reason"], r["verified"]) for r in rows] == [("signature", False)] * 3 + [("malformed", True)]
    assert rows[0]["raw_body"] == b'{"n":0}'  # within the budget, stored in full
    assert metric("payrecon_webhooks_refusals_tallied_total", provider="stripe", reason="signature") == before + 9
    assert written == 1
    tally = await pool.fetchrow("select * from refusal_tallies")
    assert (tally["provider"], tally["reason"], tally["count"]) == ("stripe", "signature", 9)
    assert tally["source"] == "127.0.0.1"
    assert tally["first_seen"] <= tally["last_seen"]
    assert len(tally["sample_body_sha256"]) == 64


async def test_tallies_are_flushed_periodically_and_at_shutdown(settings: Settings, pool: asyncpg.Pool) -> None:
    async with edge(settings, refusal_sample_burst=1, refusal_sample_rate=0.001, refusal_tally_every=0.2) as e:
        for _ in range(3):
            await e.http.post("/webhooks/momo", content=b"junk")
        await asyncio.sleep(0.6)
        periodic = await pool.fetchval("select coalesce(sum(count), 0) from refusal_tallies")
        await e.http.post("/webhooks/momo", content=b"junk")
    at_shutdown = await pool.fetchval("select coalesce(sum(count), 0) from refusal_tallies")

    assert (periodic, at_shutdown) == (2, 3)
    assert len(await rejected(pool)) == 1


async def test_headers_over_the_limit_are_431_before_any_work(settings: Settings, pool: asyncpg.Pool) -> None:
    async with edge(settings, max_header_bytes=8192) as e:
        before = metric("payrecon_requests_refused_early_total", reason="header_too_large")
        big = await e.http.post("/webhooks/stripe", content=b"{}", headers={"X-Pad": "a" * 20_000})
        fits = await e.http.post("/webhooks/stripe", content=b"{}", headers={"X-Pad": "a" * 4_000})

    assert big.status_code == 431
    assert fits.status_code == 400  # through to the adapter: unsigned
    assert metric("payrecon_requests_refused_early_total", reason="header_too_large") == before + 1
    assert [r["reason"] for r in await rejected(pool)] == ["malformed"]  # only the one that got in
