"""`payrecon apikey create|list|revoke`: manage the API keys of the REST API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import click
import msgspec
from rich.console import Console
from rich.table import Table

from service import apikeys
from service.cli import CliError, with_connection
from service.db import Conn

T = TypeVar("T")


def _with_connection(work: Callable[[Conn], Awaitable[T]]) -> T:
    """Run `work` on a connection to the configured (or embedded) database."""
    try:
        return with_connection(work)
    except apikeys.ApiKeyError as exc:
        raise CliError(str(exc)) from None
    except asyncpg.UndefinedTableError:
        raise CliError("the database has no api_keys table; run `payrecon migrate` first") from None


def _json(value: Any) -> None:
    click.echo(msgspec.json.encode(value).decode())


@click.group()
def apikey() -> None:
    """Create, list and revoke API keys (sent as `Authorization: Bearer <key>`)."""


@apikey.command()
@click.option("--name", required=True, help="Who uses the key, e.g. shop-backend.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(apikeys.SCOPES),
    help="A scope the key holds; repeat for several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
def create(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a key. It is shown once, alone on the last line: store it now."""
    created = _with_connection(lambda conn: apikeys.create(conn, name, list(scopes)))
    if as_json:
        _json({"key": created.key, **msgspec.structs.asdict(created.api_key)})
        return
    record = created.api_key
    click.echo(f"created API key {record.prefix} (id {record.id}) for {record.name}: {', '.join(record.scopes)}")
    click.echo("the key is shown only now; only its hash is stored:", err=True)
    click.echo(created.key)


@apikey.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@click.option("--active", is_flag=True, help="Leave out revoked keys.")
def list_(as_json: bool, active: bool) -> None:
    """List keys (prefixes and scopes; the keys themselves are never stored)."""
    keys = _with_connection(lambda conn: apikeys.list_keys(conn, include_revoked=not active))
    if as_json:
        _json(keys)
        return
    table = Table("id", "prefix", "name", "scopes", "created", "last used", "revoked")
    for k in keys:
        table.add_row(
            str(k.id),
            k.prefix,
            k.name,
            " ".join(k.scopes),
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        )
    Console(width=160).print(table)


@apikey.command()
@click.argument("key")
def revoke(key: str) -> None:
    """Revoke the key with this prefix (prk_…) or id; it stops working at once."""
    revoked = _with_connection(lambda conn: apikeys.revoke(conn, key))
    click.echo(f"revoked API key {revoked.prefix} (id {revoked.id}, {revoked.name})")
