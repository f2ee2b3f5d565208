"""A point in time as people type it: RFC 3339 / ISO 8601, or a duration back from now (`90m`, `2d`).

One parser for the CLI's `--since` and the API's `since` / `updated_since`, so both accept the same forms.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d{1,9})\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
FORMS = "an RFC 3339 time (2026-11-24T10:00:00Z; UTC when no offset is given) or a duration back from now (90m, 2d)"


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """The time `value` names, timezone-aware; None for None. Raises ValueError naming the accepted forms."""
    if value is None:
        return None
    text = value.strip()
    match = _DURATION.match(text)
    if match:
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:
            raise ValueError(f"{value[:40]!r} reaches back before year 1") from None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value[:40]!r} is neither {FORMS}") from None
    try:
        # in UTC: an offset can carry 0001-01-01 or 9999-12-31 past what PostgreSQL (and datetime) can hold
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{value[:40]!r} is out of range once taken to UTC") from None
