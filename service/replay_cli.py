"""`payrecon replay <rejected id> [--dry-run]`: replay a held or refused delivery once fixed."""

from __future__ import annotations

import click
import msgspec

from service import embedded, replay
from service.cli import CliError, get_settings, run_async
from service.db import create_pool
from service.gateways import load_gateways
from service.settings import SettingsError


@click.command(name="replay")
@click.argument("rejected_id", type=click.IntRange(min=1))
@click.option("--dry-run", is_flag=True, help="Verify, parse and apply in a transaction that is rolled back.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def replay_command(rejected_id: int, dry_run: bool, as_json: bool) -> None:
    """Replay rejected delivery REJECTED_ID (see GET /v1/rejected-deliveries) through the adapter and ledger.

    The stored request is verified again with the configured secrets, parsed, and applied with
    source `manual`; applying twice is harmless (the ledger dedupes). Exits 1 when the delivery
    still cannot be processed, and says why.
    """
    try:
        gateways = load_gateways(get_settings().gateways)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    with embedded.resolved(get_settings(), redis=False) as settings:

        async def main() -> replay.ReplayResult:
            assert settings.database_url is not None
            pool = await create_pool(settings.database_url, min_size=1, max_size=2)
            try:
                return await replay.replay(pool, gateways, rejected_id, dry_run=dry_run)
            finally:
                await pool.close()

        result: replay.ReplayResult = run_async(main)
    if as_json:
        click.echo(msgspec.json.encode(result).decode())
    elif result.ok:
        outcomes = ", ".join(result.outcomes) or "nothing tracked (acknowledged as ignored)"
        verb = "would apply" if dry_run else "replayed"
        click.echo(f"rejected delivery {rejected_id} ({result.provider}) {verb}: {outcomes}")
    else:
        click.echo(f"rejected delivery {rejected_id} ({result.provider}) still cannot be processed: {result.error}")
    if not result.ok:
        raise SystemExit(1)
