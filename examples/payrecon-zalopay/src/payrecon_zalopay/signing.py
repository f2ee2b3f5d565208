"""ZaloPay's macs: HMAC-SHA256, lower-case hex, over `|`-joined fields or the callback's `data`.

- callback: HMAC(key2, data) over the `data` string exactly as it arrived (NOTES.md §2);
- query: HMAC(key1, "app_id|app_trans_id|key1"): key1 is both the key and the last field (§4).
"""

from __future__ import annotations

import hashlib
import hmac


def mac(key: str, message: str) -> str:
    return hmac.new(key.encode("utf-8"), message.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def query_mac(key1: str, app_id: int, app_trans_id: str) -> str:
    return mac(key1, f"{app_id}|{app_trans_id}|{key1}")


def matches(key: str, message: str, received: str) -> bool:
    """Constant-time check of a received mac, compared as bytes (a non-ASCII mac just does not match)."""
    return hmac.compare_digest(mac(key, message).encode("ascii"), received.lower().encode("utf-8", "surrogatepass"))
