"""`payrecon webhook-endpoints …` (manage the shop's endpoints) and `payrecon listen` (forward to a local URL)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.table import Table

from service import embedded
from service.cli import CliError, get_settings, run_async, with_connection
from service.db import Conn, create_pool
from service.notify import deliveries, endpoints, signing
from service.notify.listen import listen as listen_to_outbox

T = TypeVar("T")
_TYPES = click.Choice(endpoints.EVENT_TYPES)


def _json(value: Any) -> None:
    click.echo(msgspec.json.encode(value).decode())


def _found(value: T | None, what: str) -> T:
    if value is None:
        raise CliError(f"no {what}")
    return value


def _db(work: Callable[[Conn], Awaitable[T]]) -> T:
    return with_connection(work)


@click.group(name="webhook-endpoints")
def webhook_endpoints() -> None:
    """The shop's webhook endpoints: where payrecon POSTs order and anomaly notifications."""


@webhook_endpoints.command()
@click.option("--url", required=True, help="Where deliveries are POSTed, e.g. https://shop.example/hooks.")
@click.option("--event-type", "types", multiple=True, type=_TYPES, help="A type to receive (repeat; none: all).")
@click.option("--description", default="", help="For people.")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoint and its secret as JSON.")
def create(url: str, types: tuple[str, ...], description: str, as_json: bool) -> None:
    """Register an endpoint. Its signing secret is shown once, alone on the last line."""
    if not url.startswith(("http://", "https://")):
        raise CliError("--url must be an http:// or https:// URL")
    made = _db(lambda conn: endpoints.create(conn, url=url, event_types=list(types), description=description))
    if as_json:
        _json(made)
        return
    click.echo(f"created webhook endpoint {made.endpoint.id} → {url} ({', '.join(types) or 'every type'})")
    click.echo("its signing secret is shown only now:", err=True)
    click.echo(made.secret)


@webhook_endpoints.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Endpoints, their state and their circuit."""
    found = _db(endpoints.list_endpoints)
    if as_json:
        _json(found)
        return
    table = Table("id", "url", "types", "enabled", "failures in a row", "circuit open until", "secrets")
    for e in found:
        until = f"{e.circuit_open_until:%Y-%m-%d %H:%M:%S}" if e.circuit_open_until else "-"
        types = " ".join(e.event_types) or "all"
        table.add_row(
            str(e.id),
            e.url,
            types,
            "yes" if e.enabled else "no",
            str(e.consecutive_failures),
            until,
            str(e.live_secrets),
        )
    Console(width=160).print(table)


def _set_enabled(endpoint_id: int, enabled: bool) -> None:
    changed = _db(lambda conn: endpoints.update(conn, endpoint_id, enabled=enabled))
    _found(changed, f"webhook endpoint {endpoint_id}")
    click.echo(f"webhook endpoint {endpoint_id} {'enabled' if enabled else 'disabled'}")


@webhook_endpoints.command()
@click.argument("endpoint_id", type=int)
def enable(endpoint_id: int) -> None:
    """Resume deliveries (and close the circuit)."""
    _set_enabled(endpoint_id, True)


@webhook_endpoints.command()
@click.argument("endpoint_id", type=int)
def disable(endpoint_id: int) -> None:
    """Stop deliveries; new notifications are not queued for it meanwhile."""
    _set_enabled(endpoint_id, False)


@webhook_endpoints.command(name="delete")
@click.argument("endpoint_id", type=int)
def delete_(endpoint_id: int) -> None:
    """Delete an endpoint for good (its delivery log stays in the database)."""
    if not _db(lambda conn: endpoints.delete(conn, endpoint_id)):
        raise CliError(f"no webhook endpoint {endpoint_id}")
    click.echo(f"webhook endpoint {endpoint_id} deleted")


@webhook_endpoints.command(name="rotate-secret")
@click.argument("endpoint_id", type=int)
@click.option(
    "--overlap",
    default=86400,
    show_default=True,
    type=click.IntRange(0, 7 * 86400),
    help="Seconds the old secret keeps signing.",
)
def rotate_secret(endpoint_id: int, overlap: int) -> None:
    """A new signing secret (last line); the old one signs too for --overlap seconds."""
    rotated = _db(lambda conn: endpoints.rotate_secret(conn, endpoint_id, timedelta(seconds=overlap)))
    _found(rotated, f"webhook endpoint {endpoint_id}")
    assert rotated is not None
    click.echo(
        f"rotated the secret of webhook endpoint {endpoint_id}; the old one signs for {overlap} s more:", err=True
    )
    click.echo(rotated.secret)


@webhook_endpoints.command(name="deliveries")
@click.argument("endpoint_id", type=int)
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
def deliveries_(endpoint_id: int, status: str | None, limit: int, as_json: bool) -> None:
    """The delivery log, newest first: each attempt's HTTP code and latency."""
    found = _db(lambda conn: deliveries.list_deliveries(conn, endpoint_id, status=status, limit=limit))
    if as_json:
        _json(found)
        return
    table = Table("id", "webhook-id", "type", "order", "v", "status", "attempts (code/ms)")
    for d in found:
        tries = " ".join(f"{a.status_code or 'x'}/{a.latency_ms}" for a in d.attempts)
        table.add_row(str(d.id), d.webhook_id, d.type, d.order_id, str(d.version), d.status, tries or "-")
    Console(width=160).print(table)


@webhook_endpoints.command()
@click.argument("endpoint_id", type=int)
@click.argument("delivery_id", type=int)
def redeliver(endpoint_id: int, delivery_id: int) -> None:
    """Send a delivery again (same webhook-id, fresh retry schedule); the worker's next sweep sends it."""
    again = _db(lambda conn: deliveries.redeliver(conn, endpoint_id, delivery_id))
    _found(again, f"delivery {delivery_id} of webhook endpoint {endpoint_id}")
    click.echo(f"delivery {delivery_id} queued again")


@click.command()
@click.option("--forward-to", help="Forward each notification, signed, to this URL, e.g. http://localhost:3000/hooks.")
@click.option("--event-type", "types", multiple=True, type=_TYPES, help="Only these types (repeat).")
@click.option("--secret", help="Sign with this whsec_… secret (default: a new one, printed at start).")
def listen(forward_to: str | None, types: tuple[str, ...], secret: str | None) -> None:
    """Print each notification as it is committed and forward it, signed, to a local URL (for development)."""
    secret = secret or signing.new_secret()
    if not secret.startswith(signing.SECRET_PREFIX):
        raise CliError("--secret must be a whsec_… secret")
    with embedded.resolved(get_settings(), redis=False) as settings:

        async def main() -> None:
            assert settings.database_url is not None
            pool = await create_pool(settings.database_url, min_size=1, max_size=2)
            try:
                if forward_to:
                    click.echo(f"forwarding to {forward_to}; verify with the signing secret {secret}")
                click.echo("waiting for notifications (Ctrl-C to stop)…")
                await listen_to_outbox(
                    pool, forward_to=forward_to, secret=secret, event_types=frozenset(types), echo=click.echo
                )
            finally:
                await pool.close()

        with contextlib.suppress(KeyboardInterrupt):
            run_async(main)
