"""`payrecon reconcile` and `payrecon report` as an operator runs them, against the simulators over HTTP."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import click
import msgspec
import pytest
from click.testing import CliRunner, Result

from providers.simkit import Faults
from reconciler.cli import parse_since, reconcile, report
from service import runs
from service.cli import gateways_toml
from service.settings import Settings
from tests.reconciler.stage import S, Stage, staged


def environment(stage: Stage, settings: Settings, folder: Path) -> dict[str, str]:
    toml = folder / "gateways.toml"
    toml.write_text(gateways_toml({n: [sim.gateway_config(stage.sim_urls[n])] for n, sim in stage.sims.items()}))
    assert settings.database_url is not None
    return {
        "PAYRECON_DATABASE_URL": settings.database_url,
        "PAYRECON_GATEWAYS": str(toml),
        "PAYRECON_RECONCILE_GRACE": "0.05",
        "PAYRECON_DATA_DIR": str(folder),
        "COLUMNS": "200",  # rich wraps narrower tables, and the assertions read phrases
    }


async def invoke(command: click.Command, args: list[str], env: dict[str, str]) -> Result:
    # The command runs its own event loop (asyncio.run): give it a thread, keep ours serving the simulators.
    return await asyncio.to_thread(CliRunner().invoke, command, args, env=env)


async def test_reconcile_dry_then_live_and_report_in_every_format(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with staged(settings, pool, faults=Faults(drop_rate=1.0, seed=9)) as stage:
        await stage.pay("momo", "cli-1", [S.SUCCEEDED])
        await stage.pay("vnpay", "cli-2", [S.FAILED])
        await stage.pay("stripe", "cli-3", [])
        await stage.drain()
        await asyncio.sleep(0.1)
        env = environment(stage, settings, tmp_path)

        dry = await invoke(reconcile, ["--dry-run"], env)
        assert dry.exit_code == 0, dry.output
        assert "dry run: no order changed" in dry.output
        assert "would repair" in dry.output
        assert set((await stage.ledger()).values()) == {"pending"}

        live = await invoke(reconcile, [], env)
        assert live.exit_code == 0, live.output
        assert "completed" in live.output
        assert "pending → succeeded" in live.output
        assert await stage.ledger() == {"cli-1": "succeeded", "cli-2": "failed", "cli-3": "pending"}

        latest = await invoke(report, [], env)  # no id: the latest run
        assert latest.exit_code == 0, latest.output
        assert "Run 2 (cli, all gateways)" in latest.output
        table = latest.output
        assert "momo" in table
        assert "vnpay" in table

        as_csv = await invoke(report, ["1", "--format", "csv"], env)
        rows = list(csv.DictReader(io.StringIO(as_csv.output)))
        assert tuple(rows[0]) == runs.FINDING_CSV_HEADER
        assert {(r["order_id"], r["kind"]) for r in rows} == {
            ("cli-1", "repaired"),
            ("cli-2", "repaired"),
            ("cli-3", "in_sync"),
        }
        as_json = json.loads((await invoke(report, ["2", "--format", "json"], env)).output)
        assert as_json["run"]["id"] == 2
        assert as_json["run"]["status"] == "completed"
        assert as_json["run"]["counts"]["findings"] == {"repaired": 2, "in_sync": 1}
        assert len(as_json["findings"]) == 3

        # A pipe is no 80-column terminal: the table keeps its natural width and no detail is cut.
        piped = await invoke(report, ["2"], {**env, "COLUMNS": None})  # type: ignore[dict-item]
        assert any("repaired from the status API" in line for line in piped.output.splitlines()), piped.output

        missing = await invoke(report, ["99"], env)
        assert missing.exit_code != 0
        assert "no run 99" in missing.output


async def test_a_run_that_checked_nothing_says_why_rather_than_that_all_agree(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with staged(settings, pool) as stage:
        env = {**environment(stage, settings, tmp_path), "PAYRECON_RECONCILE_GRACE": "3600"}
        await stage.pay("momo", "young-1", [])  # younger than the grace period: left to its webhook
        ran = await invoke(reconcile, [], env)
    assert ran.exit_code == 0, ran.output
    assert "No order was checked: none was due" in ran.output
    assert "every checked order agrees" not in ran.output


async def test_reconcile_refuses_an_unconfigured_gateway_in_one_line(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with staged(settings, pool, gateways=("momo",)) as stage:
        env = environment(stage, settings, tmp_path)
        result = await invoke(reconcile, ["--provider", "paypal"], env)
        assert result.exit_code == 2
        assert result.output.strip() == "payrecon: gateway 'paypal' is not configured (configured: momo)"
        assert await pool.fetchval("select count(*) from reconcile_runs") == 0


def test_since_takes_a_time_or_a_duration() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-11-24T10:00:00Z") == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert parse_since("2026-11-24T10:00:00") == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # no offset: UTC
    assert parse_since(None) is None
    with pytest.raises(click.BadParameter):
        parse_since("yesterday")


def test_params_round_trip() -> None:
    params = runs.RunParams(provider="momo", since=datetime(2026, 1, 1, tzinfo=UTC))
    assert msgspec.convert(msgspec.to_builtins(params), runs.RunParams, strict=False) == params
