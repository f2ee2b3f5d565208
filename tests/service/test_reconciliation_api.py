"""The reconciliation REST API over real HTTP: start a run (a worker leads it), list, read, findings, CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from arq.connections import ArqRedis

from providers.simkit import Faults
from reconciler.worker import close_worker, create_worker
from service import apikeys, runs
from service.serving import free_port
from service.settings import Settings
from tests.reconciler.stage import S, Stage, staged

CSV = "text/csv"


async def key(pool: asyncpg.Pool, *scopes: str) -> dict[str, str]:
    async with pool.acquire() as conn:
        new = await apikeys.create(conn, f"test-{uuid.uuid4().hex[:6]}", list(scopes))
    return {"authorization": f"Bearer {new.key}"}


async def work(stage: Stage, settings: Settings) -> None:
    """One burst worker runs what the API enqueued."""
    async with stage.client() as http:
        worker = create_worker(
            settings, gateways=stage.adapters, http=http, burst=True, poll_delay=0, handle_signals=False
        )
        try:
            await worker.main()
        finally:
            await close_worker(worker)


async def start(api: httpx.AsyncClient, headers: dict[str, str], body: Any = None) -> httpx.Response:
    content = b"" if body is None else body if isinstance(body, bytes) else msgspec.json.encode(body)
    return await api.post("/v1/reconciliation/runs", content=content, headers=headers)


async def test_start_a_run_read_it_page_its_findings_and_export_csv(settings: Settings, pool: asyncpg.Pool) -> None:
    settings = msgspec.structs.replace(settings, reconcile_grace=0.05)
    async with staged(settings, pool, faults=Faults(drop_rate=1.0, seed=4)) as stage:
        for i, steps in enumerate([[S.SUCCEEDED], [S.FAILED], [S.SUCCEEDED], [], [S.CANCELED]]):
            await stage.pay("vnpay", f"api-{i}", steps)
        await stage.pay("momo", "api-5", [S.SUCCEEDED])
        await stage.drain()
        ops, reader = await key(pool, "recon:run", "recon:read"), await key(pool, "recon:read")
        async with httpx.AsyncClient(base_url=stage.app_url, timeout=30) as api:
            assert (await start(api, {})).status_code == 401
            assert (await start(api, reader)).status_code == 403
            started = await start(api, ops)
            assert started.status_code == 202, started.text
            run = started.json()
            assert run["status"] == "running"
            assert run["trigger"] == "api"
            assert started.headers["location"] == f"/v1/reconciliation/runs/{run['id']}"

            await work(stage, settings)

            done = (await api.get(f"/v1/reconciliation/runs/{run['id']}", headers=reader)).json()
            assert done["status"] == "completed"
            assert done["finished_at"] is not None
            assert done["counts"]["findings"] == {"repaired": 5, "in_sync": 1}
            assert done["counts"]["gateways"]["vnpay"] == {"repaired": 4, "in_sync": 1}

            # Findings: filtered by kind, paged by cursor, exported as CSV.
            url = f"/v1/reconciliation/runs/{run['id']}/findings"
            repaired: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                params = {"kind": "repaired", "limit": "3", **({"cursor": cursor} if cursor else {})}
                page = (await api.get(url, params=params, headers=reader)).json()
                repaired += page["items"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert sorted(f["order_id"] for f in repaired) == ["api-0", "api-1", "api-2", "api-4", "api-5"]
            assert {f["kind"] for f in repaired} == {"repaired"}
            assert {(f["order_id"], f["from_status"], f["to_status"]) for f in repaired} >= {
                ("api-0", "pending", "succeeded")
            }

            exported = await api.get(url, headers={**reader, "accept": "text/csv"})
            assert exported.status_code == 200
            assert exported.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            assert tuple(rows[0]) == runs.FINDING_CSV_HEADER
            assert sorted(r["order_id"] for r in rows) == [f"api-{i}" for i in range(6)]
            assert {r["kind"] for r in rows if r["order_id"] == "api-3"} == {"in_sync"}
            only = await api.get(url, params={"kind": "in_sync"}, headers={**reader, "accept": "text/csv"})
            assert [r["order_id"] for r in csv.DictReader(io.StringIO(only.text))] == ["api-3"]
            everyone = [f["order_id"] for f in (await api.get(url, headers=reader)).json()["items"]]
            first_two = (await api.get(url, params={"limit": "2"}, headers=reader)).json()
            rest = await api.get(url, params={"cursor": first_two["next_cursor"]}, headers={**reader, "accept": CSV})
            assert [r["order_id"] for r in csv.DictReader(io.StringIO(rest.text))] == everyone[2:]

            # A dry run through the API, then the list of runs, newest first, paged.
            dry = await start(api, ops, {"dry_run": True, "provider": "vnpay"})
            assert dry.status_code == 202
            assert (dry.json()["dry_run"], dry.json()["params"]["provider"]) == (True, "vnpay")
            await work(stage, settings)
            first = (await api.get("/v1/reconciliation/runs", params={"limit": "1"}, headers=reader)).json()
            assert [r["id"] for r in first["items"]] == [dry.json()["id"]]
            second = await api.get(
                "/v1/reconciliation/runs", params={"limit": "1", "cursor": first["next_cursor"]}, headers=reader
            )
            assert [r["id"] for r in second.json()["items"]] == [run["id"]]
            assert second.json()["next_cursor"] is None
            listing = await api.get("/v1/reconciliation/runs", headers={**reader, "accept": "text/csv"})
            assert [r["id"] for r in csv.DictReader(io.StringIO(listing.text))] == [
                str(dry.json()["id"]),
                str(run["id"]),
            ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"provider": "paypal"}, "not configured"),
        ({"bogus": 1}, "bogus"),
        ({"since": "yesterday"}, "rfc 3339"),
        ({"dry_run": "yes"}, "bool"),
        (b"{not json", "invalid"),
        ([1, 2], "object"),
    ],
)
async def test_a_bad_run_request_is_a_400_naming_the_problem(
    settings: Settings, pool: asyncpg.Pool, body: Any, says: str
) -> None:
    async with staged(settings, pool, gateways=("vnpay",)) as stage:
        ops = await key(pool, "recon:run", "recon:read")
        async with httpx.AsyncClient(base_url=stage.app_url) as api:
            answer = await start(api, ops, body)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert says in answer.text.lower()
        assert await pool.fetchval("select count(*) from reconcile_runs") == 0


async def test_reading_runs_refuses_bad_ids_cursors_and_kinds(settings: Settings, pool: asyncpg.Pool) -> None:
    async with staged(settings, pool, gateways=("vnpay",)) as stage:
        reader = await key(pool, "recon:read")
        async with httpx.AsyncClient(base_url=stage.app_url) as api:
            assert (await api.get("/v1/reconciliation/runs/999", headers=reader)).status_code == 404
            assert (await api.get("/v1/reconciliation/runs/999/findings", headers=reader)).status_code == 404
            assert (await api.get("/v1/reconciliation/runs?cursor=abc", headers=reader)).status_code == 400
            assert (await api.get("/v1/reconciliation/runs?limit=0", headers=reader)).status_code == 400
            assert (await api.get("/v1/reconciliation/runs", headers={})).status_code == 401
            async with pool.acquire() as conn:
                run = await runs.create_run(conn, trigger=runs.Trigger.CLI, params=runs.RunParams())
            assert run is not None
            bad_kind = await api.get(f"/v1/reconciliation/runs/{run.id}/findings?kind=fixed", headers=reader)
            assert bad_kind.status_code == 400
            assert (await api.get(f"/v1/reconciliation/runs/{run.id}", headers=reader)).json()["status"] == "running"


async def test_a_run_the_queue_cannot_take_is_failed_and_answered_503(settings: Settings, pool: asyncpg.Pool) -> None:
    async with staged(settings, pool, gateways=("vnpay",)) as stage:
        ops = await key(pool, "recon:run")
        state = stage.app.state
        live = state.redis
        # Redis goes away: a real client on a port nobody listens on.
        state.redis = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
        try:
            async with httpx.AsyncClient(base_url=stage.app_url) as api:
                answer = await start(api, ops)
        finally:
            await state.redis.aclose()
            state.redis = live
        assert answer.status_code == 503, answer.text
        assert "redis" in answer.text.lower()
        row = await pool.fetchrow("select status, error from reconcile_runs")
        assert row is not None
        assert row["status"] == "failed"
        assert "could not enqueue" in row["error"]


async def test_runs_can_be_listed_by_trigger_so_ops_find_the_scheduled_audits(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    slot = datetime(2026, 11, 24, tzinfo=UTC)
    async with pool.acquire() as conn:
        made = [
            await runs.create_run(conn, trigger=trigger, params=runs.RunParams(), slot=at)
            for trigger, at in [
                (runs.Trigger.AUDIT, slot - timedelta(days=1)),
                (runs.Trigger.CRON, slot),
                (runs.Trigger.AUDIT, slot),  # the same instant as the 5-minute slot: a run of its own
                (runs.Trigger.API, None),
            ]
        ]
    ids = [run.id for run in made if run is not None]
    assert len(ids) == 4
    async with staged(settings, pool, gateways=("vnpay",)) as stage:
        reader = await key(pool, "recon:read")
        async with httpx.AsyncClient(base_url=stage.app_url) as api:
            audits = (await api.get("/v1/reconciliation/runs", params={"trigger": "audit"}, headers=reader)).json()
            assert [(r["id"], r["trigger"]) for r in audits["items"]] == [(ids[2], "audit"), (ids[0], "audit")]
            page = await api.get("/v1/reconciliation/runs", params={"trigger": "audit", "limit": "1"}, headers=reader)
            assert [r["id"] for r in page.json()["items"]] == [ids[2]]
            rest = await api.get(
                "/v1/reconciliation/runs",
                params={"trigger": "audit", "cursor": page.json()["next_cursor"]},
                headers=reader,
            )
            assert [r["id"] for r in rest.json()["items"]] == [ids[0]]
            exported = await api.get(
                "/v1/reconciliation/runs", params={"trigger": "cron"}, headers={**reader, "accept": "text/csv"}
            )
            listed = [(r["id"], r["trigger"]) for r in csv.DictReader(io.StringIO(exported.text))]
            assert listed == [(str(ids[1]), "cron")]
            older = await api.get(
                "/v1/reconciliation/runs",
                params={"trigger": "audit", "cursor": page.json()["next_cursor"]},
                headers={**reader, "accept": "text/csv"},
            )
            assert [(r["id"], r["trigger"]) for r in csv.DictReader(io.StringIO(older.text))] == [
                (str(ids[0]), "audit")
            ]
            everything = (await api.get("/v1/reconciliation/runs", headers=reader)).json()
            assert [r["id"] for r in everything["items"]] == ids[::-1]
            bad = await api.get("/v1/reconciliation/runs", params={"trigger": "nightly"}, headers=reader)
            assert bad.status_code == 400
            assert "trigger" in bad.text
