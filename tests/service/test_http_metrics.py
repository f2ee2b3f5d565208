"""HTTP metrics (service.http_metrics): per route template and status, errors, durations, in-progress."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from service.http_metrics import UNROUTED, HttpMetrics
from service.settings import Settings
from tests.e2e.harness import Running, running


def sample(name: str, method: str, path: str, status: str) -> float:
    labels = {"method": method, "path": path, "status_code": status, "app_name": "payrecon"}
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    async with running(settings) as found:
        yield found


async def test_requests_are_counted_by_route_template_and_status(app: Running) -> None:
    route = "/v1/orders/{order_id}"
    before = {
        "ok": sample("payrecon_http_requests_total", "GET", "/healthz", "200"),
        "seconds": sample("payrecon_http_request_duration_seconds_count", "GET", "/healthz", "200"),
        "missing": sample("payrecon_http_requests_total", "GET", route, "404"),
        "running": sample("payrecon_http_requests_in_progress", "GET", "/healthz", "200"),
    }
    for _ in range(3):
        assert (await app.http.get("/healthz")).status_code == 200
    for order_id in ("nope-1", "nope-2"):  # two URLs, one series: the label is the template
        assert (await app.api.get(f"/v1/orders/{order_id}")).status_code == 404
    assert sample("payrecon_http_requests_total", "GET", "/healthz", "200") == before["ok"] + 3
    assert sample("payrecon_http_request_duration_seconds_count", "GET", "/healthz", "200") == before["seconds"] + 3
    assert sample("payrecon_http_requests_total", "GET", route, "404") == before["missing"] + 2
    assert sample("payrecon_http_requests_total", "GET", "/v1/orders/nope-1", "404") == 0
    assert sample("payrecon_http_requests_in_progress", "GET", "/healthz", "200") == before["running"]


async def test_a_server_error_counts_as_an_error() -> None:
    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError("bug")

    before = sample("payrecon_http_requests_error_total", "GET", "/boom", "500")
    async with AsyncTestClient(Litestar(route_handlers=[boom], middleware=[HttpMetrics])) as client:
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/boom")).status_code == 500
    assert sample("payrecon_http_requests_error_total", "GET", "/boom", "500") == before + 2
    assert sample("payrecon_http_requests_total", "GET", "/boom", "500") >= 2


async def test_requests_no_route_matches_are_counted_under_one_label(app: Running) -> None:
    # litestar's router answers these before any route middleware runs; scanners and mistyped
    # webhook URLs must still show, under one bounded label whatever the URL or method
    before = {
        "404": sample("payrecon_http_requests_total", "GET", UNROUTED, "404"),
        "405": sample("payrecon_http_requests_total", "DELETE", UNROUTED, "405"),
        "other": sample("payrecon_http_requests_total", "OTHER", UNROUTED, "404"),
        "routed": sample("payrecon_http_requests_total", "GET", "/v1/orders/{order_id}", "404"),
    }
    for path in ("/nope", "/webhooks-typo/momo", "/.env"):
        assert (await app.http.get(path)).status_code == 404
    assert (await app.http.delete("/healthz")).status_code == 405
    assert (await app.http.request("PROPFIND", "/dav")).status_code == 404
    assert (await app.api.get("/v1/orders/nope")).status_code == 404  # routed: counted by its route only
    assert sample("payrecon_http_requests_total", "GET", UNROUTED, "404") == before["404"] + 3
    assert sample("payrecon_http_requests_total", "DELETE", UNROUTED, "405") == before["405"] + 1
    assert sample("payrecon_http_requests_total", "OTHER", UNROUTED, "404") == before["other"] + 1
    assert sample("payrecon_http_requests_total", "GET", "/v1/orders/{order_id}", "404") == before["routed"] + 1
    assert sample("payrecon_http_requests_total", "GET", "/nope", "404") == 0
