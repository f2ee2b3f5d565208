"""Real PostgreSQL and Redis for every test, isolated per test: the fixtures of `service.testing`.

That plugin (`pool`, `settings`, `database_url`, `redis_url`, `server_urls`, `template_database`)
is the same one gateway packages load (examples/payrecon-zalopay/tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import settings as hypothesis_settings

pytest_plugins = ["service.testing"]

REPO = Path(__file__).resolve().parent.parent

# CI explores the same examples every run: a red CI then means a change broke something, never
# that the dice found an old bug. Developers' runs keep exploring new examples.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "default")
