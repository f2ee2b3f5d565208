"""The layers point one way (DESIGN.md §1): providers → nothing of ours; service → providers; reconciler → both.

The adapter check runs in a fresh interpreter whose import system refuses `service`,
`reconciler`, `litestar` and `asyncpg`, so an adapter that reached for any of them —
directly or through a helper module — fails to import there.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from providers.registry import gateways

REPO = Path(__file__).resolve().parent.parent
BLOCKED = ("service", "reconciler", "litestar", "asyncpg")

_PROBE = """
import importlib.abc, json, sys

BLOCKED = {blocked!r}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"layering: {{fullname}} may not be imported by an adapter")
        return None

sys.meta_path.insert(0, Refuse())

# The finder works: a blocked package really is unreachable.
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"probe broken: {{name}} imported despite the block")

from providers.registry import gateways

loaded = {{name: getattr(gateway.adapter, "__module__", "") for name, gateway in gateways().items()}}
print(json.dumps({{"adapters": loaded, "modules": sorted(sys.modules)}}))
"""


def test_adapters_import_without_service_framework_or_driver() -> None:
    probe = _PROBE.format(blocked=BLOCKED)
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(found["adapters"]) == set(gateways())
    assert {"stripe", "momo", "vnpay"} <= set(found["adapters"])
    # Loading the registry must not drag a simulator (the one code allowed litestar) along.
    simulators = [m for m in found["modules"] if ".sim" in m or m.startswith("litestar")]
    assert simulators == [], simulators


def test_the_core_names_no_gateway() -> None:
    # Issue 12: every place that needs a gateway asks the registry; none reaches into a gateway package.
    pattern = re.compile(r"import_module|providers\.(stripe|momo|vnpay)")
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for package in ("service", "reconciler")
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert found == []


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports: import statements, and import_module/__import__ of a constant."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.append((node.lineno, node.args[0].value))
    return names


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, name in _imports(path):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return found


def test_service_never_imports_reconciler() -> None:
    assert list((REPO / "service").rglob("*.py")), "no service sources found"
    assert _violations("service", ("reconciler",)) == []


@pytest.mark.parametrize("forbidden", ["service", "reconciler"])
def test_providers_never_import_upper_layers(forbidden: str) -> None:
    assert _violations("providers", (forbidden,)) == []


def test_the_static_check_sees_imports() -> None:
    # A check that cannot fail proves nothing: it must find the imports a real module has.
    seen = {name for _, name in _imports(REPO / "service" / "ingest.py")}
    assert {"asyncio", "service", "service.metrics", "providers.base"} <= seen
    assert _violations("service", ("providers",)) != []
