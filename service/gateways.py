"""Connects the configured gateways from the PAYRECON_GATEWAYS TOML file.

Each `[[<gateway>]]` table is one account, decoded with the installed gateway's own account
Struct, so a typo in a credential name fails at start with the table and field named.
"""

from __future__ import annotations

from pathlib import Path
from types import GenericAlias
from typing import Any

import msgspec

from providers.base import GatewayAccount
from providers.gateway import Connected
from providers.http import DEFAULT_POLICY, RetryPolicy
from providers.registry import gateways
from service.settings import SettingsError


def load_gateways(path: str | None) -> dict[str, Connected]:
    """Gateway name → that gateway holding its accounts. No file → no gateways."""
    if path is None:
        return {}
    try:
        document = msgspec.toml.decode(Path(path).read_bytes(), type=dict[str, list[dict[str, Any]]])
    except OSError as exc:
        raise SettingsError(f"PAYRECON_GATEWAYS: cannot read {path}: {exc.strerror}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SettingsError(f"PAYRECON_GATEWAYS: {path} is not a TOML file of [[gateway]] tables: {exc}") from None
    return build_gateways(document, source=path)


def build_gateways(
    document: dict[str, list[dict[str, Any]]], *, source: str = "gateways", retry: RetryPolicy = DEFAULT_POLICY
) -> dict[str, Connected]:
    available = gateways()
    connected: dict[str, Connected] = {}
    for name, tables in document.items():
        gateway = available.get(name)
        if gateway is None:
            raise SettingsError(
                f"PAYRECON_GATEWAYS: {source} names gateway [[{name}]], installed are: {', '.join(sorted(available))}"
            )
        try:
            # list[gateway.account], built at run time: mypy takes no variable as a type
            accounts: list[GatewayAccount] = msgspec.convert(tables, GenericAlias(list, gateway.account))
        except msgspec.ValidationError as exc:
            raise SettingsError(f"PAYRECON_GATEWAYS: [[{name}]] in {source}: {exc}") from None
        names = [a.account for a in accounts]
        if len(set(names)) != len(names):
            raise SettingsError(f"PAYRECON_GATEWAYS: [[{name}]] in {source} lists an account twice: {names}")
        try:
            connected[name] = gateway.connect(accounts, retry=retry)
        except ValueError as exc:  # e.g. one partner code configured under two account names
            raise SettingsError(f"PAYRECON_GATEWAYS: [[{name}]] in {source}: {exc}") from None
    return connected
