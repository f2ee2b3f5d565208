"""ZaloPay (Vietnam e-wallet, API v2) for payrecon, as a plugin package.

`GATEWAY` is what the `zalopay` entry point of `payrecon.gateways` loads: the account settings
(`account.py`), the callback adapter (`adapter.py`, with `wire.py` and `signing.py`), the query
client and its code table (`status.py`) and a ZaloPay simulator (`sim/`, imported only when a
simulator is asked for: it imports litestar).
"""

from payrecon_zalopay.account import Account
from payrecon_zalopay.adapter import Adapter
from payrecon_zalopay.status import StatusClient
from providers.acceptance import OrderRules
from providers.gateway import Gateway, simulator_at

GATEWAY = Gateway(
    name="zalopay",
    account=Account,
    adapter=Adapter,
    status=StatusClient,
    simulator=simulator_at("payrecon_zalopay.sim.simulator:Simulator"),
    # VND only (NOTES.md §2); ZaloPay's per-payment limits depend on the channel the customer
    # picks and are not published in one table, so any positive amount is accepted.
    order_rules=OrderRules(currencies=frozenset({"VND"})),
)

__all__ = ["GATEWAY", "Account", "Adapter", "StatusClient"]
