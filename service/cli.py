"""The `payrecon` command line: serve, migrate, apikey, simulate, and the commands of layers above."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine
from importlib.metadata import entry_points
from types import FrameType
from typing import Any, TypeVar

import asyncpg
import click
import msgspec

from providers.errors import PayreconError
from service import embedded, logs
from service.db import Conn, create_pool
from service.migrate import MigrationError
from service.migrate import migrate as apply_migrations
from service.migrate import pending as pending_migrations
from service.settings import PREFIX, Settings, SettingsError, load_settings

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


def run_async(main: Callable[[], Coroutine[Any, Any, T]], *, stop_on_signals: bool = True) -> T:
    """Run a coroutine function until it ends or a signal stops it; expected failures become one line.

    `stop_on_signals=False` for a `main` that handles Ctrl-C and SIGTERM itself (uvicorn's server).
    """
    try:
        return asyncio.run(_stoppable(main) if stop_on_signals else main())
    except (PayreconError, SettingsError, MigrationError, embedded.EmbeddedError, OSError) as exc:
        raise CliError(str(exc)) from None
    except _CANNOT_CONNECT as exc:
        raise CliError(f"cannot use the database: {exc}") from None


# What a wrong PAYRECON_DATABASE_URL or a server that turns us away raise: an operator's problem to
# state in one line (asyncpg's messages name no password), not a traceback. Other database errors
# are bugs and keep theirs.
_CANNOT_CONNECT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InvalidAuthorizationSpecificationError,  # no such role, wrong password, pg_hba refusal
    asyncpg.CannotConnectNowError,  # starting up, shutting down
    asyncpg.TooManyConnectionsError,
)


class StoppedError(CliError):
    """Ctrl-C: every command stops the way Ctrl-C stops it, with one line and the shell's 130."""

    signum = signal.SIGINT
    exit_code = 128 + signal.SIGINT

    def __init__(self) -> None:
        super().__init__(f"stopped ({self.signum.name})")


class TerminatedError(StoppedError):
    """SIGTERM: the same stop, and a clean exit for the supervisor that asked for it."""

    signum = signal.SIGTERM
    exit_code = 0


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stopped(signum: int) -> StoppedError:
    return TerminatedError() if signum == signal.SIGTERM else StoppedError()


async def _stoppable(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`main()`, cancelled by Ctrl-C or SIGTERM so that every `async with` and `finally` unwinds in order
    (servers, worker, pools; then the embedded PostgreSQL and Redis) and the command says one line.

    The handlers are the loop's own, not asyncio.run's Ctrl-C handling: that one knows no SIGTERM
    (raising SystemExit from a plain handler tore tasks down mid-await: 75 lines of tracebacks), and
    a process a shell started in the background, which ignores SIGINT, does not get it at all.
    """
    if threading.current_thread() is not threading.main_thread():
        return await main()  # signals reach only the main thread (a test may run a command in another)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await main()
    except asyncio.CancelledError:
        if received:
            raise _stopped(received[0]) from None
        raise
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous[signum])


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM outside `run_async` (starting the embedded servers, say): stop as Ctrl-C would.
    raise _stopped(signum)


class PayreconGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Ctrl-C outside `run_async`: one line, not click's "Aborted!"
            raise StoppedError() from None


@click.group(cls=PayreconGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="payrecon")
def cli() -> None:
    """payrecon: payment-status reconciliation for Stripe, MoMo and VNPay."""
    signal.signal(signal.SIGTERM, _terminate)
    found = _log_settings()
    logs.configure(found.log_level, found.log_json)


def _log_settings() -> Settings:
    # Only the two logging settings: the command reads (and reports on) the rest itself, once.
    wanted = {name: os.environ[PREFIX + name] for name in ("LOG_LEVEL", "LOG_JSON") if os.environ.get(PREFIX + name)}
    try:
        return msgspec.convert(wanted, Settings, strict=False)
    except msgspec.ValidationError:  # the command says what is wrong with it, in one line
        return Settings()


def with_connection(work: Callable[[Conn], Awaitable[T]], database_url: str | None = None) -> T:
    """Run `work` on one connection to `database_url` (default: the configured or embedded database)."""
    if database_url is None:
        with embedded.resolved(get_settings(), redis=False) as s:
            assert s.database_url is not None
            return with_connection(work, s.database_url)

    async def main() -> T:
        pool = await create_pool(database_url, min_size=1, max_size=1)
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
        assert s.database_url is not None
        # Refuse a schema that is behind here, in one line, rather than from inside the app's
        # lifespan, where uvicorn reports it as a 41-line exception group.
        missing = with_connection(pending_migrations, s.database_url)
        if missing:
            raise CliError(f"database schema is behind (missing {', '.join(missing)}); run `payrecon migrate` first")
        if worker_count(s) == 1:
            serve_app(single_server(s))
        else:
            serve_workers(s)  # uvicorn's supervisor: stops its workers gracefully on both signals


def serve_app(server: Any) -> None:
    """Run one uvicorn server until Ctrl-C or SIGTERM.

    uvicorn stops gracefully on both signals itself, then re-raises the signal: Ctrl-C ends as a
    KeyboardInterrupt, SIGTERM in `_terminate`, each one line. Our own loop handlers would cancel
    its graceful shutdown midway (a signal reaches every handler the loop has through its wakeup fd).
    """
    run_async(server.serve, stop_on_signals=False)


@cli.command()
@click.argument("gateway")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--webhook-url", help="Where the simulator delivers webhooks, e.g. http://127.0.0.1:8000/webhooks/momo")
def simulate(gateway: str, host: str, port: int, webhook_url: str | None) -> None:
    """Run a gateway simulator (status API + /_sim control API) standalone."""
    import uvicorn

    from providers.registry import gateways

    installed = gateways()
    if gateway not in installed:
        raise CliError(f"no gateway {gateway!r} is installed; installed are: {', '.join(installed) or 'none'}")
    simulator = installed[gateway].simulator(webhook_url=webhook_url)
    click.echo(f"{gateway} simulator on http://{host}:{port}; its account for the PAYRECON_GATEWAYS file:\n")
    click.echo(gateway_table(gateway, simulator.gateway_config(f"http://{host}:{port}")))
    config = uvicorn.Config(simulator.asgi_app(), host=host, port=port, log_level="warning", lifespan="on")
    serve_app(uvicorn.Server(config))


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
    from service.apikeys_cli import apikey  # here, not at the top: they import this module
    from service.notify.cli import listen, webhook_endpoints
    from service.replay_cli import replay_command

    _load_plugin_commands()
    cli.add_command(apikey)
    cli.add_command(webhook_endpoints)
    cli.add_command(listen)
    cli.add_command(replay_command)
    cli(prog_name="payrecon")


if __name__ == "__main__":
    main()
