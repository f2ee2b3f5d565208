"""The OpenAPI document as served at /schema/openapi.json, with what litestar's generator gets wrong fixed.

litestar turns integer bounds into floats (`9.223372036854776e+18`) and leaves string constraints
beside a `oneOf` of an optional field instead of on its string branch; clients generated from the
document, and schemathesis, read both literally.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

_INT64_MAX = 2**63 - 1
_STRING_KEYS = ("maxLength", "minLength", "pattern", "format")
_NUMBER_KEYS = ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum")


def _integer(bound: Any) -> Any:
    if not isinstance(bound, float) or not bound.is_integer():
        return bound
    # float(2**63 - 1) rounds up to 2**63: the bound was PostgreSQL's bigint maximum
    return min(int(bound), _INT64_MAX) if bound > 0 else max(int(bound), -_INT64_MAX - 1)


def polish(node: Any) -> Any:
    """Fix the generated schema in place (recursively) and return it."""
    if isinstance(node, list):
        for item in node:
            polish(item)
    elif isinstance(node, dict):
        branches = node.get("oneOf")
        if isinstance(branches, list):
            for kind, keys in (("string", _STRING_KEYS), ("integer", _NUMBER_KEYS)):
                moved = {k: node.pop(k) for k in keys if k in node}
                for branch in branches:
                    if moved and isinstance(branch, dict) and branch.get("type") == kind:
                        branch.update(moved)
        if node.get("type") == "integer":
            for key in _NUMBER_KEYS:
                if key in node:
                    node[key] = _integer(node[key])
        for value in node.values():
            polish(value)
    return node


class OpenAPIJson(JsonRenderPlugin):
    """`/schema/openapi.json`, polished."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, polish(openapi_schema))
