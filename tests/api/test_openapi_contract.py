"""The OpenAPI document tells the truth: schemathesis drives every /v1 operation from it with a valid key
(zero 5xx, zero answers outside the documented statuses and schemas), and it documents what a client needs."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from service.apikeys import SCOPES
from service.app import create_app
from service.serving import serving
from service.settings import Settings
from tests.gateways import configured
from tests.service.test_orders_api import key_for

EXAMPLES = int(os.environ.get("PAYRECON_SCHEMATHESIS_EXAMPLES", "15"))  # bounded: CI runs it every time


@pytest.fixture
async def base_url(settings: Settings) -> AsyncIterator[str]:
    async with serving(create_app(settings, gateways=configured())) as url:
        yield url


@pytest.fixture
async def schema(base_url: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200
    document: dict[str, object] = answer.json()
    return document


def operations(schema: dict[str, object]) -> list[tuple[str, str, dict[str, object]]]:
    paths = schema["paths"]
    assert isinstance(paths, dict)
    return [(path, method, op) for path, item in paths.items() for method, op in item.items() if path.startswith("/v1")]


async def test_every_v1_operation_documents_its_errors_as_problems(schema: dict[str, object]) -> None:
    for path, method, op in operations(schema):
        responses = op["responses"]
        assert isinstance(responses, dict)
        assert {"400", "401", "403", "503"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                content = response["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
                assert content["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
                assert response["description"]
                assert content["application/problem+json"]["examples"]
        assert op.get("description") or op.get("summary"), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
    register = schema["paths"]["/v1/orders"]["post"]["responses"]  # type: ignore[index]
    assert {"200", "201", "409", "413"} <= set(register)


async def test_integer_bounds_are_integers(schema: dict[str, object]) -> None:
    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "integer":
                for key in ("maximum", "minimum"):
                    assert not isinstance(node.get(key), float), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    amount = schema["components"]["schemas"]["NewOrder"]["properties"]["amount"]  # type: ignore[index]
    assert (amount["minimum"], amount["maximum"]) == (1, 2**63 - 1)


async def test_the_ui_loads_nothing_from_a_cdn(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        page = await client.get("/schema/swagger")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        assert "/schema/assets/swagger-ui-bundle.js" in page.text
        assert (await client.get("/schema/assets/swagger-ui-bundle.js")).status_code == 200


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    base_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    key = await key_for(pool, *SCOPES)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/schema/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
        "response_headers_conformance",
        "--max-examples",
        str(EXAMPLES),
        "--include-path-regex",
        "^/v1/",
        "--generation-deterministic",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "60",  # a loaded CI machine is slow, not wrong
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=900)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-12000:]


async def test_every_field_and_parameter_is_described(schema: dict[str, object]) -> None:
    schemas = schema["components"]["schemas"]  # type: ignore[index]
    bare = [(n, p) for n, s in schemas.items() for p, v in s.get("properties", {}).items() if not v.get("description")]
    assert bare == []
    for path, method, op in operations(schema):
        for param in op.get("parameters", []):  # type: ignore[attr-defined]
            assert param.get("description"), (method, path, param["name"])
    amount = schemas["NewOrder"]["properties"]["amount"]
    assert amount["examples"] == [150000]
