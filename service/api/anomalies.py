"""anomalies routes (being built)."""

routes: list[object] = []
