"""Every credential field of every gateway refuses emptiness, in one line naming the account (issue 10.5)."""

from __future__ import annotations

from typing import Any

import pytest

from providers.registry import gateways
from service.gateways import build_gateways
from service.settings import SettingsError
from tests.gateways import simulator

EMPTY_TEXT = ["", "  "]
EMPTY_LISTS = [[], [""], ["whsec_ok", " "]]


def _cases() -> list[tuple[str, str, Any]]:
    cases = []
    for name, gateway in gateways().items():
        table = simulator(name).gateway_config("http://sim.test")
        for field in gateway.account.credentials:
            for empty in EMPTY_LISTS if isinstance(table.get(field), list) else EMPTY_TEXT:
                cases.append((name, field, empty))
    return cases


CASES = _cases()


def test_every_gateway_declares_its_credentials() -> None:
    for name, gateway in gateways().items():
        assert gateway.account.credentials, f"{name} declares no credential fields"
        assert gateway.account.gateway == name


@pytest.mark.parametrize(("name", "field", "empty"), CASES, ids=[f"{n}.{f}={e!r}" for n, f, e in CASES])
def test_empty_credential_is_refused_naming_the_account(name: str, field: str, empty: Any) -> None:
    table: dict[str, Any] = {**simulator(name).gateway_config("http://sim.test"), "account": "shop_eu"}
    table[field] = empty
    with pytest.raises(SettingsError) as refused:
        build_gateways({name: [table]}, source="gateways.toml")
    message = str(refused.value)
    assert "\n" not in message
    assert f"[[{name}]]" in message
    assert "'shop_eu'" in message
    assert field in message


def test_stripe_empty_webhook_secret_is_refused() -> None:
    # The review's case: webhook_secrets = [""] loaded, and anyone could sign with the empty key.
    table = {"account": "default", "api_key": "sk_test_x", "webhook_secrets": [""]}
    with pytest.raises(SettingsError, match=r"\[\[stripe\]\] account 'default': webhook_secrets must"):
        build_gateways({"stripe": [table]})


def test_the_simulators_own_tables_load() -> None:
    document = {name: [simulator(name).gateway_config("http://sim.test")] for name in gateways()}
    assert set(build_gateways(document)) == set(gateways())
