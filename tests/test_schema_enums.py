"""The SQL checks and indexes say what the enums say (one meaning in one place, issue 12)."""

from __future__ import annotations

import re

import asyncpg

from providers.base import OutcomeKind, PaymentStatus
from service.model import AnomalyKind, Source
from service.runs import FindingKind


def _quoted(definition: str) -> set[str]:
    return set(re.findall(r"'([a-z_]+)'", definition))


async def test_open_orders_index_covers_exactly_the_open_statuses(pool: asyncpg.Pool) -> None:
    definition = await pool.fetchval("select indexdef from pg_indexes where indexname = 'orders_open_idx'")
    assert _quoted(definition) == {s.value for s in PaymentStatus if s.is_open}
    assert PaymentStatus.FAILED.is_open  # the status 0001 left out


async def test_status_checks_list_every_payment_status(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        """select conrelid::regclass::text as tbl, pg_get_constraintdef(oid) as def from pg_constraint
           where contype = 'c' and pg_get_constraintdef(oid) like '%status%succeeded%'"""
    )
    assert rows
    for row in rows:
        assert _quoted(row["def"]) >= {s.value for s in PaymentStatus}, row["tbl"]


def test_layers_order_the_statuses() -> None:
    assert [s.layer for s in PaymentStatus] == [0, 1, 1, 3, 1, 2, 4, 4]
    assert {s for s in PaymentStatus if s.is_paid} == {
        PaymentStatus.SUCCEEDED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
    }


async def check_values(pool: asyncpg.Pool, table: str, column: str) -> set[str]:
    """The values a `column in (...)` check constraint of `table` allows."""
    definitions = await pool.fetch(
        """select pg_get_constraintdef(oid) as def from pg_constraint
           where contype = 'c' and conrelid = $1::regclass""",
        table,
    )
    found = [d["def"] for d in definitions if re.search(rf"\(?{column}\b", d["def"])]
    assert len(found) == 1, (table, column, found)
    return _quoted(found[0])


async def test_anomaly_kind_check_is_the_enum(pool: asyncpg.Pool) -> None:
    assert await check_values(pool, "anomalies", "kind") == {k.value for k in AnomalyKind}


async def test_finding_kind_check_is_the_enum(pool: asyncpg.Pool) -> None:
    assert await check_values(pool, "reconcile_findings", "kind") == {k.value for k in FindingKind}


async def test_event_source_and_outcome_checks_are_the_enums(pool: asyncpg.Pool) -> None:
    assert await check_values(pool, "payment_events", "source") == {s.value for s in Source}
    # a duplicate is never stored: it is the insert that did not happen
    stored = {k.value for k in OutcomeKind} - {OutcomeKind.DUPLICATE.value}
    assert await check_values(pool, "payment_events", "outcome") == stored
