"""Keyset pages, the one way every list pages: an opaque cursor naming where a page ended, and the cut.

A list query asks for `limit + 1` rows after the cursor's position, in its index order; `cut`
keeps `limit` of them and, when more follow, gives the cursor of the last one kept. A cursor is
that row's (time, key) as base64 of its JSON: a page costs the same at any depth, and a cursor
of a list keyed by text is refused by one keyed by id. Lists ordered by id alone carry the row's
time too, so every list has one cursor shape.

Every /v1 list pages this way (orders, anomalies, quarantined events, rejected deliveries,
reconciliation runs and findings, webhook deliveries); the API answers a CursorError with a 400
naming `cursor` (service/problems.py), the ops console with a first page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import msgspec

from service.db import BIGINT_MAX, BIGINT_MIN

T = TypeVar("T")
K = TypeVar("K", str, int)


class CursorError(ValueError):
    """A pagination cursor we did not issue (or from another list)."""


def encode_cursor(*position: object) -> str:
    """The cursor of a page that ended at `position`: (time, key) for every list this API gives out."""
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None, key_type: type[K]) -> tuple[datetime | None, K | None]:
    """The (time, key) a page ended at, or (None, None) for the first page; raises CursorError
    for a cursor we did not issue, or one of a list whose key is not a `key_type`."""
    if not cursor:
        return None, None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = msgspec.json.decode(raw, type=tuple[datetime, str | int])
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise CursorError("cursor is not one this API issued") from exc
    if at.tzinfo is None or not isinstance(key, key_type) or not _storable(key):
        raise CursorError("cursor is not one this API issued")
    try:
        return at.astimezone(UTC), key
    except OverflowError:  # an offset past year 1 or 9999: not a time this API wrote
        raise CursorError("cursor is not one this API issued") from None


def _storable(key: str | int) -> bool:
    """A key PostgreSQL can compare: text without NUL, an id within bigint (else it is a 500 there)."""
    return "\x00" not in key if isinstance(key, str) else BIGINT_MIN <= key <= BIGINT_MAX


def cut(items: Sequence[T], limit: int, key: Callable[[T], tuple[datetime, str | int]]) -> tuple[list[T], str | None]:
    """The first `limit` of `items` (a query that asked for `limit + 1`), and the cursor after them if more follow."""
    page = list(items[:limit])
    return page, encode_cursor(*key(page[-1])) if len(items) > limit else None
