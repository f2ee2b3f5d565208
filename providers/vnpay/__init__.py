"""VNPay (Vietnam, PAY 2.1.0): IPN verification and parsing, querydr status queries, a simulator.

`Adapter` is what the `payrecon.providers` entry point loads; `simulator.Simulator` stands in
for VNPay in tests and the demo (the only module here that imports litestar).
"""

from providers.vnpay.account import Account
from providers.vnpay.adapter import Adapter

__all__ = ["Account", "Adapter"]
