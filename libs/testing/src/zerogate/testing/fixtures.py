"""Pytest fixtures for the real servers, registered by the root ``conftest.py``.

``nats_url`` and ``database_url`` are session-scoped: one nats-server and one
Postgres cluster per test run (started by :mod:`zerogate.common.servers`, the
same starter ``make dev`` uses), each test run in its own directory under
``.zerogate/test-<pid>``. Set ``ZG_TEST_NATS_URL`` or ``ZG_TEST_DATABASE_URL``
to use servers that are already running instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from zerogate.common.bus import Bus
from zerogate.common.servers import NatsServer, PostgresServer


def _state_root(config: pytest.Config) -> Path:
    return Path(config.rootpath) / ".zerogate" / f"test-{os.getpid()}"


@pytest.fixture(scope="session")
def zg_state_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    root = _state_root(request.config)
    root.mkdir(parents=True, exist_ok=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_server(zg_state_dir: Path) -> Iterator[NatsServer | None]:
    if os.environ.get("ZG_TEST_NATS_URL"):
        yield None
        return
    with NatsServer(zg_state_dir / "nats") as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer | None) -> str:
    if nats_server is None:
        return os.environ["ZG_TEST_NATS_URL"]
    return nats_server.url


@pytest.fixture(scope="session")
def postgres_server(zg_state_dir: Path) -> Iterator[PostgresServer | None]:
    if os.environ.get("ZG_TEST_DATABASE_URL"):
        yield None
        return
    server = PostgresServer(zg_state_dir / "pg")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove_data()  # may live outside zg_state_dir (see PostgresServer)


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresServer | None) -> str:
    """A fresh, empty database for this test session."""
    if postgres_server is None:
        return os.environ["ZG_TEST_DATABASE_URL"]
    return postgres_server.create_database(f"zg_test_{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    b = await Bus.connect(nats_url, name=f"test-{uuid.uuid4().hex[:6]}")
    try:
        yield b
    finally:
        await b.close()
