"""VNPay 2.1.0 signatures: the sorted query string of IPNs and pay URLs, the pipe strings of the JSON API.

Pure functions over strings; every HMAC is SHA-512 keyed with `vnp_HashSecret` (reference/vnpay.md §2).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote_plus

GMT7 = timezone(timedelta(hours=7), "GMT+7")
VNP_DATE_FORMAT = "%Y%m%d%H%M%S"  # yyyyMMddHHmmss, always GMT+7

# Parameters of a signed query string that are not themselves signed.
UNSIGNED_PARAMS = frozenset({"vnp_SecureHash", "vnp_SecureHashType"})

Encoder = Callable[[str], str]


def _python(value: str) -> str:
    return quote_plus(value)  # safe: letters, digits, "_.-~"; space → "+"


def _php(value: str) -> str:
    return quote_plus(value).replace("~", "%7E")  # PHP urlencode: safe "_.-"


def _java(value: str) -> str:
    return quote_plus(value, safe="*").replace("~", "%7E")  # Java URLEncoder: safe ".-*_"


def _dotnet(value: str) -> str:
    return quote_plus(value, safe="!*()").replace("~", "%7E")  # .NET WebUtility.UrlEncode: safe "-_.!*()"


def _node(value: str) -> str:
    return quote_plus(value, safe="!~*'()")  # encodeURIComponent with "+" for space: safe "-_.!~*'()"


# The encodings of VNPay's own samples. They agree except on `~ ! * ' ( )` (§2); which one
# VNPay's server uses is unconfirmed, so a receiver tries the others only when a value
# holds one of those characters. Every candidate is still HMAC-checked, and each is an
# injective form-encoding, so no candidate can make a different parameter set verify.
CANONICAL: Encoder = _python
FALLBACK_ENCODERS: tuple[Encoder, ...] = (_php, _java, _dotnet, _node)
DISPUTED_CHARS = frozenset("~!*'()")


def hmac_sha512(secret: str, message: str) -> str:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha512).hexdigest()


def signed_fields(params: Mapping[str, str]) -> dict[str, str]:
    """The parameters VNPay signs: `vnp_*` keys except the hash itself (vectors vnpay-02, vnpay-06)."""
    return {k: v for k, v in params.items() if k.startswith("vnp_") and k not in UNSIGNED_PARAMS}


def query_signing_string(params: Mapping[str, str], encode: Encoder = CANONICAL, *, skip_empty: bool = False) -> str:
    """`key=encode(value)` of the signed fields, sorted by key (byte order), joined by `&`."""
    fields = signed_fields(params)
    return "&".join(f"{key}={encode(fields[key])}" for key in sorted(fields) if not (skip_empty and fields[key] == ""))


def candidate_signing_strings(params: Mapping[str, str]) -> list[str]:
    """The canonical string first, then the documented fallbacks that differ from it (§2)."""
    fields = signed_fields(params)
    encoders: Sequence[Encoder] = (CANONICAL,)
    if any(DISPUTED_CHARS.intersection(value) for value in fields.values()):
        encoders = (CANONICAL, *FALLBACK_ENCODERS)
    empties = (False, True) if any(value == "" for value in fields.values()) else (False,)
    found: list[str] = []
    for skip_empty in empties:
        for encode in encoders:
            text = query_signing_string(fields, encode, skip_empty=skip_empty)
            if text not in found:
                found.append(text)
    return found


def pipe_string(values: Iterable[str]) -> str:
    """The JSON API's signed material: values in a fixed order, absent ones as "" (§2)."""
    return "|".join(values)


def sign_pipe(values: Iterable[str], secret: str) -> str:
    return hmac_sha512(secret, pipe_string(values))


def matches(expected_hex: str, given: str) -> bool:
    """Constant-time, case-insensitive hex comparison (vector vnpay-07); never raises."""
    return hmac.compare_digest(expected_hex.encode("ascii"), given.lower().encode("utf-8", "replace"))


def format_vnp_date(moment: datetime) -> str:
    """An aware datetime as VNPay writes it: `yyyyMMddHHmmss` in GMT+7."""
    return moment.astimezone(GMT7).strftime(VNP_DATE_FORMAT)


def parse_vnp_date(text: str) -> datetime:
    """`yyyyMMddHHmmss` (GMT+7) → aware UTC. Raises ValueError on anything else."""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError(f"expected 14 digits yyyyMMddHHmmss, got {text!r}")
    return datetime.strptime(text, VNP_DATE_FORMAT).replace(tzinfo=GMT7).astimezone(UTC)
