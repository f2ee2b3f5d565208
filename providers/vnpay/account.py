"""A VNPay terminal as configured in PAYRECON_GATEWAYS (`[[vnpay]]`)."""

from __future__ import annotations

from typing import ClassVar

from providers.base import GatewayAccount
from providers.vnpay.wire import DEFAULT_API_BASE


class Account(GatewayAccount, kw_only=True, forbid_unknown_fields=True):
    """One terminal: `vnp_TmnCode` and its `vnp_HashSecret`s.

    Any listed secret verifies an IPN (rotation); outgoing querydr requests are signed with
    the first. `hash_secret` (one string, as in DESIGN.md §7) is accepted as a shorthand.
    """

    gateway: ClassVar[str] = "vnpay"
    credentials: ClassVar[tuple[str, ...]] = ("tmn_code", "hash_secrets")
    rotation: ClassVar[tuple[str, str | None]] = ("hash_secrets", "hash_secret")

    tmn_code: str
    hash_secrets: list[str] = []
    hash_secret: str | None = None
    server_ip: str = "127.0.0.1"  # vnp_IpAddr of our querydr calls
    api_base: str = DEFAULT_API_BASE  # querydr is POST {api_base}/merchant_webapi/api/transaction
