"""Which failures a redelivery cures (answer "retry later") and which it cannot (hold the delivery)."""

from __future__ import annotations

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.base import PaymentEvent, PaymentStatus
from service.failures import refused_by_postgres, retry_can_cure
from service.storable import UnstorableError, storable


def postgres_error(sqlstate: str) -> asyncpg.PostgresError:
    cls = asyncpg.PostgresError.get_message_class_for_sqlstate(sqlstate)  # type: ignore[attr-defined]
    return cls(f"state {sqlstate}")  # type: ignore[no-any-return]


@pytest.mark.parametrize("sqlstate", ["40001", "40P01", "55P03", "57014", "57P01", "53100", "08006", "XX000"])
def test_busy_or_away_database_is_worth_a_retry(sqlstate: str) -> None:
    assert retry_can_cure(postgres_error(sqlstate))
    assert not refused_by_postgres(postgres_error(sqlstate))


@pytest.mark.parametrize("sqlstate", ["22P05", "22021", "22003", "23514", "23502", "54001"])
def test_data_postgresql_refuses_is_never_retried(sqlstate: str) -> None:
    assert not retry_can_cure(postgres_error(sqlstate))
    assert refused_by_postgres(postgres_error(sqlstate))


def test_our_bugs_are_not_retried_and_outages_are() -> None:
    assert not retry_can_cure(KeyError("x"))
    assert not retry_can_cure(postgres_error("42P01"))  # our statement: held, replayed after the fix
    assert retry_can_cure(ConnectionRefusedError())
    assert retry_can_cure(TimeoutError())


def event(**changes: object) -> PaymentEvent:
    fields: dict[str, object] = {
        "provider": "momo",
        "dedupe_key": "momo:1:0",
        "account": "default",
        "reference": "ord_1",
        "status": PaymentStatus.SUCCEEDED,
        "amount": 50_000,
        "currency": "VND",
        "payload": {"orderId": "ord_1"},
    }
    return PaymentEvent(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_storable_event_is_returned_as_is() -> None:
    plain = event()
    assert storable(plain) is plain


JSON = st.recursive(
    st.text() | st.integers() | st.none(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)
)


@given(JSON)
def test_no_nul_survives_in_the_stored_copy(payload: object) -> None:
    stored = storable(event(payload={"x": payload}, reason="momo:0 \x00", reference="ord\x00"))
    assert "\x00" not in repr(stored)
    assert stored.reference == "ord\\u0000"


@pytest.mark.parametrize("field", ["amount", "refunded_amount"])
def test_integers_beyond_bigint_are_a_typed_refusal(field: str) -> None:
    with pytest.raises(UnstorableError, match=field):
        storable(event(**{field: 2**63}))
    assert storable(event(**{field: 2**63 - 1})).amount >= 0
