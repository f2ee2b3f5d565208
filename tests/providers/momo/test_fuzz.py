"""Hypothesis: whatever arrives, verify and parse raise only the adapter's declared errors."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.base import PaymentEvent
from providers.errors import MalformedError, ReplayError, SignatureError
from providers.momo.wire import RESULT_CODES

from .helpers import adapter, ipn_fields, request, signed_ipn

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ADAPTER = adapter()
VALID = signed_ipn()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def outcome(body: bytes, account: str | None = None) -> list[PaymentEvent] | str:
    """verify then parse, as the ingest does; returns the events or the error class name."""
    req = request(body, account=account)
    try:
        ADAPTER.verify(req)
    except (SignatureError, ReplayError, MalformedError) as exc:
        return type(exc).__name__
    try:
        return ADAPTER.parse(req)
    except MalformedError as exc:
        return type(exc).__name__


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(body: bytes) -> None:
    assert outcome(body) in ("MalformedError", "UnknownAccountError")


@FUZZ
@given(st.sampled_from(sorted(VALID)), st.data())
def test_field_deleted(field: str, data: st.DataObject) -> None:
    body = {k: v for k, v in VALID.items() if k != field}
    result = outcome(msgspec.json.encode(body))
    if field == "extraData":  # absent counts as "" (§8.1), so the signature still holds
        assert isinstance(result, list)
        assert len(result) == 1
    else:
        assert result in ("MalformedError", "UnknownAccountError", "SignatureError")


@FUZZ
@given(st.sampled_from(sorted(VALID)), json_values)
def test_field_replaced_by_any_json(field: str, value: Any) -> None:
    body = VALID | {field: value}
    result = outcome(msgspec.json.encode(body))
    if (
        (value == VALID[field] and type(value) is type(VALID[field]))
        or (field == "extraData" and value is None)
        or (field == "signature" and isinstance(value, str) and value.lower() == VALID["signature"])
    ):
        assert isinstance(result, list)
    else:
        assert isinstance(result, str), (field, value, result)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(ipn_fields())), json_values, max_size=5),
    st.sampled_from([None, "default", "x"]),
)
def test_re_signed_mutations_never_crash(changes: dict[str, Any], account: str | None) -> None:
    """Mutations signed with the right secret: reach parse, which must still only raise MalformedError."""
    fields = ipn_fields() | changes
    try:
        body = msgspec.json.encode(signed_ipn(**fields))
    except (TypeError, ValueError, UnicodeEncodeError):  # values the signing helper itself cannot render
        return
    result = outcome(body, account)
    if isinstance(result, list):
        for event in result:
            assert type(event.amount) is int
            assert event.amount >= 0
            assert event.currency == "VND"
            assert event.occurred_at is not None
            assert event.occurred_at.tzinfo is not None


@FUZZ
@given(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.integers(min_value=0, max_value=2**53))
def test_any_result_code_and_trans_id_parse(code: int, trans_id: int) -> None:
    result = outcome(msgspec.json.encode(signed_ipn(resultCode=code, transId=trans_id)))
    assert isinstance(result, list)
    meaning = RESULT_CODES.get(code)
    assert len(result) == (0 if meaning is not None and meaning.status is None else 1)


@FUZZ
@given(st.binary(min_size=1, max_size=8), st.integers(min_value=0, max_value=400))
def test_byte_level_corruption_of_a_valid_body(junk: bytes, at: int) -> None:
    raw = msgspec.json.encode(VALID)
    at = min(at, len(raw))
    corrupted = raw[:at] + junk + raw[at:]
    result = outcome(corrupted)
    assert result in ("MalformedError", "UnknownAccountError", "SignatureError") or isinstance(result, list)
