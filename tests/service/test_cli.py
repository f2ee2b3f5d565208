"""The CLI's own pieces: what `payrecon simulate` prints is a gateway file payrecon loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import gateway_table
from service.gateways import load_gateways
from service.settings import SettingsError
from tests.gateways import GATEWAYS, simulator


def test_simulator_tables_make_a_loadable_gateway_file(tmp_path: Path) -> None:
    text = "\n".join(
        gateway_table(name, simulator(name).gateway_config(f"http://127.0.0.1:{9000 + i}"))
        for i, name in enumerate(GATEWAYS)
    )
    path = tmp_path / "gateways.toml"
    path.write_text(text)
    adapters = load_gateways(str(path))
    assert sorted(adapters) == sorted(GATEWAYS)
    assert all(adapter.name == name for name, adapter in adapters.items())


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[paypal]]\naccount = "default"\napi_base = "x"\n', "names gateway [[paypal]]"),
        ('[[momo]]\naccount = "default"\napi_base = "x"\n', "[[momo]]"),
        ("not toml at all [", "is not a TOML file"),
    ],
)
def test_bad_gateway_file_is_a_settings_error(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "gateways.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_gateways(str(path))


def test_missing_gateway_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_gateways(str(tmp_path / "nope.toml"))


def test_a_command_that_fails_to_import_is_not_silently_dropped(tmp_path: Path) -> None:
    """A `payrecon.commands` entry point that cannot load is a broken install: the CLI says so."""
    dist = tmp_path / "payrecon_broken_plugin-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: payrecon-broken-plugin\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[payrecon.commands]\nbroken = payrecon_no_such_module:command\n")
    result = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "--help"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "payrecon_no_such_module" in result.stderr
