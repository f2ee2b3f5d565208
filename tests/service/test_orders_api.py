"""The orders REST API over real HTTP: the JSON contract, idempotent registration, audit trail, lists, 400s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from providers.base import PaymentStatus
from service import apikeys, ledger
from service.app import create_app
from service.model import Source
from service.pages import encode_cursor
from service.serving import serving
from service.settings import Settings
from tests.gateways import configured
from tests.service.test_ledger import T0, event

S = PaymentStatus
BODY = {
    "id": "ord_1001",
    "amount": 150000,
    "currency": "VND",
    "provider": "vnpay",
    "provider_data": {"vnp_create_date": "20261124100000"},
    "metadata": {"cart": "c-77"},
}


async def key_for(pool: asyncpg.Pool, *scopes: str) -> str:
    async with pool.acquire() as conn:
        return (await apikeys.create(conn, "test", list(scopes))).key


@pytest.fixture
async def base_url(settings: Settings) -> AsyncIterator[str]:
    async with serving(create_app(settings, gateways=configured())) as url:
        yield url


@pytest.fixture
async def api(base_url: str, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a key with both orders scopes."""
    key = await key_for(pool, "orders:read", "orders:write")
    async with httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {key}"}) as client:
        yield client


def problem_fields(response: httpx.Response) -> list[str]:
    """The fields a problem document names, after checking it is one (RFC 9457, our shape)."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "errors"}, body
    assert body["status"] == response.status_code
    assert body["type"].startswith("https://payrecon.dev/problems/")
    for error in body["errors"]:
        assert set(error) == {"field", "message"}, body
        assert error["message"]
        assert error["message"] in body["detail"]
    return [str(e["field"]) for e in body["errors"]]


def problem_key(response: httpx.Response) -> str:
    fields = problem_fields(response)
    assert len(fields) == 1, response.text
    return fields[0]


async def test_register_returns_the_order_contract(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/orders", json=BODY)
    assert created.status_code == 201, created.text
    order = created.json()
    assert set(order) == {
        "id", "amount", "currency", "provider", "account", "reference", "provider_data", "metadata", "status",
        "refunded_amount", "provider_payment_id", "version", "references", "created_at", "updated_at", "paid_at",
        "last_failure", "payments",
    }  # fmt: skip
    assert order["payments"] == []
    assert order["account"] == "default"
    assert order["reference"] == "ord_1001"
    assert (order["status"], order["refunded_amount"], order["provider_payment_id"], order["version"]) == (
        "pending",
        0,
        None,
        1,
    )
    assert order["references"] == [
        {
            "provider": "vnpay",
            "account": "default",
            "reference": "ord_1001",
            "provider_data": {"vnp_create_date": "20261124100000"},
            "added_at": order["created_at"],
        }
    ]
    assert order["created_at"].endswith("Z")

    again = await api.post("/v1/orders", json=BODY)
    assert again.status_code == 200
    assert again.json() == order

    different = await api.post("/v1/orders", json={**BODY, "amount": 160000, "metadata": {}})
    assert different.status_code == 409
    problem = different.json()
    assert problem_fields(different) == ["amount", "metadata"]
    assert "amount, metadata" in problem["detail"]
    assert different.headers["content-type"].startswith("application/problem+json")


async def test_get_order_and_its_audit_trail(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    assert (await api.get("/v1/orders/ord_1001")).status_code == 404
    await api.post("/v1/orders", json=BODY)
    await ledger.apply(pool, event(S.PROCESSING, reference="ord_1001"), Source.WEBHOOK)
    await ledger.apply(pool, event(S.SUCCEEDED, reference="ord_1001", amount=9), Source.WEBHOOK)
    await ledger.apply(pool, event(S.SUCCEEDED, reference="ord_1001", at=T0 + timedelta(1)), Source.RECONCILER)

    order = (await api.get("/v1/orders/ord_1001")).json()
    assert (order["status"], order["version"], order["provider_payment_id"]) == ("succeeded", 3, "pay-1")
    assert order["paid_at"] is not None

    trail = await api.get("/v1/orders/ord_1001/events")
    assert trail.status_code == 200
    body = trail.json()
    assert [(e["status"], e["outcome"], e["source"]) for e in body["events"]] == [
        ("processing", "applied", "webhook"),
        ("succeeded", "amount_mismatch", "webhook"),
        ("succeeded", "applied", "reconciler"),
    ]
    assert [(t["from_status"], t["to_status"], t["source"], t["to_version"]) for t in body["transitions"]] == [
        ("pending", "processing", "webhook", 2),
        ("processing", "succeeded", "reconciler", 3),
    ]
    assert body["transitions"][1]["event_id"] == body["events"][2]["id"]
    assert (await api.get("/v1/orders/nope/events")).status_code == 404


async def test_references(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await api.post("/v1/orders", json=BODY)
    await api.post("/v1/orders", json={**BODY, "id": "ord_2"})
    waiting = await ledger.apply(pool, event(S.SUCCEEDED, reference="ord_1001-2"), Source.WEBHOOK)
    assert waiting.kind == "unknown_order"

    attempt = {"provider": "vnpay", "reference": "ord_1001-2", "provider_data": {"vnp_create_date": "20261124110000"}}
    added = await api.post("/v1/orders/ord_1001/references", json=attempt)
    assert added.status_code == 201, added.text
    assert [r["reference"] for r in added.json()["references"]] == ["ord_1001", "ord_1001-2"]
    assert added.json()["status"] == "succeeded"  # the quarantined event was applied
    assert (await api.post("/v1/orders/ord_1001/references", json=attempt)).status_code == 200

    taken = await api.post("/v1/orders/ord_2/references", json=attempt)
    assert taken.status_code == 409
    assert problem_fields(taken) == ["reference"]
    assert "belongs to order ord_1001" in taken.json()["detail"]
    missing = await api.post("/v1/orders/nope/references", json=attempt)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert problem_key(await api.post("/v1/orders/ord_1001/references", json={**attempt, "x": 1})) == "x"
    assert problem_key(await api.post("/v1/orders/ord_1001/references", json={**attempt, "provider": "p"})) == (
        "provider"
    )


async def test_list_orders_pages_by_last_update(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    for n in range(5):
        body = {**BODY, "id": f"o{n}", "provider": "momo" if n == 4 else "vnpay"}
        assert (await api.post("/v1/orders", json=body)).status_code == 201
    await ledger.apply(pool, event(S.SUCCEEDED, reference="o0"), Source.WEBHOOK)  # o0 now updated last

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/orders", params=params)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["o1", "o2", "o3", "o4", "o0"]

    succeeded = (await api.get("/v1/orders", params={"status": "succeeded"})).json()
    assert [o["id"] for o in succeeded["items"]] == ["o0"]
    momo = (await api.get("/v1/orders", params={"provider": "momo"})).json()
    assert [o["id"] for o in momo["items"]] == ["o4"]
    since = (await api.get("/v1/orders/o0")).json()["updated_at"]
    recent = (await api.get("/v1/orders", params={"updated_since": since})).json()
    assert [o["id"] for o in recent["items"]] == ["o0"]
    future = (await api.get("/v1/orders", params={"updated_since": "2999-01-01T00:00:00"})).json()
    assert future == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "paid"}, "status"),
        ({"updated_since": "yesterday"}, "updated_since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzFd"}, "cursor"),  # base64 of [1]
        # times whose offset carries them past year 1 or 9999 once in UTC, and a NUL in a cursor's key:
        # each was a 500 (an OverflowError or PostgreSQL refusing NUL)
        ({"updated_since": "0001-01-01T00:00:00+23:59"}, "updated_since"),
        ({"updated_since": "9999-12-31T23:59:59-23:59"}, "updated_since"),
        ({"cursor": encode_cursor("0001-01-01T00:00:00+23:59", "x")}, "cursor"),
        ({"cursor": encode_cursor("9999-12-31T23:59:59-23:59", "x")}, "cursor"),
        ({"cursor": encode_cursor("2026-01-01T00:00:00Z", "a\x00b")}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_400(api: httpx.AsyncClient, params: dict[str, Any], key: str) -> None:
    response = await api.get("/v1/orders", params=params)
    assert response.status_code == 400
    assert problem_key(response) == key


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"amount": "150000"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 2**63}, "amount"),
        ({"amount": None}, "amount"),
        ({"id": 5}, "id"),
        ({"id": ""}, "id"),
        ({"id": "a/b"}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"currency": "vnd"}, "currency"),
        ({"currency": "VN"}, "currency"),
        ({"currency": "VNDX"}, "currency"),
        ({"provider": "paypal"}, "provider"),
        ({"provider": ""}, "provider"),
        ({"account": ""}, "account"),
        ({"reference": "r" * 256}, "reference"),
        ({"reference": "bad\nref"}, "reference"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"blob": "x" * 17000}}, "metadata"),
        ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
        ({"metadata": {"nul": "a\u0000b"}}, "metadata"),
        ({"provider_data": {"blob": "x" * 17000}}, "provider_data"),
        ({"status": "succeeded"}, "status"),  # the service owns the status
        ({"bogus": 1}, "bogus"),
    ],
)
async def test_bad_order_body_is_a_400_naming_the_field(
    api: httpx.AsyncClient, change: dict[str, Any], key: str
) -> None:
    response = await api.post("/v1/orders", json={**BODY, **change})
    assert response.status_code == 400, response.text
    assert problem_key(response) == key


@pytest.mark.parametrize("missing", ["id", "amount", "currency", "provider"])
async def test_missing_required_field_is_named(api: httpx.AsyncClient, missing: str) -> None:
    body = {k: v for k, v in BODY.items() if k != missing}
    response = await api.post("/v1/orders", json=body)
    assert response.status_code == 400
    assert problem_key(response) == missing


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b"", b'{"id": "a"'])
async def test_malformed_json_is_a_400(api: httpx.AsyncClient, content: bytes) -> None:
    response = await api.post("/v1/orders", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_openapi_schema_documents_the_orders_api(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        schema = (await client.get("/schema/openapi.json")).json()
    assert {"/v1/orders", "/v1/orders/{order_id}", "/v1/orders/{order_id}/events"} <= set(schema["paths"])
    register = schema["paths"]["/v1/orders"]["post"]
    assert register["security"] == [{"bearer": []}]
    body = register["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("NewOrder")
