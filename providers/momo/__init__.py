"""MoMo (Vietnam e-wallet, AIO v2): signed JSON IPNs, 204 acknowledgements and the query API.

`GATEWAY` is registered as the `momo` entry point of `payrecon.gateways`; its wire formats and
resultCode table live in `wire.py`, signatures in `signing.py`, the status query client in
`status.py`, and a simulator of MoMo in `sim/` (tests and demo).
"""

from providers.gateway import Gateway, simulator_at
from providers.momo.account import Account
from providers.momo.adapter import ORDER_RULES, Adapter
from providers.momo.status import StatusClient

SIMULATOR = simulator_at("providers.momo.sim.simulator:Simulator")  # imported when first called
GATEWAY = Gateway("momo", Account, Adapter, StatusClient, SIMULATOR, order_rules=ORDER_RULES)

__all__ = ["GATEWAY", "Account", "Adapter", "StatusClient"]
