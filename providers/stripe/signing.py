"""The Stripe-Signature scheme: parse the header, compute HMAC-SHA256, compare, check the age.

Pure functions, as in stripe-python's `_webhook.py` (reference/stripe.md §2). The signed message
is `b"{t}." + raw body bytes`: a body re-serialized by any JSON parser no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import NamedTuple

from providers.errors import MalformedError, ReplayError, SignatureError

SCHEME = "v1"  # v0 (test-mode decoy) and unknown schemes are ignored: downgrade protection
_TIMESTAMP = re.compile(r"[0-9]{1,15}")  # ASCII digits only; int() would also take "١٢" or "1_0"


class SignatureHeader(NamedTuple):
    timestamp: int
    signatures: list[str]  # every v1 value, in header order
    schemes: list[str]  # every scheme seen, for error messages


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `{t}.{body}` keyed by the whsec_ string itself (not base64-decoded)."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def parse_header(header: str) -> SignatureHeader:
    timestamp: int | None = None
    signatures: list[str] = []
    schemes: list[str] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            continue
        if key == "t":
            if timestamp is None:  # the first t wins, like the libraries
                if not _TIMESTAMP.fullmatch(value):
                    raise MalformedError(f"Stripe-Signature t={value[:20]!r} is not a unix timestamp")
                timestamp = int(value)
            continue
        schemes.append(key)
        if key == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise MalformedError("Stripe-Signature has no t=<unix seconds> item; expected 't=…,v1=…'")
    return SignatureHeader(timestamp, signatures, schemes)


def verify_header(header: str, body: bytes, secrets: Sequence[str], *, now: float, tolerance: int) -> int:
    """Check one delivery; returns its signed timestamp.

    Order as in the libraries: signature first, then age. A `t` in the future is accepted
    (stripe-python and stripe-node only reject age > tolerance; vector stripe-12).
    """
    parsed = parse_header(header)
    if not parsed.signatures:
        seen = ", ".join(sorted(set(parsed.schemes))) or "none"
        raise SignatureError(f"Stripe-Signature has no {SCHEME} signature (schemes present: {seen}); only v1 counts")
    # compare bytes: compare_digest refuses non-ASCII str, and a header may carry anything
    candidates = [s.encode("utf-8", "replace") for s in parsed.signatures]
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, parsed.timestamp, body).encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)  # no early exit: constant work per delivery
    if not matched:
        raise SignatureError(
            f"no v1 signature matched any of {len(secrets)} secret(s); is PAYRECON_GATEWAYS' webhook_secrets "
            "current (test vs live, CLI vs dashboard)? The signature covers the raw body bytes: a body "
            "re-serialized by a JSON parser never matches"
        )
    age = now - parsed.timestamp
    if age > tolerance:
        raise ReplayError(
            f"Stripe-Signature timestamp {parsed.timestamp} is {age:.0f} s old, more than the {tolerance} s "
            "tolerance: a replay, or this server's clock is off (keep it on NTP)"
        )
    return parsed.timestamp
