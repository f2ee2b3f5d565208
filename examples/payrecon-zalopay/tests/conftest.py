"""payrecon's real PostgreSQL and Redis fixtures (`pool`, `settings`…), from its pytest plugin."""

pytest_plugins = ["service.testing"]
