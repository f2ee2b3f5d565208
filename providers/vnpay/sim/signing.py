"""How VNPay signs, written from VNPay's documentation and its Python sample, not from our verifier.

The sample (vnpay.py `get_payment_url` / `validate_response`) sorts the `vnp_*` parameters by
name (any other parameter is not signed), joins `key=quote_plus(value)` with `&`, and appends `vnp_SecureHash` = hex
HMAC-SHA512(vnp_HashSecret, that string). The merchant API (querydr, refund) signs its values
joined with `|` in a documented order. Kept apart from providers/vnpay/signing.py so a bug there
cannot be mirrored here.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone

VIETNAM = timezone(timedelta(hours=7))


def hmacsha512(key: str, data: str) -> str:
    return hmac.new(key.encode("utf-8"), data.encode("utf-8"), hashlib.sha512).hexdigest()


def _hash_data(params: Mapping[str, str]) -> str:
    # the sample signs the vnp_* parameters only, never the hash itself
    unsigned = ("vnp_SecureHash", "vnp_SecureHashType")
    signed = sorted((k, v) for k, v in params.items() if k.startswith("vnp_") and k not in unsigned)
    return "&".join(f"{key}={urllib.parse.quote_plus(str(value))}" for key, value in signed)


def sign_query(params: Mapping[str, str], secret: str) -> str:
    return hmacsha512(secret, _hash_data(params))


def signed_query_string(params: Mapping[str, str], secret: str) -> str:
    """The query string VNPay sends (IPN) or a shop builds (pay URL), `vnp_SecureHash` last."""
    return f"{_hash_data(params)}&vnp_SecureHash={sign_query(params, secret)}"


def build_pay_url(base: str, params: Mapping[str, str], secret: str) -> str:
    return f"{base}?{signed_query_string(params, secret)}"


def sign_pipe(values: Iterable[str], secret: str) -> str:
    """The merchant API's checksum: the documented fields' values joined with `|`."""
    return hmacsha512(secret, "|".join(values))


def same_checksum(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.lower().encode(), given.lower().encode("utf-8", "replace"))


def vnp_date(moment: datetime) -> str:
    """yyyyMMddHHmmss in Vietnam time (GMT+7), as every VNPay date field."""
    return moment.astimezone(VIETNAM).strftime("%Y%m%d%H%M%S")
