"""What a gateway accepts as an order: declared by each adapter, checked when an order is registered.

An order the gateway cannot take (USD on MoMo, 0 VND, a VNPay order without the pay URL's
`vnp_CreateDate`) would only fail later, in the reconciler; `service` refuses it at the door
with these facts. Amounts are minor units of the currency (`providers.currencies`).
"""

from __future__ import annotations

import msgspec


class AmountLimits(msgspec.Struct, frozen=True):
    """The smallest and largest single payment, in minor units of one currency."""

    min: int
    max: int


class OrderRules(msgspec.Struct, frozen=True, kw_only=True):
    """A gateway's acceptance rules. The defaults accept any ISO 4217 currency and any positive amount."""

    currencies: frozenset[str] | None = None  # None: any ISO 4217 currency
    limits: dict[str, AmountLimits] = {}  # per currency; a currency not listed has no known limits
    default_limits: AmountLimits | None = None  # for currencies not in `limits`
    # provider_data keys the gateway's status API needs later, and what each must look like (a regex)
    required_provider_data: dict[str, str] = {}

    def limits_for(self, currency: str) -> AmountLimits | None:
        return self.limits.get(currency, self.default_limits)
