"""Every MoMo vector of tests/fixtures/vectors.json, through the adapter and through the simulator's signer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import pytest

from providers import errors
from providers.base import PaymentStatus
from providers.momo import Account, Adapter, signing
from providers.momo.sim.simulator import sign_sorted
from providers.momo.status import query_body

from .helpers import MOMO_VECTORS, request, vector

IPN_VECTORS = [v for v in MOMO_VECTORS if v["kind"] == "ipn"]
REQUEST_VECTORS = {
    "status_query_request": signing.QUERY_FIELDS,
    "refund_request": signing.REFUND_FIELDS,
    "create_request": signing.CREATE_FIELDS,
}


def adapter_for(v: dict[str, Any]) -> Adapter:
    creds = v["credentials"]
    return Adapter(
        [Account(partner_code=creds["partnerCode"], access_key=creds["accessKey"], secret_keys=[v["secret"]])]
    )


def test_all_momo_vectors_are_covered() -> None:
    kinds = {v["kind"] for v in MOMO_VECTORS}
    assert len(MOMO_VECTORS) == 9
    assert kinds == {"ipn", *REQUEST_VECTORS}


@pytest.mark.parametrize("v", IPN_VECTORS, ids=lambda v: v["id"])
def test_ipn_signed_string_and_signature(v: dict[str, Any]) -> None:
    fields = msgspec.json.decode(v["input"]["body"].encode())
    values = {**fields, "accessKey": v["credentials"]["accessKey"]}
    assert signing.raw_string(signing.IPN_FIELDS, values) == v["signed_string"]
    assert signing.sign(v["secret"], v["signed_string"]) == v["expected_signature"]
    values.pop("signature")
    assert sign_sorted(v["secret"], values) == v["expected_signature"]  # the simulator's independent rule


@pytest.mark.parametrize("v", IPN_VECTORS, ids=lambda v: v["id"])
def test_ipn_verifies_or_is_rejected(v: dict[str, Any]) -> None:
    adapter = adapter_for(v)
    req = request(v["input"]["body"].encode())
    if v["valid"]:
        adapter.verify(req)
        assert adapter.acknowledge([]).status_code == v["ack"]["status"]
        assert adapter.acknowledge([]).body == v["ack"]["body"].encode()
    else:
        error = getattr(errors, v["expected_outcome"])
        with pytest.raises(error, match="matched none of 1 secret key"):
            adapter.verify(req)


@pytest.mark.parametrize("v", [v for v in IPN_VECTORS if "expected_event" in v], ids=lambda v: v["id"])
def test_ipn_parses_to_expected_event(v: dict[str, Any]) -> None:
    adapter = adapter_for(v)
    req = request(v["input"]["body"].encode())
    adapter.verify(req)
    [event] = adapter.parse(req)
    want = v["expected_event"]
    assert event.provider == "momo"
    assert event.account == "default"
    assert event.dedupe_key == want["dedupe_key"]
    # The vectors' "order_id" is MoMo's orderId, which is our `reference`: one order may
    # need several MoMo orderIds (ord_1001-2 after a failed attempt), so order_id stays None.
    assert event.reference == want["order_id"]
    assert event.order_id is None
    assert event.status == PaymentStatus(want["status"])
    assert event.amount == want["amount"]
    assert type(event.amount) is int
    assert event.currency == want["currency"]
    assert event.provider_payment_id == want["provider_payment_id"]
    assert event.occurred_at == datetime.fromisoformat(want["occurred_at"])
    assert event.occurred_at is not None
    assert event.occurred_at.utcoffset() is not None
    assert event.reason == want["reason"]
    assert event.refunded_amount is None
    assert event.flag is None
    assert event.payload == msgspec.json.decode(v["input"]["body"].encode())


@pytest.mark.parametrize("kind", REQUEST_VECTORS)
def test_request_signature_vectors(kind: str) -> None:
    [v] = [v for v in MOMO_VECTORS if v["kind"] == kind]
    values = {**v["input"]["fields"], "accessKey": v["credentials"]["accessKey"]}
    assert signing.raw_string(REQUEST_VECTORS[kind], values) == v["signed_string"]
    assert signing.sign(v["secret"], v["signed_string"]) == v["expected_signature"]
    signed = {k: values[k] for k in REQUEST_VECTORS[kind]}
    assert sign_sorted(v["secret"], signed) == v["expected_signature"]


def test_status_query_body_is_byte_exact() -> None:
    v = vector("momo-07")
    creds = v["credentials"]
    acct = Account(partner_code=creds["partnerCode"], access_key=creds["accessKey"], secret_keys=[v["secret"], "old"])
    fields = v["input"]["fields"]
    body = query_body(acct, fields["orderId"], fields["requestId"], fields["lang"])
    assert body == v["expected_request_body"].encode()


def test_vietnamese_text_is_hashed_as_utf8() -> None:
    v = vector("momo-02")
    assert not v["signed_string"].isascii()
    with pytest.raises(UnicodeEncodeError):  # MoMo's own Python sample encodes as ASCII (§8.3)
        v["signed_string"].encode("ascii")
    assert signing.sign(v["secret"], v["signed_string"]) == v["signature_in_body"]
