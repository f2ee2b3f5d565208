"""MoMo's signatures: HMAC-SHA256 over `key=value&…` strings, as exact field templates.

Every string is the listed keys in alphabetical order, values raw (never URL-encoded),
integers as plain decimal, `accessKey` from our config (reference/momo.md §2). Keys and
message are hashed as UTF-8, output is lower-case hex (§8.3: Vietnamese text is legal).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

IPN_FIELDS = (
    "accessKey",
    "amount",
    "extraData",
    "message",
    "orderId",
    "orderInfo",
    "orderType",
    "partnerCode",
    "payType",
    "requestId",
    "responseTime",
    "resultCode",
    "transId",
)
QUERY_FIELDS = ("accessKey", "orderId", "partnerCode", "requestId")
REFUND_FIELDS = ("accessKey", "amount", "description", "orderId", "partnerCode", "requestId", "transId")
CREATE_FIELDS = (
    "accessKey",
    "amount",
    "extraData",
    "ipnUrl",
    "orderId",
    "orderInfo",
    "partnerCode",
    "redirectUrl",
    "requestId",
    "requestType",
)


def raw_string(fields: Sequence[str], values: Mapping[str, object]) -> str:
    """`k1=v1&k2=v2…` for exactly `fields`; a missing or None value is the empty string."""
    parts = []
    for key in fields:
        value = values.get(key)
        parts.append(f"{key}={'' if value is None else value}")
    return "&".join(parts)


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def matches(secret: str, message: str, signature: str) -> bool:
    """Constant-time check of a received signature, hex compared lower-cased.

    Compared as bytes: `compare_digest` on `str` refuses non-ASCII, and a lone surrogate
    from a JSON escape must not crash UTF-8 encoding (it just does not match).
    """
    return hmac.compare_digest(
        sign(secret, message).encode("ascii"), signature.lower().encode("utf-8", "surrogatepass")
    )
