"""Orders checked at the door, the one problem shape of every /v1 error, and the order lookups (issue 11)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from providers.base import PaymentStatus
from providers.currencies import MINOR_UNITS, format_amount
from service import ledger
from service.model import Source
from tests.service.test_ledger import event
from tests.service.test_orders_api import BODY, api, base_url, key_for, problem_fields, problem_key

__all__ = ["api", "base_url"]

S = PaymentStatus
STRIPE = {"id": "ord_s1", "amount": 2599, "currency": "USD", "provider": "stripe", "reference": "pi_123"}
MOMO = {"id": "ord_m1", "amount": 150000, "currency": "VND", "provider": "momo"}


def test_the_currency_table_knows_exponents() -> None:
    assert (MINOR_UNITS["USD"], MINOR_UNITS["VND"], MINOR_UNITS["JPY"], MINOR_UNITS["KWD"]) == (2, 0, 0, 3)
    assert "XYZ" not in MINOR_UNITS
    assert format_amount(2599, "USD") == "25.99 USD"
    assert format_amount(5120, "KWD") == "5.120 KWD"
    assert format_amount(150000, "VND") == "150000 VND"


@pytest.mark.parametrize(
    ("body", "fields", "says"),
    [
        ({**BODY, "currency": "XYZ"}, ["currency"], "not an ISO 4217"),
        ({**MOMO, "currency": "USD", "amount": 1000}, ["currency"], "momo does not take USD"),
        ({**BODY, "currency": "USD"}, ["currency"], "vnpay does not take USD"),
        ({**BODY, "amount": 0}, ["amount"], ">= 1"),
        ({**MOMO, "amount": 999}, ["amount"], "at least 1000 VND"),
        ({**MOMO, "amount": 50_000_001}, ["amount"], "at most 50000000 VND"),
        ({**BODY, "amount": 4_999}, ["amount"], "at least 5000 VND"),
        ({**STRIPE, "amount": 49}, ["amount"], "at least 0.50 USD"),
        ({**STRIPE, "amount": 100_000_000}, ["amount"], "at most 999999.99 USD"),
        ({**BODY, "account": "shop-2"}, ["account"], "no account 'shop-2'"),
        ({**BODY, "provider": "paypal"}, ["provider"], "not configured"),
        ({**BODY, "provider_data": {}}, ["provider_data.vnp_create_date"], "vnpay needs it"),
        ({**BODY, "provider_data": {"vnp_create_date": "2026-11-24"}}, ["provider_data.vnp_create_date"], "matching"),
        (
            {**BODY, "currency": "XYZ", "account": "nope", "provider_data": {}},
            ["currency", "account", "provider_data.vnp_create_date"],
            "not an ISO 4217",
        ),
    ],
)
async def test_orders_the_gateway_cannot_take_are_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], fields: list[str], says: str
) -> None:
    answer = await api.post("/v1/orders", json=body)
    assert answer.status_code == 400, answer.text
    assert problem_fields(answer) == fields
    assert says in answer.json()["detail"]
    assert (await api.get(f"/v1/orders/{body['id']}")).status_code == 404


@pytest.mark.parametrize("body", [BODY, STRIPE, MOMO, {**STRIPE, "id": "ord_j", "currency": "JPY", "amount": 50}])
async def test_orders_the_gateway_takes_are_registered(api: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert (await api.post("/v1/orders", json=body)).status_code == 201


async def test_a_new_attempt_must_suit_its_gateway(api: httpx.AsyncClient) -> None:
    await api.post("/v1/orders", json=STRIPE)
    to_momo = await api.post("/v1/orders/ord_s1/references", json={"provider": "momo", "reference": "m-1"})
    assert to_momo.status_code == 400
    assert problem_fields(to_momo) == ["provider"]
    assert "momo does not take USD" in to_momo.json()["detail"]
    no_date = await api.post("/v1/orders/ord_1001/references", json={"provider": "vnpay", "reference": "v-2"})
    assert no_date.status_code == 404  # no such order: found before the body is judged against it
    await api.post("/v1/orders", json=BODY)
    no_date = await api.post("/v1/orders/ord_1001/references", json={"provider": "vnpay", "reference": "v-2"})
    assert problem_fields(no_date) == ["provider_data.vnp_create_date"]


async def test_listing_by_an_unknown_gateway_is_a_400_like_registering(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/orders", params={"provider": "paypal"})
    assert answer.status_code == 400
    assert problem_key(answer) == "provider"
    assert (await api.get("/v1/orders", params={"provider": "momo"})).status_code == 200


async def test_orders_are_found_by_reference_and_payment_id(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await api.post("/v1/orders", json=BODY)
    await api.post("/v1/orders", json={**BODY, "id": "ord_2"})
    attempt = {"provider": "vnpay", "reference": "retry-7", "provider_data": {"vnp_create_date": "20261124110000"}}
    await api.post("/v1/orders/ord_2/references", json=attempt)
    paid = event(S.SUCCEEDED, reference="ord_1001", provider_payment_id="14226112")
    assert (await ledger.apply(pool, paid, Source.WEBHOOK)).kind == "applied"

    def ids(answer: httpx.Response) -> list[str]:
        assert answer.status_code == 200, answer.text
        return [o["id"] for o in answer.json()["items"]]

    assert ids(await api.get("/v1/orders", params={"reference": "retry-7"})) == ["ord_2"]
    assert ids(await api.get("/v1/orders", params={"reference": "ord_1001"})) == ["ord_1001"]
    assert ids(await api.get("/v1/orders", params={"provider_payment_id": "14226112"})) == ["ord_1001"]
    assert ids(await api.get("/v1/orders", params={"provider_payment_id": "nope"})) == []
    assert ids(await api.get("/v1/orders", params={"updated_since": "2d"})) == ["ord_2", "ord_1001"]
    assert ids(await api.get("/v1/orders", params={"updated_since": "2099-01-01T00:00:00Z"})) == []


async def test_the_last_failure_is_on_the_order(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await api.post("/v1/orders", json=BODY)
    assert (await api.get("/v1/orders/ord_1001")).json()["last_failure"] is None
    failed = event(S.FAILED, reference="ord_1001", reason="vnpay:24 Customer canceled the payment")
    applied = await ledger.apply(pool, failed, Source.WEBHOOK)
    order = (await api.get("/v1/orders/ord_1001")).json()
    assert order["status"] == "failed"
    assert order["last_failure"] == {
        "status": "failed",
        "code": "vnpay:24",
        "message": "Customer canceled the payment",
        "at": "2026-11-24T10:00:00Z",
        "event_id": applied.event_id,
    }


async def test_anomalies_since_takes_the_cli_forms(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/anomalies", params={"since": "90m"})).status_code == 200
    assert (await api.get("/v1/anomalies", params={"since": "2026-11-24T10:00:00+07:00"})).status_code == 200
    assert problem_key(await api.get("/v1/anomalies", params={"since": "soon"})) == "since"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/v1/orders", {}, 401),
        ("GET", "/v1/orders", {"authorization": "Bearer prk_nope_x"}, 401),
        ("GET", "/v1/reconciliation/runs", None, 403),
        ("GET", "/v1/orders/nope", None, 404),
        ("GET", "/v1/nowhere", None, 404),
        ("DELETE", "/v1/orders", None, 405),
        ("GET", "/v1/reconciliation/runs/abc", None, 404),
    ],
)
async def test_every_error_is_one_problem_shape(
    base_url: str, pool: asyncpg.Pool, method: str, path: str, headers: dict[str, str] | None, status: int
) -> None:
    key = await key_for(pool, "orders:read")
    async with httpx.AsyncClient(base_url=base_url) as client:
        answer = await client.request(
            method, path, headers={"authorization": f"Bearer {key}"} if headers is None else headers
        )
    assert answer.status_code == status, answer.text
    problem_fields(answer)
    body = answer.json()
    assert body["title"] != body["detail"]
    if status == 401:
        assert body["title"] == "Unauthorized"
        assert "API key" in body["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_litestar_validation_errors_name_the_field_once(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/orders", params={"limit": "many"})
    assert problem_key(answer) == "limit"
    assert answer.json()["detail"].count("limit") == 1
    malformed = await api.post("/v1/orders", content=b"{nope", headers={"content-type": "application/json"})
    assert problem_key(malformed) == "body"
    assert malformed.json()["detail"].count("JSON is malformed") == 1
