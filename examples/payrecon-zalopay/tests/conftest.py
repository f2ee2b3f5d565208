"""Fixtures for the ZaloPay package's tests: payrecon's own real PostgreSQL and Redis fixtures.

These tests run inside the payrecon repository (the README's test command collects them),
so they reuse its per-test database fixtures rather than a copy of them.
"""

from __future__ import annotations

import pytest

pytest.importorskip("payrecon_zalopay", reason="install it: pip install -e examples/payrecon-zalopay")

from tests.conftest import database_url, pool, redis_url, server_urls, settings, template_database

__all__ = ["database_url", "pool", "redis_url", "server_urls", "settings", "template_database"]
