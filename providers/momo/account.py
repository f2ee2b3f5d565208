"""A MoMo partner code as configured in PAYRECON_GATEWAYS (`[[momo]]`)."""

from __future__ import annotations

from typing import ClassVar

from providers.base import GatewayAccount


class Account(GatewayAccount, kw_only=True, forbid_unknown_fields=True):
    """One MoMo partner code, as a `[[momo]]` table of PAYRECON_GATEWAYS.

    `secret_keys` lists every secret that may have signed an IPN (rotation: the new one
    first, the old one until MoMo stops using it); outgoing requests are signed with the
    first. A single `secret_key` is accepted too, as in DESIGN.md §7 — not both.
    """

    gateway: ClassVar[str] = "momo"
    credentials: ClassVar[tuple[str, ...]] = ("partner_code", "access_key", "secret_keys")
    rotation: ClassVar[tuple[str, str | None]] = ("secret_keys", "secret_key")

    api_base: str = "https://test-payment.momo.vn"
    partner_code: str
    access_key: str
    secret_keys: list[str] = []
    secret_key: str | None = None
