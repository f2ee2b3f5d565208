"""Standard Webhooks signatures (standardwebhooks.com), in a few lines of our own.

A secret reads `whsec_<base64 of the key bytes>`. A message is signed over
`<webhook-id>.<webhook-timestamp>.<body>` with HMAC-SHA256; `webhook-signature` carries
`v1,<base64 signature>`, one per live secret, separated by spaces — so a shop verifying with
either secret during a rotation's overlap accepts the delivery. Tests verify these with the
reference `standardwebhooks` package, not with this code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (the spec's prefix, not a secret)
KEY_BYTES = 32  # the spec asks for 24 to 64 random bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64>` of one secret over one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (the timestamp is the attempt's own)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
        "user-agent": "payrecon-webhooks/1",
    }


def message_id(notification_id: int) -> str:
    """The `webhook-id` of a notification: the same on every attempt and redelivery (the shop's dedupe key)."""
    return f"msg_{notification_id}"
