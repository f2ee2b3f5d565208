"""webhooks routes (being built)."""

routes: list[object] = []
