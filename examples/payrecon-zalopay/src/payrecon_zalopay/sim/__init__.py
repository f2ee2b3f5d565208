"""A ZaloPay simulator for tests, benchmarks, the demo and `payrecon simulate zalopay`.

It is written from ZaloPay's documentation (NOTES.md), not from the adapter: it computes
its macs with code of its own, so the adapter's verification is checked by an independent
implementation. No adapter module imports this package.
"""

from payrecon_zalopay.sim.simulator import Simulator

__all__ = ["Simulator"]
