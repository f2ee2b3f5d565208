"""A client generated from /schema/openapi.json (openapi-python-client) works against the running service:
its models parse every answer, success and problem alike."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest

from service.apikeys import SCOPES
from tests.api.test_openapi_contract import base_url
from tests.service.test_orders_api import key_for

__all__ = ["base_url"]


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "payrecon_client" or m.startswith("payrecon_client.")]:
            del sys.modules[name]


async def generate(base_url: str, into: Path) -> ModuleType:
    async with httpx.AsyncClient(base_url=base_url) as client:
        (into / "openapi.json").write_bytes((await client.get("/schema/openapi.json")).content)
    bin_dir = Path(sys.executable).parent
    process = await asyncio.create_subprocess_exec(
        str(bin_dir / "openapi-python-client"),
        "generate",
        "--path",
        str(into / "openapi.json"),
        "--output-path",
        str(into / "payrecon_client"),
        "--meta",
        "none",
        cwd=into,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    assert "Warning" not in text, text  # every schema was understood
    return importlib.import_module("payrecon_client")


def mod(name: str) -> Any:
    return importlib.import_module(f"payrecon_client.{name}")


async def test_a_generated_client_registers_reads_and_lists(base_url: str, pool: asyncpg.Pool, on_path: Path) -> None:
    package = await generate(base_url, on_path)
    key = await key_for(pool, *SCOPES)
    models = mod("models")
    register = mod("api.orders.register_order")
    get_order = mod("api.orders.get_order")
    list_orders = mod("api.orders.list_orders")
    create_endpoint = mod("api.webhooks.create_webhook_endpoint")
    async with package.AuthenticatedClient(base_url=base_url, token=key) as client:
        body = models.NewOrder(
            id="ord_gen",
            amount=150000,
            currency="VND",
            provider="vnpay",
            provider_data=models.NewOrderProviderData.from_dict({"vnp_create_date": "20261124100000"}),
        )
        created = await register.asyncio_detailed(client=client, body=body)
        assert created.status_code == 201
        assert isinstance(created.parsed, models.Order)
        assert created.parsed.status == models.PaymentStatus.PENDING
        assert created.parsed.version == 1

        again = await register.asyncio_detailed(client=client, body=body)
        assert again.status_code == 200
        assert isinstance(again.parsed, models.Order)

        refused = await register.asyncio_detailed(
            client=client, body=models.NewOrder(id="ord_usd", amount=100, currency="USD", provider="momo")
        )
        assert refused.status_code == 400
        assert isinstance(refused.parsed, models.Problem)
        assert [e.field for e in refused.parsed.errors] == ["currency"]

        found = await get_order.asyncio(client=client, order_id="ord_gen")
        assert isinstance(found, models.Order)
        assert found.last_failure is None
        missing = await get_order.asyncio(client=client, order_id="nope")
        assert isinstance(missing, models.Problem)
        assert missing.status == 404

        page = await list_orders.asyncio(client=client, reference="ord_gen", updated_since="1d")
        assert isinstance(page, models.OrderPage)
        assert [o.id for o in page.items] == ["ord_gen"]

        endpoint = await create_endpoint.asyncio(
            client=client, body=models.NewEndpoint(url="https://shop.example/hooks")
        )
        assert isinstance(endpoint, models.EndpointWithSecret)
        assert endpoint.secret.startswith("whsec_")
    async with package.Client(base_url=base_url) as anonymous:
        denied = await get_order.asyncio_detailed(client=anonymous, order_id="ord_gen")  # type: ignore[arg-type]
        assert denied.status_code == 401
        assert isinstance(denied.parsed, models.Problem)
