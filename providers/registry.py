"""Finds the installed gateways: every `Gateway` named under the `payrecon.gateways` entry-point group.

The built-in gateways register the same way a third-party package does
(`[project.entry-points."payrecon.gateways"]` in its pyproject), so the core never names one.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from providers.gateway import Gateway

ENTRY_POINT_GROUP = "payrecon.gateways"


class RegistryError(RuntimeError):
    """An installed package registers something that is not a usable gateway."""


@cache
def gateways() -> dict[str, Gateway]:
    """Gateway name → its `Gateway`, for every installed gateway (read once per process)."""
    found: dict[str, Gateway] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        gateway = ep.load()
        if not isinstance(gateway, Gateway):
            raise RegistryError(
                f"entry point {ep.name!r} = {ep.value!r} loads a {type(gateway).__name__}, expected a "
                "providers.gateway.Gateway"
            )
        if gateway.name != ep.name:
            raise RegistryError(f"entry point {ep.name!r} loads gateway named {gateway.name!r}; they must agree")
        found[ep.name] = gateway
    return dict(sorted(found.items()))


def gateway(name: str) -> Gateway:
    """The installed gateway `name`; KeyError naming the installed ones otherwise."""
    found = gateways()
    if name not in found:
        raise KeyError(f"no gateway {name!r} is installed; installed are: {', '.join(found) or 'none'}")
    return found[name]
