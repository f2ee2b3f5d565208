"""The ops console over real HTTP: sign-in, sessions, CSRF, scopes, every page, and each audited action."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute

from providers.simkit import Faults
from service import apikeys
from service.settings import Settings
from tests.ops.world import World, build, cookie_of, csrf_of, page, run_jobs, sign_in
from tests.reconciler.stage import Stage, staged
from tests.reconciler.test_run import quick


class Console(msgspec.Struct, kw_only=True):
    stage: Stage
    world: World
    http: httpx.AsyncClient
    settings: Settings


@pytest.fixture
async def console(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Console]:
    fast = quick(settings)
    async with staged(fast, pool, faults=Faults(drop_rate=1.0, seed=5), gateways=("stripe", "momo")) as stage:
        world = await build(stage)
        async with httpx.AsyncClient(base_url=stage.app_url, timeout=30.0, follow_redirects=False) as http:
            yield Console(stage=stage, world=world, http=http, settings=fast)


async def test_pages_need_a_session_and_sign_in_sets_a_strict_cookie(console: Console) -> None:
    http = console.http
    first = await http.get("/ops/anomalies?status=open")
    assert first.status_code == 303
    assert first.headers["location"] == "/ops/login?next=/ops/anomalies%3Fstatus%3Dopen"
    form = await http.get("/ops/login")
    token, _ = cookie_of(form, "payrecon_ops_login")
    answer = await http.post(
        "/ops/login",
        data={"csrf": csrf_of(form.text), "api_key": console.world.read_key, "next": "/ops/anomalies?status=open"},
        headers={"cookie": f"payrecon_ops_login={token}"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ops/anomalies?status=open"
    _, line = cookie_of(answer, "payrecon_ops")
    attributes = {part.strip().lower() for part in line.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/ops"} <= attributes
    assert console.world.read_key not in line  # the key is never in the cookie


async def test_sign_in_refuses_a_bad_key_a_key_without_recon_read_and_a_forged_form(
    console: Console, pool: asyncpg.Pool
) -> None:
    http = console.http
    async with pool.acquire() as conn:
        orders_only = (await apikeys.create(conn, "shop", ["orders:read"])).key
    form = await http.get("/ops/login")
    token, _ = cookie_of(form, "payrecon_ops_login")
    cookie = {"cookie": f"payrecon_ops_login={token}"}
    csrf = csrf_of(form.text)
    bad = await http.post("/ops/login", data={"csrf": csrf, "api_key": "prk_00000000_nope"}, headers=cookie)
    scope = await http.post("/ops/login", data={"csrf": csrf, "api_key": orders_only}, headers=cookie)
    forged = await http.post("/ops/login", data={"csrf": "guess", "api_key": console.world.read_key}, headers=cookie)
    offsite = await http.post(
        "/ops/login",
        data={"csrf": csrf, "api_key": console.world.read_key},
        headers={**cookie, "origin": "https://evil.example"},
    )
    assert (bad.status_code, scope.status_code, forged.status_code, offsite.status_code) == (401, 403, 400, 403)
    assert "lacks scope recon:read" in scope.text
    for answer in (bad, scope, forged, offsite):
        assert "payrecon_ops=" not in " ".join(answer.headers.get_list("set-cookie"))


async def test_every_page_renders(console: Console) -> None:
    http, world = console.http, console.world
    me = await sign_in(http, world.write_key)
    overview = await page(http, "/ops", me)
    assert "Orders by status" in overview.text
    assert "amount_mismatch" in overview.text  # open anomalies by kind
    assert overview.headers["content-security-policy"].startswith("default-src 'self'")
    assert "<svg" in overview.text
    for path in (
        "/ops/runs",
        "/ops/anomalies",
        f"/ops/anomalies/{world.mismatch_anomaly}",
        "/ops/quarantine",
        "/ops/rejected",
        f"/ops/rejected/{world.held_delivery}",
        f"/ops/orders/{world.pending_paid}",
        "/ops/audit",
        "/ops/static/ops.css",
        "/ops/static/ops.js",
    ):
        await page(http, path, me)
    quarantine = await page(http, "/ops/quarantine", me)
    assert "pi_not_registered" in quarantine.text
    anomaly = await page(http, f"/ops/anomalies/{world.mismatch_anomaly}", me)
    assert "evt_console_wrong_amount" in anomaly.text  # the evidence: the refused event's payload
    missing = await http.get("/ops/orders/no-such-order", headers=me)
    assert missing.status_code == 404


async def test_resolving_an_anomaly_needs_write_a_note_and_the_csrf_token_and_is_audited(
    console: Console, pool: asyncpg.Pool
) -> None:
    http, world = console.http, console.world
    path = f"/ops/anomalies/{world.mismatch_anomaly}"
    reader = await sign_in(http, world.read_key)
    read_csrf = csrf_of((await page(http, path, reader)).text)
    writer = await sign_in(http, world.write_key)
    csrf = csrf_of((await page(http, path, writer)).text)

    denied = await http.post(f"{path}/resolve", data={"csrf": read_csrf, "note": "x"}, headers=reader)
    no_token = await http.post(f"{path}/resolve", data={"note": "refunded"}, headers=writer)
    other_session = await http.post(f"{path}/resolve", data={"csrf": read_csrf, "note": "x"}, headers=writer)
    no_note = await http.post(f"{path}/resolve", data={"csrf": csrf, "note": "  "}, headers=writer)
    offsite = await http.post(
        f"{path}/resolve", data={"csrf": csrf, "note": "x"}, headers={**writer, "origin": "https://evil.example"}
    )
    assert [r.status_code for r in (denied, no_token, other_session, no_note, offsite)] == [403] * 5
    assert await pool.fetchval("select status from anomalies where id = $1", world.mismatch_anomaly) == "open"
    assert await pool.fetchval("select count(*) from operator_actions") == 0

    acked = await http.post(f"{path}/acknowledge", data={"csrf": csrf, "note": "looking into it"}, headers=writer)
    resolved = await http.post(
        f"{path}/resolve", data={"csrf": csrf, "note": "customer refunded the 1 cent by hand"}, headers=writer
    )
    again = await http.post(f"{path}/resolve", data={"csrf": csrf, "note": "twice"}, headers=writer)

    assert (acked.status_code, resolved.status_code, again.status_code) == (303, 303, 303)
    assert again.headers["location"].endswith("error=not-open")
    row = await pool.fetchrow(
        "select status, acknowledged_at, resolved_at from anomalies where id = $1", world.mismatch_anomaly
    )
    assert row["status"] == "resolved"
    assert row["acknowledged_at"] is not None
    assert row["resolved_at"] is not None
    actions = await pool.fetch("select action, key_name, note, anomaly_id, order_id from operator_actions order by id")
    assert [(a["action"], a["key_name"], a["note"]) for a in actions] == [
        ("anomaly.acknowledge", "alice", "looking into it"),
        ("anomaly.resolve", "alice", "customer refunded the 1 cent by hand"),
    ]
    assert {(a["anomaly_id"], a["order_id"]) for a in actions} == {(world.mismatch_anomaly, world.mismatch_order)}
    audit = await page(http, "/ops/audit", writer)
    assert "customer refunded the 1 cent by hand" in audit.text
    status = await pool.fetchval("select status from orders where id = $1", world.mismatch_order)
    assert status == "pending"  # resolving never touches the order


async def test_check_this_order_now_applies_the_gateway_answer_through_the_ledger_as_operator(
    console: Console, pool: asyncpg.Pool
) -> None:
    http, world = console.http, console.world
    me = await sign_in(http, world.write_key)
    order_page = await page(http, f"/ops/orders/{world.pending_paid}", me)
    assert await pool.fetchval("select status from orders where id = $1", world.pending_paid) == "pending"

    asked = await http.post(
        f"/ops/orders/{world.pending_paid}/check",
        data={"csrf": csrf_of(order_page.text), "note": "shop says the customer paid"},
        headers=me,
    )
    assert asked.status_code == 303
    waiting = await page(http, f"/ops/orders/{world.pending_paid}", me)
    assert "waiting for a worker" in waiting.text
    assert 'data-refresh="2"' in waiting.text
    await run_jobs(console.stage, console.settings)

    assert await pool.fetchval("select status from orders where id = $1", world.pending_paid) == "succeeded"
    step = await pool.fetchrow("select source from transitions where order_id = $1", world.pending_paid)
    assert step["source"] == "operator"
    event = await pool.fetchrow("select source, outcome from payment_events where order_id = $1", world.pending_paid)
    assert (event["source"], event["outcome"]) == ("operator", "applied")
    action = await pool.fetchrow("select key_name, note, result, finished_at from operator_actions")
    assert (action["key_name"], action["note"]) == ("alice", "shop says the customer paid")
    assert action["result"]["kind"] == "repaired"
    assert (action["result"]["from_status"], action["result"]["to_status"]) == ("pending", "succeeded")
    done = await page(http, f"/ops/orders/{world.pending_paid}", me)
    assert "operator" in done.text
    assert "repaired" in done.text
    assert "order.succeeded" in done.text  # the notification the shop is sent, and its delivery state


async def test_a_run_started_from_the_console_is_led_by_a_worker_and_its_findings_export_filtered(
    console: Console, pool: asyncpg.Pool
) -> None:
    http, world = console.http, console.world
    me = await sign_in(http, world.write_key)
    csrf = csrf_of((await page(http, "/ops/runs", me)).text)
    started = await http.post(
        "/ops/runs", data={"csrf": csrf, "provider": "", "since": "1d", "note": "after the outage"}, headers=me
    )
    assert started.status_code == 303
    run_id = int(started.headers["location"].rsplit("/", 1)[1])
    run = await pool.fetchrow("select trigger, dry_run, params from reconcile_runs where id = $1", run_id)
    assert (run["trigger"], run["dry_run"]) == ("console", False)  # the checkbox was not sent: a real run
    assert run["params"]["since"] is not None
    await run_jobs(console.stage, console.settings)

    findings = await page(http, f"/ops/runs/{run_id}", me, kind="repaired", provider="stripe")
    assert "repaired" in findings.text
    exported = await page(http, f"/ops/runs/{run_id}/findings.csv", me, kind="repaired", provider="stripe")
    assert (
        exported.headers["content-disposition"] == f'attachment; filename="run-{run_id}-findings-repaired-stripe.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows
    assert {(r["kind"], r["provider"]) for r in rows} == {("repaired", "stripe")}
    everything = list(csv.DictReader(io.StringIO((await page(http, f"/ops/runs/{run_id}/findings.csv", me)).text)))
    assert len(everything) > len(rows)
    assert {r["provider"] for r in everything} == {"stripe", "momo"}
    action = await pool.fetchrow("select action, key_name, note, run_id from operator_actions")
    assert tuple(action) == ("run.start", "alice", "after the outage", run_id)


async def test_a_held_delivery_is_replayed_only_after_a_dry_run(console: Console, pool: asyncpg.Pool) -> None:
    http, world = console.http, console.world
    me = await sign_in(http, world.write_key)
    path = f"/ops/rejected/{world.held_delivery}"
    shown = await page(http, path, me)
    assert "stripe-signature" in shown.text
    assert world.held_order not in shown.text or "payment_intent" in shown.text
    assert 'id="replay"' not in shown.text  # no real replay before a dry run
    csrf = csrf_of(shown.text)

    early = await http.post(f"{path}/replay", data={"csrf": csrf, "note": "go", "mode": "real"}, headers=me)
    assert early.status_code == 403
    dry = await http.post(f"{path}/replay", data={"csrf": csrf, "note": "see what it does", "mode": "dry"}, headers=me)
    assert dry.status_code == 303
    assert await pool.fetchval("select status from orders where id = $1", world.held_order) == "pending"
    after_dry = await page(http, path, me)
    assert 'id="replay"' in after_dry.text
    real = await http.post(f"{path}/replay", data={"csrf": csrf, "note": "adapter fixed", "mode": "real"}, headers=me)
    assert real.status_code == 303

    assert await pool.fetchval("select status from orders where id = $1", world.held_order) == "succeeded"
    actions = await pool.fetch("select action, note, result from operator_actions order by id")
    assert [(a["action"], a["note"]) for a in actions] == [
        ("delivery.replay_dry_run", "see what it does"),
        ("delivery.replay", "adapter fixed"),
    ]
    assert all(a["result"]["ok"] for a in actions)
    assert actions[1]["result"]["outcomes"] == ["applied"]


async def test_revoking_the_key_ends_its_sessions_and_sign_out_ends_one(console: Console, pool: asyncpg.Pool) -> None:
    http, world = console.http, console.world
    me = await sign_in(http, world.read_key)
    await page(http, "/ops", me)
    out = await http.post("/ops/logout", data={"csrf": csrf_of((await page(http, "/ops", me)).text)}, headers=me)
    assert out.status_code == 303
    assert (await http.get("/ops", headers=me)).status_code == 303
    me = await sign_in(http, world.read_key)
    async with pool.acquire() as conn:
        await apikeys.revoke(conn, world.read_key[:12])
    gone = await http.get("/ops", headers=me)
    assert gone.status_code == 303
    assert gone.headers["location"].startswith("/ops/login")


async def test_every_console_route_but_sign_in_and_its_assets_needs_a_session(console: Console) -> None:
    routes = {
        (method, re.sub(r"\{[a-z_]+:int\}", "1", re.sub(r"\{[a-z_]+:str\}", "x", route.path)))
        for route in console.stage.app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/ops")
        for method in route.methods - {"HEAD", "OPTIONS"}
    }
    assert ("POST", "/ops/anomalies/1/resolve") in routes
    open_ones = {("GET", "/ops/login"), ("POST", "/ops/login")}
    checked = 0
    for method, path in sorted(routes - open_ones):
        if path.startswith("/ops/static"):
            continue
        answer = await console.http.request(method, path, data={"note": "x"} if method == "POST" else None)
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert answer.headers["location"].startswith("/ops/login?next="), (method, path)
        checked += 1
    assert checked >= 15
