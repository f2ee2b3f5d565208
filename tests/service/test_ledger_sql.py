"""The rules in SQL (migrations/0011_ledger_apply.sql) against their oracle, `transitions.decide`.

The write path runs `ledger_decide` inside PostgreSQL (one round trip per event); the pure
Python `decide` is the rules' readable, exhaustively tested statement. Hypothesis feeds both the
same random facts and news and they must agree on every field: the order after, the payment
after, the anomalies with their details, the outcome.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.base import OutcomeKind, PaymentStatus
from service.ledger import locks, sql
from service.transitions import Facts, News, Payment, decide

S = PaymentStatus
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
AMOUNT = 1000
MIGRATION = Path(__file__).parents[2] / "migrations" / "0011_ledger_apply.sql"

DECIDE = """
select * from ledger_decide($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
"""


async def test_lock_keys_are_the_pythons(pool: asyncpg.Pool) -> None:
    # layers and tie ranks: tests/test_schema_enums.py
    for key in ("momo\x1fdefault\x1ford-1", "ord_1001", "ü-ñ-漢字", ""):
        assert await pool.fetchval("select ledger_lock_key($1)", key) == locks._lock_key(key)
    assert locks._lock_key("abc") == int.from_bytes(hashlib.sha256(b"abc").digest()[:4], "big", signed=True)
    text = MIGRATION.read_text()
    assert f"pg_advisory_xact_lock({locks.REFERENCE_LOCK}," in text
    assert f"pg_advisory_xact_lock({locks.ORDER_LOCK}," in text


def test_the_apply_statement_takes_its_documented_parameters() -> None:
    assert sql.APPLY.count("$") == len(sql.APPLY_PARAMETERS)
    assert f"${len(sql.APPLY_PARAMETERS)})" in sql.APPLY


times = st.integers(min_value=0, max_value=5).map(lambda s: T0 + timedelta(seconds=s))
ids = st.sampled_from(["A", "B", "C"])
payments = st.builds(
    Payment,
    status=st.sampled_from(list(S)),
    status_at=st.none() | times,
    refunded_amount=st.integers(min_value=0, max_value=AMOUNT),
    paid_at=st.none() | times,
)
facts = st.builds(
    Facts,
    amount=st.just(AMOUNT),
    currency=st.just("VND"),
    status=st.sampled_from(list(S)),
    status_at=st.none() | times,
    refunded_amount=st.integers(min_value=0, max_value=AMOUNT),
    provider_payment_id=st.none() | ids,
    paid_at=st.none() | times,
    payment=st.none() | payments,
    paying=st.none() | payments,
)
news = st.builds(
    News,
    status=st.sampled_from(list(S)),
    at=times,
    amount=st.sampled_from([AMOUNT, AMOUNT, AMOUNT, AMOUNT - 1]),
    currency=st.sampled_from(["VND", "VND", "VND", "USD"]),
    refunded_amount=st.none() | st.integers(min_value=0, max_value=AMOUNT + 50),
    provider_payment_id=st.none() | ids,
)


def _payment_args(payment: Payment | None) -> list[Any]:
    if payment is None:
        return [None, None, None, None]
    return [payment.status, payment.status_at, payment.refunded_amount, payment.paid_at]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=facts, event=news)
async def test_sql_rules_agree_with_decide_on_every_field(pool: asyncpg.Pool, order: Facts, event: News) -> None:
    paying = _payment_args(order.paying)
    row = await pool.fetchrow(
        DECIDE,
        order.amount,
        order.currency,
        order.status,
        order.status_at,
        order.refunded_amount,
        order.provider_payment_id,
        order.paid_at,
        *_payment_args(order.payment),
        paying[0],  # the paying payment: status, refunded, paid_at (its status_at decides nothing)
        paying[2],
        paying[3],
        event.status,
        event.at,
        event.amount,
        event.currency,
        event.refunded_amount,
        event.provider_payment_id,
    )
    assert row is not None
    decision = decide(order, event)
    after = decision.after
    assert OutcomeKind(row["kind"]) is decision.kind
    assert (row["status"], row["status_at"], row["refunded_amount"], row["provider_payment_id"], row["paid_at"]) == (
        after.status,
        after.status_at,
        after.refunded_amount,
        after.provider_payment_id,
        after.paid_at,
    )
    paid = decision.payment
    expected_payment = None if paid is None else (paid.status, paid.status_at, paid.refunded_amount, paid.paid_at)
    got_payment = None
    if row["pay_status"] is not None:
        got_payment = (row["pay_status"], row["pay_status_at"], row["pay_refunded"], row["pay_paid_at"])
    assert got_payment == expected_payment
    assert row["anomalies"] == [{"kind": a.kind, "detail": a.detail} for a in decision.anomalies]
    assert row["resolves_double_payment"] is decision.resolves_double_payment


@pytest.mark.parametrize("status", list(S))
async def test_sql_step_refuses_nothing_it_should_apply(pool: asyncpg.Pool, status: PaymentStatus) -> None:
    """Every status through the whole ledger_apply: an order's first event of each kind."""
    await pool.execute(
        """insert into orders (id, amount, currency, provider, account, reference, request_hash)
           values ('o1', $1, 'VND', 'momo', 'default', 'o1', 'x')""",
        AMOUNT,
    )
    await pool.execute(
        "insert into order_references (provider, account, reference, order_id) values ('momo', 'default', 'o1', 'o1')"
    )
    row = await pool.fetchrow(
        sql.APPLY,
        "momo", "k1", "default", "o1", None, status, AMOUNT, "VND",
        "A" if status.is_paid else None, AMOUNT if status is S.REFUNDED else None, T0,
        None, None, "webhook", {}, None, None,
    )  # fmt: skip
    assert row is not None
    expected = decide(Facts(amount=AMOUNT, currency="VND"), News(
        status=status, at=T0, amount=AMOUNT, currency="VND",
        refunded_amount=AMOUNT if status is S.REFUNDED else None,
        provider_payment_id="A" if status.is_paid else None,
    ))  # fmt: skip
    assert OutcomeKind(row["kind"]) is expected.kind
    assert row["after_status"] == expected.after.status
    assert row["anomalies"] == [a.kind for a in expected.anomalies]
