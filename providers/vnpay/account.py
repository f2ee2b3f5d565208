"""A VNPay terminal as configured in PAYRECON_GATEWAYS (`[[vnpay]]`)."""

from __future__ import annotations

from providers.base import GatewayAccount
from providers.vnpay.wire import DEFAULT_API_BASE


class Account(GatewayAccount, kw_only=True, forbid_unknown_fields=True):
    """One terminal: `vnp_TmnCode` and its `vnp_HashSecret`s.

    Any listed secret verifies an IPN (rotation); outgoing querydr requests are signed with
    the first. `hash_secret` (one string, as in DESIGN.md §7) is accepted as a shorthand.
    """

    tmn_code: str
    hash_secrets: list[str] = []
    hash_secret: str | None = None
    server_ip: str = "127.0.0.1"  # vnp_IpAddr of our querydr calls
    api_base: str = DEFAULT_API_BASE  # querydr is POST {api_base}/merchant_webapi/api/transaction

    def __post_init__(self) -> None:
        if self.hash_secret is not None:
            if self.hash_secrets:
                raise ValueError("give either hash_secrets (a list, first one signs) or hash_secret, not both")
            self.hash_secrets = [self.hash_secret]
            self.hash_secret = None
        if not self.hash_secrets or not all(self.hash_secrets):
            raise ValueError(f"vnpay account {self.account!r} needs at least one non-empty hash secret")
        if not self.tmn_code:
            raise ValueError(f"vnpay account {self.account!r} needs its tmn_code (vnp_TmnCode)")
