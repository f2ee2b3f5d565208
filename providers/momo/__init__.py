"""MoMo (Vietnam e-wallet, AIO v2): signed JSON IPNs, 204 acknowledgements and the query API.

`Adapter` is registered as the `momo` entry point of `payrecon.providers`; its wire
formats and resultCode table live in `wire.py`, signatures in `signing.py`, the status
query client in `status.py`, and a simulator of MoMo in `simulator.py` (tests and demo).
"""

from providers.momo.account import Account
from providers.momo.adapter import Adapter

__all__ = ["Account", "Adapter"]
