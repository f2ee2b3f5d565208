"""Every /v1 list pages one way (service/pages.py): one cursor shape, one cut, one answer to a bad cursor."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from service.pages import CursorError, cut, decode_cursor, encode_cursor
from tests.service.test_orders_api import api, base_url, key_for, problem_key

__all__ = ["api", "base_url"]  # fixtures shared with the orders API tests

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_a_page_is_cut_at_the_limit_with_the_cursor_of_its_last_row() -> None:
    rows = [(T0 + timedelta(seconds=i), i) for i in range(4)]
    page, after = cut(rows, 3, lambda row: row)
    assert page == rows[:3]
    assert decode_cursor(after, int) == rows[2]
    assert cut(rows, 4, lambda row: row) == (rows, None)  # nothing follows: the last page
    assert cut([], 3, lambda row: row) == ([], None)


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",  # not base64 of JSON
        "12",  # what the id-keyed lists once gave out
        encode_cursor(T0, "ord-1"),  # a list keyed by text, not by id
        encode_cursor("2026-01-01T00:00:00", 1),  # a naive time: never written by this API
        encode_cursor(T0, 2**63),  # an id no bigint holds: PostgreSQL would overflow on it (a 500)
        encode_cursor(T0, -(2**63) - 1),
    ],
)
def test_a_cursor_this_api_did_not_issue_is_refused(cursor: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(cursor, int)


async def test_every_list_refuses_a_foreign_cursor_the_same_way(base_url: str, pool: asyncpg.Pool) -> None:
    # The lists are found in the served OpenAPI document: a new list that pages is checked too.
    key = await key_for(pool, "orders:read", "recon:read", "webhooks:read")
    async with httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {key}"}) as api:
        document = (await api.get("/schema/openapi.json")).json()
        lists = {
            path: operation["get"]
            for path, operation in document["paths"].items()
            if "get" in operation and any(p["name"] == "cursor" for p in operation["get"].get("parameters", []))
        }
        assert {
            "/v1/orders",
            "/v1/anomalies",
            "/v1/anomalies/quarantined",
            "/v1/rejected-deliveries",
            "/v1/reconciliation/runs",
            "/v1/reconciliation/runs/{run_id}/findings",
            "/v1/webhook-endpoints/{endpoint_id}/deliveries",
        } <= set(lists)
        # no list has a key with a NUL in it, nor an id beyond bigint: each reached PostgreSQL as a 500
        foreign = [encode_cursor(T0, "a\x00b"), encode_cursor(T0, 2**63), encode_cursor(T0, 2**64 - 1)]
        for (path, operation), cursor in itertools.product(lists.items(), foreign):
            [parameter] = [p for p in operation["parameters"] if p["name"] == "cursor"]
            assert "next_cursor" in parameter.get("description", ""), path  # the shared `Cursor` parameter
            url = path.replace("{run_id}", "1").replace("{endpoint_id}", "1")
            answer = await api.get(url, params={"cursor": cursor})
            assert answer.status_code == 400, (path, answer.text)
            assert problem_key(answer) == "cursor", path
