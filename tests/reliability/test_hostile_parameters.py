"""NUL bytes and out-of-range integers in every parameter of every route: a 4xx, never a 500.

The cases are generated from the app's own route table (paths, their typed path parameters,
each handler's query parameters) and from the OpenAPI document's request bodies, so a route
added tomorrow is held to this without anyone listing it here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, get_args

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.connection import Request
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from service import apikeys
from service.input_guard import VERBATIM, _is_int
from service.settings import Settings
from tests.e2e.harness import Running, running

NUL = "a\x00b"
TOO_BIG = ("9223372036854775808", "394148076921473466368", "-9223372036854775809")
_PARAM = re.compile(r"\{(\w+):(\w+)\}")
_NOT_QUERY = (Request, State, bytes)


class Case(msgspec.Struct, frozen=True):
    method: str
    path: str
    params: dict[str, str] = {}
    json: Any = None
    expect: tuple[int, ...] = (400,)
    verbatim: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.path!r} {self.params} {'body' if self.json is not None else ''}"


def handlers(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method not in ("OPTIONS", "HEAD") and not route.path.startswith("/schema"):
                    yield method, route.path, handler


def fill(path: str, **values: str) -> str:
    return _PARAM.sub(lambda m: values.get(m[1], "1" if m[2] == "int" else "x1"), path)


def query_names(handler: HTTPRouteHandler, path: str) -> list[str]:
    in_path = {m[1] for m in _PARAM.finditer(path)}
    names = []
    for name, field in handler.parsed_fn_signature.parameters.items():
        annotation = field.annotation
        bare = get_args(annotation)[0] if get_args(annotation) and field.kwarg_definition is None else annotation
        if name in in_path or name in ("data", "body") or name in handler.resolve_dependencies():
            continue
        if (isinstance(bare, type) and issubclass(bare, _NOT_QUERY)) or getattr(bare, "__origin__", None) is Request:
            continue
        names.append(name)
    return names


def body_cases(openapi: dict[str, Any], method: str, path: str) -> Iterator[dict[str, Any]]:
    """One JSON body per string property of the operation's body schema, that property set to NUL."""
    template = _PARAM.sub(lambda m: "{" + m[1] + "}", path)
    operation = openapi["paths"].get(template, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if not content:
        return
    schema = resolve(openapi, content["schema"])
    properties = {k: resolve(openapi, v) for k, v in schema.get("properties", {}).items()}
    base = {k: sample(v) for k, v in properties.items() if k in schema.get("required", [])}
    for name, prop in properties.items():
        if "string" in kinds(prop):
            yield {**base, name: NUL}
        if "integer" in kinds(prop):
            yield {**base, name: int(TOO_BIG[0])}


def resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def kinds(schema: dict[str, Any]) -> set[str]:
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set(schema.get("type") or [])
    for option in schema.get("oneOf", []) + schema.get("anyOf", []):
        found |= kinds(option)
    return found


def sample(schema: dict[str, Any]) -> Any:
    found = kinds(schema)
    if "enum" in schema:
        return schema["enum"][0]
    if "integer" in found:
        return 1000
    if "object" in found:
        return {}
    return "USD" if schema.get("pattern", "").startswith("^[A-Z]{3}") else "stripe"


def cases(app: Litestar, openapi: dict[str, Any]) -> list[Case]:
    found: list[Case] = []
    for method, path, handler in handlers(app):
        verbatim = bool(handler.opt.get(VERBATIM))
        for name, kind in _PARAM.findall(path):
            if kind == "int":
                found += [Case(method, fill(path, **{name: big}), expect=(404,)) for big in TOO_BIG]
            else:
                found.append(Case(method, fill(path, **{name: "a%00b"}), verbatim=verbatim))
        found.append(Case(method, fill(path), params={NUL: "x"}, verbatim=verbatim))
        for name in query_names(handler, path):
            found.append(Case(method, fill(path), params={name: NUL}, verbatim=verbatim))
            field = handler.parsed_fn_signature.parameters[name]
            if _is_int(field.annotation):
                found += [Case(method, fill(path), params={name: big}) for big in TOO_BIG]
        for body in body_cases(openapi, method, path):
            found.append(Case(method, fill(path), json=body, expect=(400, 404, 409, 422)))
    return found


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    async with running(settings) as app:
        yield app


async def test_no_route_answers_500_to_nul_or_huge_integers(app: Running) -> None:
    async with app.app.state.pool.acquire() as conn:
        key = await apikeys.create(conn, "hostile", sorted(apikeys.SCOPES))  # every route reachable
    openapi = (await app.http.get("/schema/openapi.json")).json()
    generated = cases(app.app, openapi)
    assert len(generated) > 40  # the route table was read, not an empty list
    covered = {c.path.split("?")[0] for c in generated}
    assert any("runs/9223372036854775808/findings" in p for p in covered)
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {key.key}"}
    async with httpx.AsyncClient(base_url=app.base_url, headers=headers, timeout=30) as http:
        for case in generated:
            response = await http.request(case.method, case.path, params=case.params or None, json=case.json)
            if response.status_code >= 500:
                failures.append(f"{case} -> {response.status_code} {response.text[:200]}")
            elif not case.verbatim and response.status_code not in case.expect:
                failures.append(f"{case} -> {response.status_code}, expected {case.expect}: {response.text[:200]}")
            elif not case.verbatim and "problem+json" not in response.headers.get("content-type", ""):
                failures.append(f"{case} -> not a problem document: {response.headers.get('content-type')}")
    assert failures == []
