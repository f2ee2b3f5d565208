"""The `payrecon` command line: serve, migrate, apikey, simulate, and the commands of layers above."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

import click

from providers.errors import PayreconError
from service import embedded, logs
from service.db import Conn, create_pool
from service.migrate import MigrationError
from service.migrate import migrate as apply_migrations
from service.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


class CliError(click.ClickException):
    """One clear line on stderr and a non-zero exit; never a traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"payrecon: {self.message}", err=True)


def get_settings(**overrides: object) -> Settings:
    try:
        return load_settings(None, **overrides)  # None: the process environment
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def run_async(main: Callable[[], Any]) -> Any:
    """Run a coroutine function, turning our expected failures into one clear line."""
    try:
        return asyncio.run(main())
    except (PayreconError, SettingsError, MigrationError, embedded.EmbeddedError, OSError) as exc:
        raise CliError(str(exc)) from None


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="payrecon")
def cli() -> None:
    """payrecon: payment-status reconciliation for Stripe, MoMo and VNPay."""
    # SIGTERM as an exception: `finally` blocks run, so embedded servers stop cleanly.
    # (uvicorn restores this handler and re-raises the signal after its graceful shutdown.)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        found = load_settings(None)
    except SettingsError:  # the command itself reports it, in one line
        found = Settings()
    logs.configure(found.log_level, found.log_json)


def with_connection(work: Callable[[Conn], Awaitable[T]]) -> T:
    """Run `work` on one connection to the configured (or embedded) database, then exit cleanly."""
    with embedded.resolved(get_settings(), redis=False) as s:

        async def main() -> T:
            assert s.database_url is not None
            pool = await create_pool(s.database_url, min_size=1, max_size=1)
            try:
                async with pool.acquire() as conn:
                    return await work(conn)
            finally:
                await pool.close()

        result: T = run_async(main)
        return result


@cli.command()
def migrate() -> None:
    """Apply the pending database migrations (safe to run from several processes at once)."""
    done = with_connection(apply_migrations)
    click.echo(f"applied {', '.join(done)}" if done else "schema is up to date")


@cli.command()
@click.option("--host", help="Listen address (default PAYRECON_HOST).")
@click.option("--port", type=int, help="Listen port (default PAYRECON_PORT).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes sharing the port (default PAYRECON_WORKERS, else one per CPU).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API and webhooks with uvicorn, one worker process per CPU by default."""
    from service.serving import serve_workers, single_server, worker_count

    options = {"host": host, "port": port, "workers": workers}
    settings = get_settings(**{k: v for k, v in options.items() if v is not None})
    with embedded.resolved(settings) as s:
        if worker_count(s) == 1:
            run_async(single_server(s).serve)
        else:
            serve_workers(s)


@cli.command()
@click.argument("gateway")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--webhook-url", help="Where the simulator delivers webhooks, e.g. http://127.0.0.1:8000/webhooks/momo")
def simulate(gateway: str, host: str, port: int, webhook_url: str | None) -> None:
    """Run a gateway simulator (status API + /_sim control API) standalone."""
    import importlib

    import uvicorn

    try:
        module = importlib.import_module(f"providers.{gateway}.simulator")
    except ModuleNotFoundError:
        raise CliError(f"no simulator for gateway {gateway!r}") from None
    simulator = module.Simulator(webhook_url=webhook_url)
    click.echo(f"{gateway} simulator on http://{host}:{port}; its account for the PAYRECON_GATEWAYS file:\n")
    click.echo(gateway_table(gateway, simulator.gateway_config(f"http://{host}:{port}")))
    config = uvicorn.Config(simulator.asgi_app(), host=host, port=port, log_level="warning", lifespan="on")
    run_async(uvicorn.Server(config).serve)


def gateway_table(gateway: str, values: dict[str, object]) -> str:
    """One `[[gateway]]` TOML table. JSON strings, numbers and lists of them are valid TOML values."""
    lines = [f"[[{gateway}]]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def gateways_toml(document: dict[str, list[dict[str, Any]]]) -> str:
    """A whole PAYRECON_GATEWAYS file: gateway name → its account tables."""
    return "\n".join(gateway_table(name, table) for name, tables in document.items() for table in tables)


def _load_plugin_commands() -> None:
    # Commands of packages layered above `service` (the reconciler) register by entry point,
    # so `service` never imports them. One that fails to import is a broken install: say so
    # with its traceback rather than drop the command.
    for ep in entry_points(group="payrecon.commands"):
        cli.add_command(ep.load(), name=ep.name)


def main() -> None:
    from service.apikeys_cli import apikey  # here, not at the top: it imports this module

    _load_plugin_commands()
    cli.add_command(apikey)
    cli(prog_name="payrecon")


if __name__ == "__main__":
    main()
