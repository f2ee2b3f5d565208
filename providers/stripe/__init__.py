"""Stripe gateway: Stripe-Signature webhooks, PaymentIntent status queries, the Events catch-up feed.

`Adapter` is what the `payrecon.providers` entry point loads; `simulator.Simulator` is a fake
Stripe for tests and the demo (it alone imports litestar).
"""

from providers.stripe.adapter import Adapter
from providers.stripe.config import Account

__all__ = ["Account", "Adapter"]
