"""`payrecon replay`: a stored delivery through the adapter and ledger from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from providers.base import PaymentStatus
from service.cli import gateway_table
from tests.gateways import simulator


def payrecon(database_url: str, gateways: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAYRECON_DATABASE_URL": database_url, "PAYRECON_GATEWAYS": str(gateways)}
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-c", "from service.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_replay_dry_run_then_for_real(tmp_path: Path, database_url: str, pool: asyncpg.Pool) -> None:
    sim = simulator("momo")
    gateways = tmp_path / "gateways.toml"
    gateways.write_text(gateway_table("momo", sim.gateway_config("http://127.0.0.1:9")))
    sim.create_payment(order_id="ord_c1", amount=50_000, currency="VND")
    sim.set_status("ord_c1", PaymentStatus.SUCCEEDED)
    body = sim.ipn_body(sim.get_payment("ord_c1"))  # type: ignore[attr-defined]
    held = await pool.fetchval(
        """insert into rejected_deliveries (provider, reason, body_sha256, body_size, verified, method, query_string,
                                            raw_headers, raw_body)
           values ('momo', 'adapter_error', 'x', $1, true, 'POST', '', '{}', $2) returning id""",
        len(body),
        body,
    )

    dry = payrecon(database_url, gateways, "replay", str(held), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"rejected delivery {held} (momo) would apply: unknown_order" in dry.stdout
    assert await pool.fetchval("select count(*) from payment_events") == 0

    real = payrecon(database_url, gateways, "replay", str(held), "--json")
    assert real.returncode == 0, real.stderr
    assert '"ok":true' in real.stdout
    assert await pool.fetchval("select source from payment_events") == "manual"

    unknown = payrecon(database_url, gateways, "replay", "987654")
    assert unknown.returncode != 0
    assert "payrecon: no rejected delivery 987654" in unknown.stderr
