"""Hypothesis: whatever arrives, verify and parse raise only the adapter's declared errors."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.base import PaymentEvent
from providers.errors import MalformedError, ReplayError, SignatureError
from providers.stripe.sim.signing import sign_header
from providers.stripe.sim.simulator import TEST_WEBHOOK_SECRET

from ._support import NOW, VECTORS, adapter, request, signed

GATEWAY = adapter()
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASES: list[dict[str, Any]] = [
    json.loads(v["input"]["body"]) for v in VECTORS if v["id"] in ("stripe-01", "stripe-04", "stripe-05")
]
VERIFY_ERRORS = (SignatureError, ReplayError, MalformedError)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += paths(child, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    payload = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(payload)))
        parent = payload
        for key in where[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["delete", "replace", "retype"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "retype":
            old = parent[where[-1]]
            parent[where[-1]] = (
                str(old)
                if not isinstance(old, str)
                else draw(st.integers() | st.none() | st.lists(st.integers(), max_size=2))
            )
        else:
            parent[where[-1]] = draw(json_values)
        if not paths(payload):
            break
    return payload


def check_event(ev: PaymentEvent) -> None:
    assert isinstance(ev.amount, int)
    assert ev.amount >= 0
    assert len(ev.currency) == 3
    assert ev.currency == ev.currency.upper()
    assert ev.occurred_at is not None
    assert ev.occurred_at.utcoffset() is not None
    assert ev.dedupe_key
    assert ev.refunded_amount is None or ev.refunded_amount > 0


@FUZZ
@given(body=st.binary(max_size=300), header=st.text(max_size=200) | st.none(), account=st.none() | st.text(max_size=10))
def test_verify_random_input(body: bytes, header: str | None, account: str | None) -> None:
    req = request(body, {} if header is None else {"Stripe-Signature": header}, account_name=account)
    with contextlib.suppress(VERIFY_ERRORS):
        GATEWAY.verify(req)


@FUZZ
@given(
    t=st.integers(0, 10**16),
    sigs=st.lists(st.text(alphabet="0123456789abcdefv=,t ", max_size=70), max_size=4),
    received=st.floats(min_value=0, max_value=4e10),
)
def test_verify_mangled_headers(t: int, sigs: list[str], received: float) -> None:
    body = json.dumps(BASES[0]).encode()
    header = ",".join([f"t={t}", *(f"v1={s}" for s in sigs)])
    with contextlib.suppress(VERIFY_ERRORS):
        GATEWAY.verify(request(body, {"Stripe-Signature": header}, received=received))


@FUZZ
@given(payload=mutated())
def test_parse_mutated_but_signed_payloads(payload: dict[str, Any]) -> None:
    req = signed(payload)
    GATEWAY.verify(req)  # correctly signed: verify must pass whatever the content
    try:
        events = GATEWAY.parse(req)
    except MalformedError:
        return
    assert len(events) <= 1
    for ev in events:
        check_event(ev)


@FUZZ
@given(body=st.binary(max_size=300))
def test_parse_random_bytes(body: bytes) -> None:
    with contextlib.suppress(MalformedError):
        GATEWAY.parse(request(body, {}))


@FUZZ
@given(base=st.sampled_from(BASES), flip=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_any_byte_change_breaks_the_signature(base: dict[str, Any], flip: int, byte: int) -> None:
    body = bytearray(json.dumps(base, indent=2).encode())
    i = flip % len(body)
    if body[i] == byte:
        return
    header = sign_header(bytes(body), [TEST_WEBHOOK_SECRET], NOW)
    body[i] = byte
    try:
        GATEWAY.verify(request(bytes(body), {"Stripe-Signature": header}))
    except SignatureError:
        return
    raise AssertionError("a changed body verified")


def test_untouched_vectors_still_verify() -> None:
    for base in BASES:
        req = signed(base)
        GATEWAY.verify(req)
        [ev] = GATEWAY.parse(req)
        check_event(ev)
