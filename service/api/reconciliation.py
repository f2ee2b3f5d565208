"""reconciliation routes (being built)."""

routes: list[object] = []
