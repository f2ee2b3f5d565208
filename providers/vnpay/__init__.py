"""VNPay (Vietnam, PAY 2.1.0): IPN verification and parsing, querydr status queries, a simulator.

`GATEWAY` is what the `payrecon.gateways` entry point loads; `sim/` stands in for VNPay in tests
and the demo (the only code here that imports litestar, loaded when the simulator is made).
"""

from providers.gateway import Gateway, simulator_at
from providers.vnpay.account import Account
from providers.vnpay.adapter import ORDER_RULES, Adapter
from providers.vnpay.status import StatusClient

SIMULATOR = simulator_at("providers.vnpay.sim.simulator:Simulator")  # imported when first called
GATEWAY = Gateway("vnpay", Account, Adapter, StatusClient, SIMULATOR, order_rules=ORDER_RULES)

__all__ = ["GATEWAY", "Account", "Adapter", "StatusClient"]
