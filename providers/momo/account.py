"""A MoMo partner code as configured in PAYRECON_GATEWAYS (`[[momo]]`)."""

from __future__ import annotations

from providers.base import GatewayAccount


class Account(GatewayAccount, kw_only=True, forbid_unknown_fields=True):
    """One MoMo partner code, as a `[[momo]]` table of PAYRECON_GATEWAYS.

    `secret_keys` lists every secret that may have signed an IPN (rotation: the new one
    first, the old one until MoMo stops using it); outgoing requests are signed with the
    first. A single `secret_key` is accepted too, as in DESIGN.md §7 — not both.
    """

    api_base: str = "https://test-payment.momo.vn"
    partner_code: str
    access_key: str
    secret_keys: list[str] = []
    secret_key: str | None = None

    def __post_init__(self) -> None:
        if self.secret_key is not None and self.secret_keys:
            raise ValueError(f"momo account {self.account!r}: give secret_key or secret_keys, not both")
        if self.secret_key is not None:
            self.secret_keys = [self.secret_key]
        if not self.secret_keys or not all(self.secret_keys):
            raise ValueError(f"momo account {self.account!r}: secret_keys must list at least one non-empty secret")
        if not self.partner_code or not self.access_key:
            raise ValueError(f"momo account {self.account!r}: partner_code and access_key must not be empty")

    @property
    def signing_secret(self) -> str:
        return self.secret_keys[0]
