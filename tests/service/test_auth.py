"""API-key authentication and scopes over real HTTP: 401 without a live key, 403 without the scope."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute

from service import apikeys
from service.app import create_app
from service.auth import PUBLIC_PATHS, scope_of
from service.serving import serving
from service.settings import Settings
from tests.gateways import configured
from tests.service.test_orders_api import key_for


@pytest.fixture
async def app_url(settings: Settings) -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    app = create_app(settings, gateways=configured())
    v1 = [
        (method, re.sub(r"\{[^}:]+:([a-z]+)\}", lambda m: "1" if m[1] == "int" else "x", route.path))
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/v1")
        for method in sorted(route.methods - {"OPTIONS", "HEAD"})
    ]
    async with serving(app) as url:
        yield url, v1


async def test_every_v1_route_needs_a_key(app_url: tuple[str, list[tuple[str, str]]]) -> None:
    url, routes = app_url
    assert ("POST", "/v1/orders") in routes
    assert ("GET", "/v1/anomalies") in routes
    async with httpx.AsyncClient(base_url=url) as client:
        for method, path in routes:
            response = await client.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer prk_00000000_not-a-key",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "prk_00000000_x",
        "Bearer " + "x" * 500,
    ],
)
async def test_unknown_or_malformed_keys_are_401(app_url: tuple[str, list[tuple[str, str]]], header: str) -> None:
    async with httpx.AsyncClient(base_url=app_url[0], headers={"authorization": header}) as client:
        assert (await client.get("/v1/orders")).status_code == 401


async def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_401(
    app_url: tuple[str, list[tuple[str, str]]], pool: asyncpg.Pool
) -> None:
    key = await key_for(pool, "orders:read")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    async with httpx.AsyncClient(base_url=app_url[0], headers={"authorization": f"Bearer {forged}"}) as client:
        assert (await client.get("/v1/orders")).status_code == 401


async def test_scopes_decide_403(app_url: tuple[str, list[tuple[str, str]]], pool: asyncpg.Pool) -> None:
    reader = await key_for(pool, "orders:read")
    recon = await key_for(pool, "recon:read", "recon:run")
    order = {"id": "o1", "amount": 1, "currency": "VND", "provider": "vnpay"}
    async with httpx.AsyncClient(base_url=app_url[0]) as client:
        as_reader = {"authorization": f"Bearer {reader}"}
        as_recon = {"authorization": f"Bearer {recon}"}
        assert (await client.get("/v1/orders", headers=as_reader)).status_code == 200
        assert (await client.get("/v1/anomalies", headers=as_reader)).status_code == 200
        denied = await client.post("/v1/orders", json=order, headers=as_reader)
        assert denied.status_code == 403
        assert denied.headers["content-type"].startswith("application/problem+json")
        assert "orders:write" in denied.text
        assert (await client.get("/v1/orders", headers=as_recon)).status_code == 403
        # scope is checked before the body: a forbidden caller learns nothing about validation
        assert (await client.post("/v1/orders", content=b"junk", headers=as_reader)).status_code == 403


@asynccontextmanager
async def keyed_client(settings: Settings, key: str, *, key_cache_seconds: float) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(msgspec.structs.replace(settings, apikey_cache_seconds=key_cache_seconds), gateways=configured())
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}) as client,
    ):
        yield client


async def test_revoked_key_stops_working_within_the_key_cache_ttl(settings: Settings, pool: asyncpg.Pool) -> None:
    # a process trusts a key it verified for apikey_cache_seconds (service.apikeys.KeyCache)
    key = await key_for(pool, "orders:read")
    async with keyed_client(settings, key, key_cache_seconds=1.0) as client:
        assert (await client.get("/v1/orders")).status_code == 200
        async with pool.acquire() as conn:
            await apikeys.revoke(conn, key[:12])
        revoked_at = time.monotonic()
        assert (await client.get("/v1/orders")).status_code == 200  # still trusted from the first request
        while (await client.get("/v1/orders")).status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "a revoked key outlived the key cache's TTL"
            await asyncio.sleep(0.05)
        assert (await client.get("/v1/orders")).status_code == 401


async def test_revoked_key_stops_working_at_once_without_the_key_cache(settings: Settings, pool: asyncpg.Pool) -> None:
    key = await key_for(pool, "orders:read")
    async with keyed_client(settings, key, key_cache_seconds=0) as client:
        assert (await client.get("/v1/orders")).status_code == 200
        async with pool.acquire() as conn:
            await apikeys.revoke(conn, key[:12])
        assert (await client.get("/v1/orders")).status_code == 401


async def test_public_routes_need_no_key(app_url: tuple[str, list[tuple[str, str]]]) -> None:
    async with httpx.AsyncClient(base_url=app_url[0]) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/schema/openapi.json"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
        webhook = await client.post("/webhooks/nope", content=b"{}")
        assert webhook.status_code != 401


def test_every_v1_route_names_a_scope_and_goes_through_authentication(settings: Settings) -> None:
    """The scope is checked by the authentication middleware: a scoped route it skips would be open to all."""
    app = create_app(settings, gateways=configured())
    scoped = [
        (route.path, handler)
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/v1")
        for handler in route.route_handlers
        if handler.http_methods - {"OPTIONS", "HEAD"}  # litestar's own OPTIONS answer has nothing to scope
    ]
    assert len(scoped) > 15
    for path, handler in scoped:
        assert scope_of(handler) in apikeys.SCOPES, path
        assert not handler.opt.get("exclude_from_auth"), path
        assert not any(re.search(public, path) for public in PUBLIC_PATHS), path
