"""The pgbench script from `service.ledger.sql`: the ledger's apply path as named statements.

The contract (board, 03:35 ledger): `APPLY_PATH` lists the statements one applied event runs
(autocommit: one statement, a PL/pgSQL function), `APPLY_PARAMETERS` names each `$n` of them in
order with its PostgreSQL type. Here each name gets the value a webhook's event would carry; a
parameter this file does not know stops the benchmark rather than guessing.
"""

from __future__ import annotations

import re

from service.ledger import sql

ORDER = "'pgb-' || (:n)::int"  # a registered order (ceiling.prepare), reference = its id
RAW_BODY_HEX = "\\x" + (b'{"vnp_Amount":"15000000"}' * 24).hex()  # the size of a real IPN

# An event of the direct path: VNPay, succeeded, for the order's own reference.
VALUES = {
    "provider": "'vnpay'",
    "dedupe_key": "'pgb:' || :client_id || ':' || :k",
    "account": "'default'",
    "reference": ORDER,
    "claimed_order_id": "null",
    "order_id": "null",
    "status": "'succeeded'",
    "amount": "15000000",
    "currency": "'VND'",
    "provider_payment_id": "(:k)::text",
    "refunded_amount": "null",
    "occurred_at": "now()",
    "reason": "null",
    "flag": "null",
    "source": "'webhook'",
    "payload": "'{}'",
    "raw_body": f"'{RAW_BODY_HEX}'",
    "raw_headers": '\'{"content-type": "application/json"}\'',
    "dry_run": "false",
}


def _bind(statement: str, values: list[str]) -> str:
    def value(match: re.Match[str]) -> str:
        return f"({values[int(match.group(1)) - 1]})"

    return re.sub(r"\$(\d+)\b", value, re.sub(r"\s+", " ", statement).strip())


def script_from_sql_module() -> tuple[str, str]:
    parameters = list(sql.APPLY_PARAMETERS)
    unknown = [name for name, _ in parameters if name not in VALUES]
    if unknown:
        raise SystemExit(f"bench/ceiling_sql.py: no pgbench value for ledger parameter(s) {', '.join(unknown)}")
    values = [f"({VALUES[name]})::{pg_type}" for name, pg_type in parameters]
    lines = ["\\set n random(1, :orders)", "\\set k random(1, 1000000000000)"]
    statements = list(sql.APPLY_PATH)
    if len(statements) > 1:
        lines.append("BEGIN;")
    lines += [_bind(statement, values) + ";" for statement in statements]
    if len(statements) > 1:
        lines.append("COMMIT;")
    source = f"service/ledger/sql.py (APPLY_PATH: {len(statements)} statement(s), {len(parameters)} parameters)"
    return source, "\n".join(lines) + "\n"


def batch_script_from_sql_module(size: int) -> tuple[str, str]:
    """The group-commit statement (`sql.APPLY_BATCH`) with `size` events of the same direct path, each
    its own random order and fresh dedupe key: what one `serve` process sends for a batch of webhooks."""
    parameters = list(sql.APPLY_PARAMETERS)
    lines = []
    for j in range(size):
        lines += [f"\\set n{j} random(1, :orders)", f"\\set k{j} random(1, 1000000000000)"]

    def element(name: str, j: int) -> str:
        return re.sub(r":([nk])\b", rf":\g<1>{j}", VALUES[name])

    arrays = [
        f"(array[{', '.join(f'({element(name, j)})::{pg_type}' for j in range(size))}])::{pg_type}[]"
        for name, pg_type in parameters
    ]
    lines.append(_bind(sql.APPLY_BATCH, arrays) + ";")
    return f"service/ledger/sql.py (APPLY_BATCH: {size} events a statement)", "\n".join(lines) + "\n"
