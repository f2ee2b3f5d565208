"""ZaloPay (Vietnam e-wallet, API v2) for payrecon, as a plugin package.

`Adapter` is registered as the `zalopay` entry point of `payrecon.providers`; the account
settings live in `account.py`, wire formats in `wire.py`, macs in `signing.py`, the query
client and its code table in `status.py`, and a ZaloPay simulator in `sim/`.
"""

from payrecon_zalopay.account import Account
from payrecon_zalopay.adapter import Adapter

__all__ = ["Account", "Adapter"]
