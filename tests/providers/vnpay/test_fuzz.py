"""Fuzzing verify and parse: whatever arrives, only the declared errors escape."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import MalformedError, ReplayError, SignatureError
from providers.vnpay.sim.signing import signed_query_string
from providers.vnpay.sim.simulator import TEST_HASH_SECRET

from .helpers import adapter, ipn, ipn_params, signed_ipn, vectors

SUBJECT = adapter()
DECLARED = (SignatureError, ReplayError, MalformedError)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID_QUERIES = [v["input"]["query_string"] for v in vectors("ipn") if v["valid"]]


def _check(method: str, query: str, body: bytes = b"", url_account: str | None = None) -> None:
    request = ipn(query, method=method, body=body, url_account=url_account)
    try:
        SUBJECT.verify(request)
    except DECLARED:
        return
    try:
        events = SUBJECT.parse(request)
    except MalformedError:
        return
    assert all(e.amount >= 0 and e.currency == "VND" for e in events)


surrogate_text = st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape"))


@FUZZ
@given(st.sampled_from(["GET", "POST", "get", "PUT"]), st.one_of(st.text(max_size=400), surrogate_text), st.binary())
def test_random_input(method: str, query: str, body: bytes) -> None:
    _check(method, query, body)


@FUZZ
@given(st.binary(max_size=400))
def test_random_form_bodies(body: bytes) -> None:
    _check("POST", "", body)


def _pairs(query: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) if "=" in part else (part, "") for part in query.split("&")]  # type: ignore[misc]


def _join(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs)


mutations = st.sampled_from(["delete", "replace", "raw", "duplicate", "rename", "splice", "type"])


@FUZZ
@given(
    st.sampled_from(VALID_QUERIES),
    st.lists(st.tuples(mutations, st.integers(0, 30), st.text(max_size=40)), min_size=1, max_size=4),
    st.sampled_from([None, "default", "other"]),
)
def test_mutated_valid_ipns(query: str, edits: list[tuple[str, int, str]], url_account: str | None) -> None:
    pairs = _pairs(query)
    for kind, index, value in edits:
        if not pairs:
            break
        i = index % len(pairs)
        key, old = pairs[i]
        if kind == "delete":
            del pairs[i]
        elif kind == "replace":
            pairs[i] = (key, quote_plus(value))
        elif kind == "raw":
            pairs[i] = (key, value)
        elif kind == "duplicate":
            pairs.append((key, quote_plus(value)))
        elif kind == "rename":
            pairs[i] = (quote_plus(value), old)
        elif kind == "type":
            pairs[i] = (key, str(index * 100) if old.isdigit() else "1.5e3")
        else:
            text = _join(pairs)
            cut = index % (len(text) + 1)
            pairs = _pairs(text[:cut] + value + text[cut:])
    _check("GET", _join(pairs), url_account=url_account)


@pytest.mark.parametrize("query", VALID_QUERIES)
def test_untouched_valid_ipns_pass(query: str) -> None:
    SUBJECT.verify(ipn(query))
    assert len(SUBJECT.parse(ipn(query))) == 1


ipn_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@FUZZ
@given(ipn_text, ipn_text, st.sampled_from(["00", "07", "24", "11", "51", "99"]))
def test_any_correctly_signed_ipn_verifies_and_parses(order_info: str, txn_ref: str, code: str) -> None:
    """VNPay-built IPNs with arbitrary text (spaces, `~!*'()`, Vietnamese) round-trip."""
    params = ipn_params(vnp_OrderInfo=order_info, vnp_TxnRef=txn_ref or "r", vnp_ResponseCode=code)
    request = ipn(signed_query_string(params, TEST_HASH_SECRET))
    SUBJECT.verify(request)
    [event] = SUBJECT.parse(request)
    assert event.reference == (txn_ref or "r")
    assert event.payload["vnp_OrderInfo"] == order_info


@FUZZ
@given(st.sampled_from(sorted(ipn_params())), ipn_text)
def test_any_edited_field_breaks_the_signature(field: str, value: str) -> None:
    original = ipn_params()
    if value == original[field]:
        return
    request = signed_ipn()
    edited = request.query_string.replace(f"{field}={quote_plus(original[field])}", f"{field}={quote_plus(value)}")
    try:
        SUBJECT.verify(ipn(edited))
    except (SignatureError, MalformedError):
        return
    pytest.fail(f"editing {field} to {value!r} still verified")
