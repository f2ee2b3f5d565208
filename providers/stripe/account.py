"""The `[[stripe]]` account of PAYRECON_GATEWAYS: credentials and webhook/catch-up settings."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from providers.base import GatewayAccount

Positive = Annotated[int, msgspec.Meta(gt=0)]


class Account(GatewayAccount, kw_only=True, forbid_unknown_fields=True):
    """One Stripe account (one secret key, one webhook endpoint)."""

    gateway: ClassVar[str] = "stripe"
    # An empty webhook secret would let anyone sign with the empty key (issue 10.5).
    credentials: ClassVar[tuple[str, ...]] = ("api_key", "webhook_secrets")
    rotation: ClassVar[tuple[str, str | None]] = ("webhook_secrets", None)

    api_base: str = "https://api.stripe.com"
    api_key: str  # sk_live_… / sk_test_… (a restricted rk_… with read access to PaymentIntents and Events works)
    webhook_secrets: list[str]  # whsec_…, newest first; any one verifies
    # Replay window: reject when now − t > tolerance_s (library parity). Never 0: 0 would disable it.
    tolerance_s: Positive = 300
    order_id_metadata_key: str = "order_id"  # where our order id lives in PaymentIntent / Charge / Session metadata
    api_version: str | None = "2024-06-20"  # sent as Stripe-Version so latest_charge has the shape we read
    catch_up_overlap_s: Annotated[int, msgspec.Meta(ge=0)] = 600  # re-read this much before the cursor
    catch_up_horizon_s: Positive = 30 * 24 * 3600  # first catch-up: Stripe keeps events for 30 days
