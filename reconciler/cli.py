"""`payrecon worker`, `payrecon reconcile` and `payrecon report` (registered through `payrecon.commands`).

Like `payrecon migrate`, each works with the embedded servers when no URLs are set. Gateway
accounts come from PAYRECON_GATEWAYS.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from providers.gateway import Connected
from reconciler import report as reports
from reconciler.http import http_client
from reconciler.run import RunEnv, count_due, execute
from service import db, embedded, migrate, runs, since
from service.cli import CliError, get_settings, run_async
from service.gateways import load_gateways
from service.runs import FindingKind, RunParams, RunStatus, Trigger
from service.settings import Settings, SettingsError


def gateways_of(settings: Settings) -> dict[str, Connected]:
    try:
        return load_gateways(settings.gateways)
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """`--since`: an ISO 8601 time (UTC when no offset is given) or a duration back from now (`90m`, `2d`)."""
    try:
        return since.parse_since(value, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@asynccontextmanager
async def opened_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url is not None
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=settings.db_pool_max)
    try:
        async with pool.acquire() as conn:
            missing = await migrate.pending(conn)
        if missing:
            raise CliError(f"database schema is behind (missing {', '.join(missing)}); run `payrecon migrate` first")
        yield pool
    finally:
        await pool.close()


@click.command()
@click.option("--burst", is_flag=True, help="Run the queued jobs, then exit (no cron).")
@click.option(
    "--metrics-port",
    type=int,
    help="Serve this worker's Prometheus metrics on 127.0.0.1:PORT/metrics (for a worker not summed by serve).",
)
def worker(burst: bool, metrics_port: int | None) -> None:
    """Run the reconciliation worker: scheduled runs and audits, and API-requested runs.

    A run of open orders every PAYRECON_RECONCILE_EVERY seconds; an audit of every order created
    inside PAYRECON_RECONCILE_HORIZON, paid ones too, every PAYRECON_RECONCILE_AUDIT_EVERY seconds
    (default daily; 0 turns audits off).
    """
    from reconciler.worker import close_worker, create_worker

    settings = get_settings()
    gateways_of(settings)  # a bad gateways file fails here, in one line, not in the worker
    with embedded.resolved(settings) as s:

        async def main() -> None:
            if metrics_port is not None:
                from prometheus_client import start_http_server

                from service.metrics import registry

                start_http_server(metrics_port, addr="127.0.0.1", registry=registry())
            w = create_worker(s, burst=burst, schedule=not burst)
            try:
                await w.async_run()
            except asyncio.CancelledError:
                pass  # arq stops on SIGINT/SIGTERM by cancelling its main task: a normal end
            finally:
                await close_worker(w)

        run_async(main)


@click.command()
@click.option("--provider", help="Only orders with a reference at this gateway (stripe, momo, vnpay…).")
@click.option(
    "--since",
    help="Audit every order created since (ISO time, or a duration back: 90m, 2d), any status, ignoring backoff.",
)
@click.option("--dry-run", is_flag=True, help="Record findings, change no order.")
def reconcile(provider: str | None, since: str | None, dry_run: bool) -> None:
    """Run one reconciliation now, with a live progress bar and a summary at the end."""
    settings = get_settings()
    gateways = gateways_of(settings)
    if not gateways:
        raise CliError("no gateway accounts: set PAYRECON_GATEWAYS to a TOML file of [[stripe]]/[[momo]]/[[vnpay]]")
    if provider is not None and provider not in gateways:
        raise CliError(f"gateway {provider!r} is not configured (configured: {', '.join(sorted(gateways))})")
    params = RunParams(provider=provider, since=parse_since(since))
    console = Console()
    with embedded.resolved(settings, redis=False) as s:

        async def main() -> RunStatus:
            async with opened_pool(s) as pool, http_client(gateways) as http:
                env = RunEnv(pool=pool, gateways=gateways, http=http, settings=s)
                async with pool.acquire() as conn:
                    run = await runs.create_run(conn, trigger=Trigger.CLI, params=params, dry_run=dry_run)
                assert run is not None
                total = await count_due(env, run)
                with Progress(
                    TextColumn(f"run {run.id}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    console=console,
                    transient=True,
                ) as bar:
                    task = bar.add_task("", total=total)
                    seen = dict.fromkeys((k.value for k in FindingKind), 0)

                    def progress(kind: FindingKind, gateway: str) -> None:
                        seen[kind.value] += 1
                        text = ", ".join(f"{n} {k}" for k, n in seen.items() if n)
                        bar.update(task, advance=1, description=text, total=max(total, sum(seen.values())))

                    ended = await execute(env, run, lead=True, progress=progress)
                assert ended is not None
                await reports.render_table(pool, ended, console)
                return ended.status

        status = run_async(main)
    if status is not RunStatus.COMPLETED:
        sys.exit(1)


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option(
    "--trigger",
    type=click.Choice([t.value for t in Trigger]),
    help="Without RUN_ID: the latest run of this kind (audit: the latest scheduled audit).",
)
def report(run_id: int | None, fmt: str, trigger: str | None) -> None:
    """Print a run's report (the latest run when no RUN_ID is given)."""
    if run_id is not None and trigger is not None:
        raise click.UsageError("give RUN_ID or --trigger, not both")
    settings = get_settings()
    with embedded.resolved(settings, redis=False) as s:

        async def main() -> None:
            async with opened_pool(s) as pool:
                async with pool.acquire() as conn:
                    if run_id is None:
                        run = await runs.latest_run(conn, None if trigger is None else Trigger(trigger))
                    else:
                        run = await runs.get_run(conn, run_id)
                if run is None:
                    kind = f"{trigger} " if trigger else ""
                    raise CliError(f"no {kind}reconciliation run yet" if run_id is None else f"no run {run_id}")
                await reports.render(pool, run, fmt, sys.stdout)

        run_async(main)
