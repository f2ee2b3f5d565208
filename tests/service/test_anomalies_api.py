"""Anomalies over real HTTP: a wrong amount never pays an order and shows up at /v1/anomalies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from providers.base import PaymentStatus
from service import ledger
from service.model import Source
from service.pages import encode_cursor
from tests.service.test_ledger import event, register
from tests.service.test_orders_api import api, base_url, problem_key

__all__ = ["api", "base_url"]  # fixtures shared with the orders API tests

S = PaymentStatus


async def test_wrong_amount_is_visible_and_the_order_unpaid(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await register(pool)
    mismatch = await ledger.apply(pool, event(S.SUCCEEDED, amount=15_000), Source.WEBHOOK)
    assert mismatch.kind == "amount_mismatch"
    order = (await api.get("/v1/orders/ord-1")).json()
    assert order["status"] == "pending"
    page = (await api.get("/v1/anomalies")).json()
    assert page["next_cursor"] is None
    [anomaly] = page["items"]
    assert (anomaly["kind"], anomaly["order_id"], anomaly["event_id"], anomaly["status"]) == (
        "amount_mismatch",
        "ord-1",
        mismatch.event_id,
        "open",
    )
    assert anomaly["detail"]["expected"] == {"amount": 150_000, "currency": "VND"}
    assert anomaly["detail"]["got"] == {"amount": 15_000, "currency": "VND"}


async def test_filters_and_pages(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    for n in range(3):
        await register(pool, f"o{n}", reference=f"o{n}")
        await ledger.apply(pool, event(S.SUCCEEDED, reference=f"o{n}", amount=1), Source.WEBHOOK)
    await ledger.apply(pool, event(S.SUCCEEDED, reference="o0"), Source.WEBHOOK)
    await ledger.apply(pool, event(S.SUCCEEDED, reference="o0", provider_payment_id="pay-2"), Source.WEBHOOK)

    doubles = (await api.get("/v1/anomalies", params={"kind": "double_payment"})).json()
    assert [(a["kind"], a["order_id"]) for a in doubles["items"]] == [("double_payment", "o0")]
    for_o1 = (await api.get("/v1/anomalies", params={"order_id": "o1"})).json()
    assert [a["kind"] for a in for_o1["items"]] == ["amount_mismatch"]

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/anomalies", params=params)).json()
        seen += [a["id"] for a in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert len(seen) == 4
    assert seen == sorted(seen)

    last = (await api.get("/v1/anomalies", params={"kind": "double_payment"})).json()["items"][0]["created_at"]
    since = (await api.get("/v1/anomalies", params={"since": last})).json()
    assert [a["kind"] for a in since["items"]][-1] == "double_payment"
    future = (await api.get("/v1/anomalies", params={"since": "2999-01-01T00:00:00Z"})).json()
    assert future["items"] == []


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"kind": "bogus"}, "kind"),
        ({"since": "soon"}, "since"),
        ({"limit": -1}, "limit"),
        ({"cursor": "@@"}, "cursor"),
        ({"cursor": encode_cursor(datetime(2026, 11, 24, tzinfo=UTC), "ord-1")}, "cursor"),  # an orders cursor
    ],
)
async def test_bad_parameters_are_400(api: httpx.AsyncClient, params: dict[str, Any], key: str) -> None:
    response = await api.get("/v1/anomalies", params=params)
    assert response.status_code == 400
    assert problem_key(response) == key


async def test_quarantined_events_are_listed_until_their_order_is_registered(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    waiting = [await ledger.apply(pool, event(S.SUCCEEDED, reference=f"q{n}"), Source.WEBHOOK) for n in range(3)]
    first = (await api.get("/v1/anomalies/quarantined", params={"limit": 2})).json()
    assert [e["id"] for e in first["items"]] == [w.event_id for w in waiting[:2]]
    assert first["items"][0]["outcome"] == "unknown_order"
    rest = (await api.get("/v1/anomalies/quarantined", params={"cursor": first["next_cursor"]})).json()
    assert [e["id"] for e in rest["items"]] == [waiting[2].event_id]
    assert rest["next_cursor"] is None
    assert (await api.get("/v1/anomalies/quarantined", params={"provider": "momo"})).json()["items"] == []

    await register(pool, "q1", reference="q1")
    left = (await api.get("/v1/anomalies/quarantined")).json()
    assert [e["reference"] for e in left["items"]] == ["q0", "q2"]
