"""Fixtures shared by every test directory (real NATS, real Postgres, the bus)."""

pytest_plugins = ["zerogate.common.testing.fixtures"]
