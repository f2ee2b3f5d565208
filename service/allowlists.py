"""Source allowlists: the addresses each gateway account's webhooks may come from (`allowed_sources`).

Optional and off by default. Checked before any other work — before the body is even read — on
the client address (service/client_address.py), so a request from elsewhere costs almost nothing.
A URL that names an account (`/webhooks/momo/shop2`) is judged by that account's list; a URL
that does not (the account is only known from the signed body) by the union of the gateway's
lists, and an account without a list admits any address. An unknown account in the URL is left
to the adapter, which refuses it with its own reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.client_address import Network, parse_address, parse_networks, within
from service.settings import SettingsError


class Allowlists:
    """Per gateway, per account: the networks it admits, or None (an empty list) for any address."""

    def __init__(self, gateways: Mapping[str, object]) -> None:
        self.lists: dict[str, dict[str, tuple[Network, ...] | None]] = {}
        for name, adapter in gateways.items():
            per_account: dict[str, tuple[Network, ...] | None] = {}
            for account_name, account in getattr(adapter, "accounts", {}).items():  # a plugin may hold none
                sources = getattr(account, "allowed_sources", None)
                try:
                    per_account[account_name] = (
                        None if not sources else parse_networks(sources, setting="allowed_sources")
                    )
                except ValueError as exc:
                    raise SettingsError(f"PAYRECON_GATEWAYS: [[{name}]] account {account_name!r}: {exc}") from None
            self.lists[name] = per_account

    def admits(self, provider: str, account: str | None, address: str | None) -> bool:
        accounts = self.lists.get(provider, {})
        if account is not None:
            if account not in accounts:
                return True  # the adapter refuses an unknown account, naming it
            chosen = [accounts[account]]
        else:
            chosen = list(accounts.values())
        if not chosen or any(networks is None for networks in chosen):
            return True
        parsed = parse_address(address) if address else None
        return parsed is not None and any(within(parsed, networks) for networks in chosen if networks)
