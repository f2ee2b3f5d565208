"""A simulated vnpay for tests and the demo (imports litestar; never loaded by the adapter)."""
