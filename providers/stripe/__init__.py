"""Stripe gateway: Stripe-Signature webhooks, PaymentIntent status queries, the Events catch-up feed.

`GATEWAY` is what the `payrecon.gateways` entry point loads; `sim/` is a fake Stripe for tests
and the demo (the only code here that imports litestar, loaded when the simulator is made).
"""

from providers.gateway import Gateway, simulator_at
from providers.stripe.account import Account
from providers.stripe.adapter import ORDER_RULES, Adapter
from providers.stripe.status import EventsFeed, StatusClient

SIMULATOR = simulator_at("providers.stripe.sim.simulator:Simulator")  # imported when first called
GATEWAY = Gateway("stripe", Account, Adapter, StatusClient, SIMULATOR, order_rules=ORDER_RULES, events=EventsFeed)

__all__ = ["GATEWAY", "Account", "Adapter", "EventsFeed", "StatusClient"]
