"""Finds gateway adapters through the `payrecon.providers` entry-point group.

The built-in gateways register the same way a third-party package would
(`[project.entry-points."payrecon.providers"]` in its pyproject), so the core
never names a gateway.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from providers.base import GatewayAdapter

ENTRY_POINT_GROUP = "payrecon.providers"


def adapter_classes() -> dict[str, type[GatewayAdapter]]:
    """Gateway name → adapter class, for every installed gateway."""
    found: dict[str, type[GatewayAdapter]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if cls.name != ep.name:
            raise RuntimeError(f"entry point {ep.name!r} loads adapter named {cls.name!r}; they must agree")
        found[ep.name] = cls
    return found
