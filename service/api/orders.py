"""orders routes (being built)."""

routes: list[object] = []
