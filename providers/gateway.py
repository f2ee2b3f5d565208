"""A gateway as payrecon knows it: one `Gateway` object, found through one entry point.

This is the whole extension point. A package that teaches payrecon a gateway builds one
`Gateway` and names it under the `payrecon.gateways` entry-point group:

    # pyproject.toml of payrecon-zalopay
    [project.entry-points."payrecon.gateways"]
    zalopay = "payrecon_zalopay:GATEWAY"

    # payrecon_zalopay/__init__.py
    GATEWAY = Gateway(
        name="zalopay",
        account=Account,            # a GatewayAccount subclass: one [[zalopay]] table of PAYRECON_GATEWAYS
        adapter=Adapter,            # Adapter(accounts): verify, parse, acknowledge, reject, retry_later
        status=StatusClient,        # StatusClient(accounts, clock=…, retry=…): fetch_status(query, client)
        simulator=simulator,        # simulator(webhook_url=..., faults=..., client=...) -> SimulatedGateway
        events=None,                # or an EventsFeed class, if the gateway lists its events (Stripe)
        order_rules=ORDER_RULES,    # currencies, amount limits, required provider_data (OrderRules)
    )

The core (app, worker, CLI `simulate`, demo, contract kit) never names a gateway: it asks
`providers.registry.gateways()` and calls `Gateway.connect(accounts)` for each configured one.
The built-in Stripe, MoMo and VNPay register exactly this way (payrecon's own pyproject).

The three roles are separate objects because they are used separately: the webhook endpoint
needs only the adapter, the reconciler only the status client and the events feed, tests and
the demo the simulator. The simulator factory imports its module (and litestar) only when
called, so loading the registry never drags a simulator into a production process.

A whole gateway as a package of its own, registered through its entry point and held to the
contract kit (`providers.testing.GatewayContract`), is `examples/payrecon-zalopay`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from providers.acceptance import OrderRules
from providers.base import Clock, GatewayAccount, GatewayAdapter, PaymentEvent, StatusQuery, index_accounts, utcnow
from providers.http import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:  # simkit imports litestar: only simulators may load it at run time
    from providers.simkit import SimulatedGateway


@runtime_checkable
class StatusClient(Protocol):
    """The gateway's status API: built as `status(accounts, clock=…, retry=…)`."""

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        """Ask about one payment attempt; None when the gateway does not know it.

        Raises GatewayUnavailableError (retry later) or GatewayRejectedError (a definite refusal).
        Events it returns carry `occurred_at` = the clock's now: an answer is news as of asking.
        """


@runtime_checkable
class EventsFeed(Protocol):
    """A gateway's list of past events (Stripe's /v1/events): built as `events(accounts, clock=…, retry=…)`."""

    async def catch_up(
        self, account: str, cursor: int | None, client: httpx.AsyncClient
    ) -> tuple[list[PaymentEvent], int | None]:
        """Events since `cursor` (an opaque integer the feed chose), oldest first, and the next cursor."""


SimulatorFactory = Callable[..., "SimulatedGateway"]


def simulator_at(path: str) -> SimulatorFactory:
    """A factory for the simulator class at `module:Name`, imported on the first call only.

    Simulators import litestar; loading the registry (every payrecon process) must not.
    """

    def make(**options: Any) -> SimulatedGateway:
        module, _, name = path.partition(":")
        simulator: SimulatedGateway = getattr(importlib.import_module(module), name)(**options)
        return simulator

    return make


@dataclass(frozen=True)
class Gateway:
    """Everything payrecon needs to know to use one gateway. Registered under `payrecon.gateways`."""

    name: str  # the [[name]] of PAYRECON_GATEWAYS, the {provider} of /webhooks/{provider}
    account: type[GatewayAccount]  # one [[name]] table decodes into this
    adapter: Callable[[Sequence[Any]], GatewayAdapter]
    status: Callable[..., StatusClient]  # called as status(accounts, clock=…, retry=…)
    simulator: SimulatorFactory  # called as simulator(webhook_url=…, faults=…, client=…)
    events: Callable[..., EventsFeed] | None = field(default=None, kw_only=True)  # events(accounts, clock=…, retry=…)
    # What it accepts as an order (currencies, amount limits, the provider_data its status API
    # needs), checked when an order is registered. The default accepts any currency and amount.
    order_rules: OrderRules = field(default_factory=OrderRules, kw_only=True)

    def connect(
        self, accounts: Sequence[GatewayAccount], *, clock: Clock = utcnow, retry: RetryPolicy = DEFAULT_POLICY
    ) -> Connected:
        """This gateway holding `accounts` (instances of `self.account`): what the core passes around.

        `clock` is the time status answers carry; `retry` bounds every call to the gateway's API.
        """
        for held in accounts:
            if not isinstance(held, self.account):
                raise TypeError(f"{self.name}: account {held!r} is not a {self.account.__name__}")
        return Connected(
            gateway=self,
            accounts=index_accounts(self.name, accounts),
            adapter=self.adapter(accounts),
            status=self.status(accounts, clock=clock, retry=retry),
            events=None if self.events is None else self.events(accounts, clock=clock, retry=retry),
        )


@dataclass(frozen=True, kw_only=True)
class Connected:
    """A gateway with its configured accounts: the adapter, status client and feed built for them."""

    gateway: Gateway
    accounts: Mapping[str, GatewayAccount] = field(repr=False)
    adapter: GatewayAdapter
    status: StatusClient
    events: EventsFeed | None = None

    @property
    def name(self) -> str:
        return self.gateway.name

    @property
    def order_rules(self) -> OrderRules:
        return self.gateway.order_rules
