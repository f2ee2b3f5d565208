"""The pgbench ceiling: the ledger's own SQL for one applied event, with nothing of Python around it.

    .venv/bin/python bench/ceiling.py [--seconds 10] [--clients 8]     # alone, on a private server

`bench/ingest.py` runs the same script in the same run as its HTTP figures; a ratio to it says
how much of what the database allows payrecon's webhook path delivers.

The script is generated from the ledger's statements, never retyped here: the SQL text comes
from `service.ledger.sql` when that module exists (the ledger's apply path as named statements),
else from the statements of today's `service.ledger.apply_event` (read with `ast` from the
functions that run them). Only the parameter VALUES are ours: a registered order picked at
random, a fresh dedupe key, the event's fields as a webhook would carry them.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib.util
import inspect
import re
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import msgspec

from service import migrate
from service.ledger import apply_event, locks
from service.ledger.locks import REFERENCE_LOCK
from service.orders import reference_owner

PGBENCH = "pgbench"
ORDER_PREFIX = "pgb-"
CEILING_PROVIDER = "vnpay"  # the direct path: the event's reference is the order's known reference
# A raw body the size of a real IPN: the ledger keeps the signed bytes beside the event.
RAW_BODY_HEX = "\\x" + (b'{"vnp_Amount":"15000000"}' * 24).hex()


def _literals(function: object, methods: tuple[str, ...] = ("fetchrow", "fetchval", "execute", "fetch")) -> list[str]:
    """The SQL string literals a function passes to `conn.<method>(...)`, in source order."""
    tree = ast.parse(inspect.getsource(function))  # type: ignore[arg-type]
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in methods
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return [sql for _, sql in sorted(found)]


def _one_line(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def _bind(sql: str, values: list[str]) -> str:
    """$n → the n-th pgbench expression (a :variable, a literal, or SQL around them)."""

    def value(match: re.Match[str]) -> str:
        return f"({values[int(match.group(1)) - 1]})"

    return re.sub(r"\$(\d+)\b", value, _one_line(sql))


def _order() -> str:
    return f"'{ORDER_PREFIX}' || (:n)::int"


def script_from_apply_event() -> tuple[str, str]:
    """Today's ledger (before service.ledger.sql): the statements of `_apply`/`_step` for a known reference."""
    (lock_sql,) = _literals(locks.lock)
    (owner_sql,) = _literals(reference_owner)
    (announce_sql,) = _literals(apply_event.announce)
    step = _literals(apply_event._step)

    def starting(prefix: str) -> str:
        return next(sql for sql in step if _one_line(sql).lower().startswith(prefix))

    # The order's facts under its row lock: a module constant since payments per order (issue 10),
    # a literal in `_step` before.
    select_order = getattr(apply_event, "_FACTS", None) or starting("select")
    update_order, insert_transition = starting("update orders"), starting("insert into transitions")
    update_event = starting("update payment_events")
    record_payment: str | None = getattr(apply_event, "_RECORD_PAYMENT", None)
    provider = f"'{CEILING_PROVIDER}'"
    event = [
        provider,  # provider
        "'pgb:' || :client_id || ':' || :k",  # dedupe_key
        "'default'",  # account
        _order(),  # reference (the order's own)
        "null",  # claimed_order_id
        "'succeeded'",  # status
        "15000000",  # amount
        "'VND'",  # currency
        "(:k)::text",  # provider_payment_id
        "null",  # refunded_amount
        "now()",  # occurred_at
        "null",  # reason
        "null",  # flag
        "'webhook'",  # source
        "'{}'::jsonb",  # payload (the adapter's parsed fields; small)
        f"'{RAW_BODY_HEX}'::bytea",  # raw_body
        '\'{"content-type": "application/json"}\'::jsonb',  # raw_headers
    ]
    lines = [
        "\\set n random(1, :orders)",
        "\\set k random(1, 1000000000000)",
        "BEGIN;",
        _bind(lock_sql, [str(REFERENCE_LOCK), ":n"]) + ";",
        _bind(apply_event._INSERT_EVENT, event) + " \\gset ev_",
        _bind(owner_sql, [provider, "'default'", _order()]) + ";",
        _bind(select_order, [_order(), "(:k)::text"]) + ";",
        _bind(update_order, [_order(), "'succeeded'", "now()", "0", "(:k)::text", "now()"]) + " \\gset",
        _bind(
            insert_transition,
            [
                _order(),
                ":ev_id",
                "'pending'",
                "'succeeded'",
                "(:version)::int - 1",
                ":version",
                "0",
                "'webhook'",
                "(:k)::text",
            ],
        )
        + ";",
        _bind(announce_sql, [_order(), "'order.succeeded'"]) + ";",
        *(
            [
                _bind(
                    record_payment,
                    [
                        _order(),
                        "(:k)::text",
                        provider,
                        "'default'",
                        "15000000",
                        "'VND'",
                        "'succeeded'",
                        "now()",
                        "0",
                        "now()",
                    ],
                )
                + ";"
            ]
            if record_payment
            else []
        ),
        _bind(update_event, [":ev_id", _order(), "'applied'"]) + ";",
        "COMMIT;",
    ]
    return "service/ledger/apply_event.py (today's statements, direct path)", "\n".join(lines) + "\n"


