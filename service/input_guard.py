"""What every API request's URL must satisfy before a handler sees it: no NUL, integers that fit a bigint.

PostgreSQL `text` cannot hold U+0000 and `bigint` stops at 2**63 - 1; a parameter that breaks
either reached the database as a 500 (`CharacterNotInRepertoireError`, an int overflow). One
middleware checks every route's path and query parameters instead of each handler its own:
- a NUL anywhere in the path or the query string (names and values) → 400;
- an integer path parameter outside bigint → 404 (no such resource can exist);
- an integer query parameter outside bigint → 400.
Request bodies are the handlers' (their Structs refuse control characters and bound integers).
Webhook routes opt out (`opt={VERBATIM: True}`): a gateway's delivery is judged verbatim by its
adapter, which gives the gateway its own rejection answer (service.ingest).
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin
from urllib.parse import parse_qsl

from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from service.db import BIGINT_MAX, BIGINT_MIN
from service.problems import InvalidRequestError, NotFoundError

VERBATIM = "verbatim_input"  # handler opt: this route takes its input as sent (webhooks)


def _int_query_names(handler: HTTPRouteHandler) -> frozenset[str]:
    """Names of the handler's query parameters typed int (or int | None)."""
    names: set[str] = set()
    path_names = _path_names(handler)
    for name, field in handler.parsed_fn_signature.parameters.items():
        if name in path_names or not _is_int(field.annotation):
            continue
        alias = getattr(field.kwarg_definition, "query", None)
        names.add(alias or name)
    return frozenset(names)


def _path_names(handler: HTTPRouteHandler) -> set[str]:
    return {part[1:].split(":")[0] for path in handler.paths for part in path.split("/") if part.startswith("{")}


def _is_int(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_int(arg) for arg in get_args(annotation) if arg is not type(None))
    if origin is not None and hasattr(annotation, "__metadata__"):  # Annotated[int, …]
        return _is_int(get_args(annotation)[0])
    return isinstance(annotation, type) and issubclass(annotation, int) and not issubclass(annotation, bool)


_int_names_cache: dict[int, frozenset[str]] = {}


def check_url(scope: Scope) -> None:
    """Raise the problem a request's path or query string deserves, if any."""
    for name, value in (scope.get("path_params") or {}).items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequestError(f"path parameter {name!r} contains a NUL character", field=name, source="path")
        if isinstance(value, int) and not isinstance(value, bool) and not BIGINT_MIN <= value <= BIGINT_MAX:
            raise NotFoundError(f"no resource has {name} {value}: ids are 64-bit integers", field=name)
    if "\x00" in scope.get("path", ""):
        raise InvalidRequestError("the path contains a NUL character", source="path")
    raw = scope.get("query_string", b"")
    if not raw:
        return
    query = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    handler = scope.get("route_handler")
    ints: frozenset[str] = frozenset()
    if isinstance(handler, HTTPRouteHandler):
        if (cached := _int_names_cache.get(id(handler))) is None:
            cached = _int_names_cache[id(handler)] = _int_query_names(handler)
        ints = cached
    for name, value in query:
        if "\x00" in name or "\x00" in value:
            field = name.replace("\x00", "\\x00")[:64]
            raise InvalidRequestError(
                f"query parameter {field!r} contains a NUL character", field=field, source="query"
            )
        if name in ints and _out_of_range(value):
            raise InvalidRequestError(f"query parameter {name!r} must be a 64-bit integer", field=name, source="query")


def _out_of_range(value: str) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False  # not a number at all: the handler's own validation answers that
    return not BIGINT_MIN <= number <= BIGINT_MAX


class InputGuard(ASGIMiddleware):
    """Runs `check_url` on every HTTP request to a route that does not take its input verbatim."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = VERBATIM

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        check_url(scope)
        await next_app(scope, receive, send)
