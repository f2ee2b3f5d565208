"""The SQL checks, indexes and functions say what the enums say (one meaning in one place, issue 12)."""

from __future__ import annotations

import re

import asyncpg

from providers.base import OutcomeKind, PaymentStatus
from service.model import AnomalyKind, Source
from service.notify.endpoints import EVENT_TYPES
from service.runs import FindingKind
from service.transitions import TIE_RANK


def _quoted(definition: str) -> set[str]:
    return set(re.findall(r"'([a-z_.]+)'", definition))


async def test_open_orders_index_covers_exactly_the_open_statuses(pool: asyncpg.Pool) -> None:
    definition = await pool.fetchval("select indexdef from pg_indexes where indexname = 'orders_open_idx'")
    assert _quoted(definition) == {s.value for s in PaymentStatus if s.is_open}
    assert PaymentStatus.FAILED.is_open  # the status 0001 left out


async def test_status_checks_are_the_payment_statuses(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        """select conrelid::regclass::text as tbl, pg_get_constraintdef(oid) as def from pg_constraint
           where contype = 'c' and pg_get_constraintdef(oid) like '%status%succeeded%'"""
    )
    assert {row["tbl"] for row in rows} == {"orders", "payment_events", "order_payments"}
    for row in rows:
        assert _quoted(row["def"]) == {s.value for s in PaymentStatus}, row["tbl"]


async def test_outbox_types_are_one_per_status_an_order_moves_to(pool: asyncpg.Pool) -> None:
    check = await check_values(pool, "notifications", "type")
    assert check == {f"order.{s}" for s in PaymentStatus if s.layer > 0} | {"anomaly.opened"}
    assert check == set(EVENT_TYPES)  # what a shop's endpoint may subscribe to


def test_layers_order_the_statuses() -> None:
    assert [s.layer for s in PaymentStatus] == [0, 1, 1, 3, 1, 2, 4, 4]
    assert {s for s in PaymentStatus if s.is_paid} == {
        PaymentStatus.SUCCEEDED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
    }


async def _function_source(pool: asyncpg.Pool, name: str) -> str:
    sources = await pool.fetch("select prosrc from pg_proc where proname = $1", name)
    assert len(sources) == 1, (name, len(sources))  # one definition: no stale overload beside it
    source: str = sources[0]["prosrc"]
    return source


def _cases(source: str) -> dict[str, int]:
    """The `when '<status>' then <n>` arms of a SQL `case`."""
    return {status: int(n) for status, n in re.findall(r"when\s+'([a-z_]+)'\s+then\s+(\d+)", source)}


async def test_ledger_layer_is_payment_status_layer(pool: asyncpg.Pool) -> None:
    # The ledger's SQL rules (migrations/0011) rank statuses by ledger_layer; Python by PaymentStatus.layer.
    assert _cases(await _function_source(pool, "ledger_layer")) == {s.value: s.layer for s in PaymentStatus}
    for status in PaymentStatus:
        assert await pool.fetchval("select ledger_layer($1)", status.value) == status.layer, status
    assert await pool.fetchval("select ledger_layer('paid')") is None  # no status outside the enum has a layer


async def test_ledger_tie_rank_is_the_transition_rules(pool: asyncpg.Pool) -> None:
    # Ties are only ever broken inside layer 1 (transitions._retry_cycle): every status there has a rank.
    assert set(TIE_RANK) == {s for s in PaymentStatus if s.layer == 1}
    assert _cases(await _function_source(pool, "ledger_tie_rank")) == {s.value: r for s, r in TIE_RANK.items()}
    for status in PaymentStatus:
        assert await pool.fetchval("select ledger_tie_rank($1)", status.value) == TIE_RANK.get(status, 0), status


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
