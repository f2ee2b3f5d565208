"""The demo's shop: it registers orders over the REST API, its customers pay through the simulators,
and it compares what the ledger says with what each gateway says.

Only the demo uses this module; it talks to payrecon exactly as an e-commerce backend would
(`POST /v1/orders` with an API key), and to the gateways through their simulators.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from datetime import datetime

import httpx
import msgspec
from rich.table import Table

from providers.base import PaymentStatus, StatusQuery
from providers.gateway import Connected
from providers.simkit import SimulatedGateway
from reconciler.verdict import agrees

S = PaymentStatus
PRICES = {"stripe": (1999, "USD"), "momo": (150_000, "VND"), "vnpay": (250_000, "VND")}
# What customers do, per gateway (VNPay and MoMo announce no refunds by webhook, so refunds go
# through Stripe, whose charge.refunded events the catch-up feed recovers when a webhook is lost).
OUTCOMES: dict[str, list[tuple[list[PaymentStatus], int]]] = {
    "stripe": [([S.SUCCEEDED], 5), ([S.FAILED], 2), ([S.CANCELED], 1), ([S.SUCCEEDED, S.REFUNDED], 2), ([], 1)],
    "momo": [([S.SUCCEEDED], 6), ([S.FAILED], 2), ([S.CANCELED], 2), ([], 1)],
    "vnpay": [([S.SUCCEEDED], 6), ([S.FAILED], 2), ([S.CANCELED], 2), ([], 1)],
}
# Any other installed gateway (a plugin): a VND wallet's customers, as for MoMo.
DEFAULT_PRICE = (150_000, "VND")
DEFAULT_OUTCOMES = OUTCOMES["momo"]


class ShopOrder(msgspec.Struct, kw_only=True):
    id: str
    gateway: str
    reference: str
    amount: int
    currency: str
    provider_data: dict[str, str]
    steps: list[PaymentStatus]


class Shop:
    def __init__(self, api: httpx.AsyncClient, sims: Mapping[str, SimulatedGateway], *, tag: str, seed: int) -> None:
        self.api = api
        self.sims = sims
        self.tag = tag
        self.rng = random.Random(seed)  # noqa: S311 - a demo's choices, not security
        self.orders: list[ShopOrder] = []

    async def register(self, per_gateway: int) -> None:
        """Customers check out: each gateway creates a payment, the shop registers the expected payment."""
        for gateway in self.sims:
            amount, currency = PRICES.get(gateway, DEFAULT_PRICE)
            choices, weights = zip(*OUTCOMES.get(gateway, DEFAULT_OUTCOMES), strict=True)
            for i in range(per_gateway):
                order_id = f"{self.tag}-{gateway}-{i + 1:02d}"
                # Our own PaymentIntent ids: a seeded simulator would repeat its ids in a reused database.
                reference = f"pi_3{self.tag}x{i + 1:04d}" if gateway == "stripe" else None
                payment = self.sims[gateway].create_payment(
                    order_id=order_id, amount=amount, currency=currency, reference=reference
                )
                steps = list(self.rng.choices(choices, weights)[0])
                order = ShopOrder(
                    id=order_id,
                    gateway=gateway,
                    reference=payment.reference,
                    amount=amount,
                    currency=currency,
                    provider_data=dict(payment.provider_data),
                    steps=steps,
                )
                body = {
                    "id": order.id,
                    "amount": amount,
                    "currency": currency,
                    "provider": gateway,
                    "reference": order.reference,
                    "provider_data": order.provider_data,
                    "metadata": {"demo": self.tag},
                }
                answer = await self.api.post("/v1/orders", json=body)
                if answer.status_code not in (200, 201):
                    raise RuntimeError(f"POST /v1/orders answered {answer.status_code}: {answer.text[:300]}")
                self.orders.append(order)

    async def pay(self) -> None:
        """The gateways move each payment; their webhooks go out through the fault knobs."""
        for order in self.orders:
            sim = self.sims[order.gateway]
            for step in order.steps:
                sim.set_status(order.reference, step)
        await asyncio.gather(*(sim.dispatcher.drain() for sim in self.sims.values()))

    def dropped(self) -> int:
        return sum(len(sim.dispatcher.dropped) for sim in self.sims.values())

    def sent(self) -> int:
        return sum(len({d.notification for d in sim.dispatcher.deliveries}) for sim in self.sims.values())

    async def compare(
        self, gateways: Mapping[str, Connected], http: httpx.AsyncClient
    ) -> tuple[Table, list[tuple[str, str, str]]]:
        """Ledger (GET /v1/orders/{id}) against gateway (its status API), per order."""
        table = Table(title_justify="left")
        for column in ("gateway", "orders", "agree", "disagree"):
            table.add_column(column, justify="left" if column == "gateway" else "right")
        wrong: list[tuple[str, str, str]] = []
        per_gateway: dict[str, list[int]] = {}
        for order in self.orders:
            stored = (await self.api.get(f"/v1/orders/{order.id}")).json()
            ledger = stored["status"]
            query = StatusQuery(
                order_id=order.id,
                account="default",
                reference=order.reference,
                amount=order.amount,
                currency=order.currency,
                created_at=datetime.fromisoformat(stored["created_at"].replace("Z", "+00:00")),
                provider_data=order.provider_data,
            )
            event = await gateways[order.gateway].status.fetch_status(query, http)
            truth = "unknown" if event is None else event.status.value
            counts = per_gateway.setdefault(order.gateway, [0, 0])
            same = agrees(ledger, truth)
            counts[0 if same else 1] += 1
            if not same:
                wrong.append((order.id, ledger, truth))
        for gateway, (agree, disagree) in per_gateway.items():
            style = "bold red" if disagree else "green"
            table.add_row(gateway, str(agree + disagree), str(agree), f"[{style}]{disagree}[/]")
        return table, wrong
