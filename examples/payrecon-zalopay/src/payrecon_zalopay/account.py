"""A ZaloPay app as configured in PAYRECON_GATEWAYS (`[[zalopay]]`)."""

from __future__ import annotations

from typing import ClassVar

from providers.base import GatewayAccount


class Account(GatewayAccount, kw_only=True, forbid_unknown_fields=True):
    """One ZaloPay app (an `app_id` and its two keys), as a `[[zalopay]]` table of PAYRECON_GATEWAYS.

    ZaloPay gives every app two keys (NOTES.md §1): `key1` signs our requests (the query
    API), `key2` signs ZaloPay's callbacks to us. `key2s` lists every callback key that may
    still sign a callback (rotation: the new one first); a single `key2` is accepted too.
    """

    gateway: ClassVar[str] = "zalopay"
    credentials: ClassVar[tuple[str, ...]] = ("key1", "key2s")
    rotation: ClassVar[tuple[str, str | None] | None] = ("key2s", "key2")

    api_base: str = "https://sb-openapi.zalopay.vn"
    app_id: int
    key1: str
    key2s: list[str] = []
    key2: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.app_id <= 0:
            raise ValueError(f"[[zalopay]] account {self.account!r}: app_id must be ZaloPay's positive app id")
