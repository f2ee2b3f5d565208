"""What PostgreSQL can store of a verified event: NUL escaped, integers within bigint.

A gateway's JSON may carry `\\u0000` in any string (MoMo passes `extraData` through unsigned
checks; VNPay decodes `%00`). PostgreSQL refuses NUL in `text` and in `jsonb` strings, so such
an event could never be stored and its gateway would redeliver it forever. The ledger stores
the copy made here — every NUL spelled out as the six characters `\\u0000` — while `raw_body`
keeps the exact bytes the signature was over, so nothing is lost and a fixed reader can
re-parse the original.

Integers outside bigint cannot be stored at all: `UnstorableError`, a typed refusal raised
before the ledger is asked (the adapters bound their own fields at parse time; this catches
any adapter that does not).
"""

from __future__ import annotations

from typing import Any

import msgspec

from providers.base import PaymentEvent
from providers.errors import MalformedError
from service.db import BIGINT_MAX, BIGINT_MIN

NUL = "\x00"
NUL_SPELLED = "\\u0000"  # JSON's own spelling: what a reader of the stored copy recognises

_TEXT_FIELDS = (
    "provider",
    "dedupe_key",
    "account",
    "reference",
    "currency",
    "order_id",
    "provider_payment_id",
    "reason",
    "flag",
)
_encode = msgspec.json.Encoder().encode


class UnstorableError(MalformedError):
    """A verified event holds a value PostgreSQL cannot store (an amount beyond bigint)."""


def storable(event: PaymentEvent) -> PaymentEvent:
    """`event` as the ledger can store it: the same object when it already can."""
    for name in ("amount", "refunded_amount"):
        value = getattr(event, name)
        if value is not None and not BIGINT_MIN <= value <= BIGINT_MAX:
            raise UnstorableError(
                f"{event.provider} event {event.dedupe_key[:64]!r}: {name} {value} is beyond what payrecon stores "
                f"(a 64-bit integer of minor units); the raw delivery is kept for review"
            )
    changes: dict[str, Any] = {
        name: escape_text(value)
        for name in _TEXT_FIELDS
        if isinstance(value := getattr(event, name), str) and NUL in value
    }
    # JSON spells NUL `\u0000` and nothing else does: one scan of the encoding says whether to walk.
    if b"\\u0000" in _encode(event.payload):
        changes["payload"] = escape_json(event.payload)
    return msgspec.structs.replace(event, **changes) if changes else event


def escape_text(text: str) -> str:
    return text.replace(NUL, NUL_SPELLED)


def escape_json(value: Any) -> Any:
    """A copy of a decoded JSON value with NUL spelled out in every string, keys included."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_text(k) if isinstance(k, str) else k: escape_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_json(v) for v in value]
    return value
