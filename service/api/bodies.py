"""Strict decoding of request bodies and query values into 400 problems that name the field.

litestar's own decoding is lax (it coerces "1" into 1), so our bodies are decoded here first,
strictly, and msgspec's message is split into the field path and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request

from service.model import MAX_JSON_BYTES
from service.problems import FieldError, InvalidRequestError, invalid
from service.since import parse_since

T = TypeVar("T")


def decode(body: bytes, type_: type[T]) -> T:
    """`body` as a `type_`, or a 400 naming the field at fault (`body` when the JSON itself is broken)."""
    try:
        return msgspec.json.decode(body, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        field = path.rstrip("`").lstrip(".") or _named_field(message) or "body"
        raise invalid(field, message) from None
    except msgspec.DecodeError as exc:
        # msgspec already says "JSON is malformed: …"; do not say it twice
        raise invalid("body", str(exc)) from None


def _named_field(message: str) -> str | None:
    # "Object contains unknown field `bogus`" / "Object missing required field `id`"
    return message.rsplit("`", 2)[1] if message.count("`") >= 2 and "field" in message else None


async def strict_body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    return decode(await request.body(), type_)


def strictly(type_: type[Any]) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A `before_request` hook: runs after the guards and before litestar's (lax) body decoding."""

    async def check(request: Request[Any, Any, Any]) -> None:
        await strict_body(request, type_)

    return check


def check_json_fields(**fields: dict[str, Any]) -> None:
    """Free-form JSON objects (metadata, provider_data): bounded in size, storable by PostgreSQL."""
    errors: list[FieldError] = []
    for key, value in fields.items():
        encoded = msgspec.json.encode(value)
        if len(encoded) > MAX_JSON_BYTES:
            errors.append(FieldError(key, f"at most {MAX_JSON_BYTES} bytes of JSON (got {len(encoded)})"))
        elif b"\\u0000" in encoded:  # PostgreSQL's jsonb cannot hold NUL characters
            errors.append(FieldError(key, "NUL characters are not allowed"))
    if errors:
        raise InvalidRequestError("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def as_utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def since_param(name: str, value: str | None) -> datetime | None:
    """A `since`-like query value in the CLI's forms: RFC 3339 / ISO 8601 (UTC without offset) or `90m`, `2d`."""
    try:
        return parse_since(value)
    except ValueError as exc:
        raise invalid(name, str(exc)) from None
