"""Fixtures for the ZaloPay package's tests: payrecon's own real PostgreSQL and Redis fixtures.

These tests run inside the payrecon repository (the README's test command installs the
package and collects them), so they reuse its per-test database fixtures, not a copy.
A venv made before the package joined dev.py's install skips them; CI never does.
"""

from __future__ import annotations

import importlib.util
import os

from tests.conftest import database_url, pool, redis_url, server_urls, settings, template_database

__all__ = ["database_url", "pool", "redis_url", "server_urls", "settings", "template_database"]

if importlib.util.find_spec("payrecon_zalopay") is None:
    if os.environ.get("CI"):
        raise RuntimeError("payrecon-zalopay is not installed: `python3 dev.py test` installs it (pip install -e)")
    collect_ignore_glob = ["test_*.py"]