def script() -> tuple[str, str]:
    """(where the SQL came from, the pgbench script)."""
    if importlib.util.find_spec("service.ledger.sql") is not None:
        from ceiling_sql import script_from_sql_module  # written against service.ledger.sql's contract

        return script_from_sql_module()
    return script_from_apply_event()


async def prepare(url: str, orders: int) -> None:
    """Register `orders` pending orders the script picks from (the direct path: reference = order id)."""
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
        await conn.execute(
            """insert into orders (id, amount, currency, provider, account, reference, request_hash)
               select $1 || i, 15000000, 'VND', $2, 'default', $1 || i, 'bench'
               from generate_series(1, $3) i on conflict do nothing""",
            ORDER_PREFIX,
            CEILING_PROVIDER,
            orders,
        )
        await conn.execute(
            """insert into order_references (provider, account, reference, order_id)
               select $2, 'default', $1 || i, $1 || i from generate_series(1, $3) i on conflict do nothing""",
            ORDER_PREFIX,
            CEILING_PROVIDER,
            orders,
        )
    finally:
        await conn.close()


class Ceiling(msgspec.Struct, frozen=True):
    tps: float
    p50_ms: float  # pgbench's own per-transaction latencies (its --log), at the same client count
    p99_ms: float


def run(url: str, *, orders: int, seconds: float, clients: int, threads: int = 2, text: str | None = None) -> Ceiling:
    """Run the generated script (or `text`) with pgbench: its transactions per second and latency percentiles."""
    if text is None:
        _, text = script()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.sql"
        path.write_text(text)
        done = subprocess.run(
            [
                PGBENCH,
                "-n",  # no vacuum of pgbench's own tables: there are none
                "-M",
                "prepared",  # as asyncpg does: every statement prepared once per connection
                "-c",
                str(clients),
                "-j",
                str(min(threads, clients)),
                "-T",
                str(max(1, round(seconds))),
                "-D",
                f"orders={orders}",
                "-f",
                str(path),
                "--log",  # one line per transaction, its latency in µs third: the ceiling's own p99
                f"--log-prefix={Path(folder) / 'tx'}",
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        latencies = sorted(
            int(line.split()[2]) for log in Path(folder).glob("tx.*") for line in log.read_text().splitlines()
        )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if found is None:
        raise RuntimeError(f"no tps in pgbench output:\n{done.stdout}")
    if not latencies:
        raise RuntimeError(f"pgbench wrote no transaction log:\n{done.stdout}")

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000

    return Ceiling(float(found.group(1)), percentile(0.50), percentile(0.99))


def main() -> None:
    from pgserver import describe, private_postgres

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--print-script", action="store_true")
    args = parser.parse_args()
    source, text = script()
    if args.print_script:
        print(text)
        return
    print(describe())
    print(f"SQL from {source}")
    with private_postgres() as url:
        asyncio.run(prepare(url, args.orders))
        found = run(url, orders=args.orders, seconds=args.seconds, clients=args.clients)
    print(f"pgbench -c{args.clients}: {found.tps:,.0f} tps, p50 {found.p50_ms:.1f} ms, p99 {found.p99_ms:.1f} ms")


if __name__ == "__main__":
    main()
