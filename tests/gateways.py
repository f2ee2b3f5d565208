"""The installed gateways' simulators and payrecon connected to them.

Tests, like the demo, run every gateway through its simulator (DESIGN.md §1): the same
credentials on both sides, the simulator's status API reached through `api_base`.
"""

from __future__ import annotations

from typing import Any

import httpx

from providers.gateway import Connected
from providers.registry import gateways
from providers.simkit import Faults, SimulatedGateway
from service.gateways import build_gateways

GATEWAYS = ("stripe", "momo", "vnpay")  # the built-in ones, which tests of specific behaviour name


def simulator(
    name: str, *, webhook_url: str | None = None, faults: Faults | None = None, client: httpx.AsyncClient | None = None
) -> SimulatedGateway:
    return gateways()[name].simulator(webhook_url=webhook_url, faults=faults, client=client)


def adapters_for(sims: dict[str, SimulatedGateway], api_bases: dict[str, str]) -> dict[str, Connected]:
    """Gateways holding the simulators' credentials, each pointed at `api_bases[name]`."""
    document: dict[str, list[dict[str, Any]]] = {
        name: [sim.gateway_config(api_bases[name])] for name, sim in sims.items()
    }
    return build_gateways(document, source="tests")


def sim_transport(sims: dict[str, SimulatedGateway]) -> httpx.AsyncBaseTransport:
    """One in-process transport routing http://<gateway>.sim/… to that simulator's ASGI app."""
    apps = {f"{name}.sim": httpx.ASGITransport(app=sim.asgi_app()) for name, sim in sims.items()}

    class Router(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await apps[request.url.host].handle_async_request(request)

    return Router()


def sim_api_bases(names: tuple[str, ...] = GATEWAYS) -> dict[str, str]:
    return {name: f"http://{name}.sim" for name in names}


def configured(names: tuple[str, ...] = GATEWAYS) -> dict[str, Connected]:
    """Adapters with each simulator's `default` account configured, as PAYRECON_GATEWAYS would give them."""
    return adapters_for({name: simulator(name) for name in names}, sim_api_bases(names))
