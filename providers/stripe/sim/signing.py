"""How Stripe signs a webhook, written from Stripe's documentation, not from our verifier.

"Stripe generates signatures using a hash-based message authentication code (HMAC) with SHA-256
… the signed_payload string is created by concatenating the timestamp (as a string), the
character `.`, and the actual JSON payload (the request body)." The header is
`t=<timestamp>,v1=<signature>[,v1=…]`, one v1 per active endpoint secret, plus a `v0` in test
mode. Kept apart from providers/stripe/signing.py so a bug there cannot be mirrored here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


def _hmac_sha256_hex(secret: str, signed_payload: bytes) -> str:
    return hmac.new(secret.encode(), signed_payload, hashlib.sha256).hexdigest()


def sign_header(body: bytes, secrets: Sequence[str], timestamp: int, *, v0_secret: str | None = None) -> str:
    """The Stripe-Signature header of a delivery of `body` at `timestamp`."""
    signed_payload = str(timestamp).encode() + b"." + body
    items = [f"t={timestamp}"]
    items += [f"v1={_hmac_sha256_hex(secret, signed_payload)}" for secret in secrets]
    if v0_secret is not None:
        items.append(f"v0={_hmac_sha256_hex(v0_secret, signed_payload)}")
    return ",".join(items)
