"""Orders checked at the door: only what the reconciler can later check at the gateway is registered.

An order in `XYZ`, in USD on MoMo, of 0 VND, on an account PAYRECON_GATEWAYS does not configure,
or a VNPay order without the pay URL's `vnp_CreateDate` would be accepted and then fail in every
reconciliation run. Each is refused here with a 400 naming the field. The facts are the ISO 4217
table (`providers.currencies`) and each gateway's `order_rules` (part of its providers.gateway.Gateway).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from providers.currencies import format_amount, minor_units
from providers.gateway import Connected
from service.problems import FieldError, invalid_fields


def provider_errors(gateways: Mapping[str, Connected], provider: str, account: str) -> list[FieldError]:
    """The gateway and its account must be configured here, or the reconciler could never ask about it."""
    adapter = gateways.get(provider)
    if adapter is None:
        configured = ", ".join(sorted(gateways)) or "none"
        return [FieldError("provider", f"gateway {provider!r} is not configured here (configured: {configured})")]
    if account not in adapter.accounts:
        accounts = ", ".join(sorted(adapter.accounts))
        return [
            FieldError("account", f"{provider} has no account {account!r} in PAYRECON_GATEWAYS (accounts: {accounts})")
        ]
    return []


def currency_errors(currency: str) -> list[FieldError]:
    if minor_units(currency) is None:
        return [FieldError("currency", f"{currency!r} is not an ISO 4217 currency code")]
    return []


def payment_errors(
    adapter: Connected,
    amount: int,
    currency: str,
    *,
    currency_field: str = "currency",
    amount_field: str = "amount",
) -> list[FieldError]:
    """Whether this gateway takes this amount in this currency (amount > 0, its currencies, its limits)."""
    rules = adapter.order_rules
    if rules.currencies is not None and currency not in rules.currencies:
        takes = ", ".join(sorted(rules.currencies))
        return [FieldError(currency_field, f"{adapter.name} does not take {currency} (it takes {takes})")]
    if amount <= 0:
        return [FieldError(amount_field, "must be greater than 0 (minor units of the currency)")]
    limits = rules.limits_for(currency)
    if limits is not None and not limits.min <= amount <= limits.max:
        bound = "at least " + format_amount(limits.min, currency) if amount < limits.min else None
        bound = bound or "at most " + format_amount(limits.max, currency)
        return [FieldError(amount_field, f"{adapter.name} takes {bound} in one payment (got {amount})")]
    return []


def provider_data_errors(adapter: Connected, provider_data: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    for key, pattern in adapter.order_rules.required_provider_data.items():
        value = provider_data.get(key)
        field = f"provider_data.{key}"
        if value is None:
            errors.append(FieldError(field, f"{adapter.name} needs it to query the payment's status later"))
        elif not isinstance(value, str) or not re.fullmatch(pattern, value):
            errors.append(FieldError(field, f"must be a string matching {pattern} for {adapter.name}"))
    return errors


def check_order(
    gateways: Mapping[str, Connected],
    *,
    provider: str,
    account: str,
    amount: int,
    currency: str,
    provider_data: Mapping[str, Any],
) -> None:
    """Raise a 400 naming every field of a new order the gateway would refuse."""
    errors = currency_errors(currency) + provider_errors(gateways, provider, account)
    adapter = gateways.get(provider)
    if adapter is not None:
        if not errors:
            errors += payment_errors(adapter, amount, currency)
        errors += provider_data_errors(adapter, provider_data)
    elif amount <= 0:
        errors.append(FieldError("amount", "must be greater than 0 (minor units of the currency)"))
    if errors:
        raise invalid_fields(errors)


def check_reference(
    gateways: Mapping[str, Connected],
    *,
    provider: str,
    account: str,
    provider_data: Mapping[str, Any],
    order_amount: int,
    order_currency: str,
) -> None:
    """A new payment attempt (maybe at another gateway) must be one that gateway takes, for the order's money."""
    errors = provider_errors(gateways, provider, account)
    adapter = gateways.get(provider)
    if adapter is not None and not errors:
        errors += payment_errors(
            adapter, order_amount, order_currency, currency_field="provider", amount_field="provider"
        )
        errors += provider_data_errors(adapter, provider_data)
    if errors:
        raise invalid_fields(errors)
