"""The relay's heartbeat on a real NATS server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from zerogate.common import subjects
from zerogate.common.bus import Bus
from zerogate.common.messages.relay import RelayHeartbeat
from zerogate.common.servers import NatsServer
from zerogate.proto.turn import rest_api_credentials
from zerogate.relay.heartbeat import build_heartbeat
from zerogate.relay.service import RelayService
from zerogate.relay.settings import RelaySettings
from zerogate.testing.turn import TurnTestClient, eventually, free_port_range

SECRET = "heartbeat-secret"


def _settings(nats_url: str, **overrides: Any) -> RelaySettings:
    low, high = free_port_range(10)
    values: dict[str, Any] = {
        "relay_id": "relay-hb-test",
        "listen_ip": ["127.0.0.1"],
        "public_ip": ["127.0.0.1", "2001:db8::5"],
        "port": 0,
        "relay_ports": (low, high),
        "realm": "hb.test",
        "auth_secret": SECRET,
        "allow_peer": ["127.0.0.1/32"],
        "lat": 52.52,
        "lon": 13.40,
        "http_ip": "127.0.0.1",
        "http_port": 0,
        "nats_url": nats_url,
        "heartbeat_interval": 0.2,
    }
    values.update(overrides)
    return RelaySettings(**values)


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[RelayHeartbeat] = asyncio.Queue()

    async def __call__(self, msg: RelayHeartbeat) -> None:
        if msg.relay_id.startswith("relay-hb-"):
            self.queue.put_nowait(msg)

    async def next(self, timeout: float = 3.0) -> RelayHeartbeat:
        return await asyncio.wait_for(self.queue.get(), timeout)


@pytest.fixture
async def inbox(bus: Bus) -> AsyncIterator[Inbox]:
    box = Inbox()
    sub = await bus.subscribe(subjects.RELAY_HEARTBEAT, RelayHeartbeat, box)
    await bus.flush()
    yield box
    await sub.unsubscribe()


def test_build_heartbeat_fields() -> None:
    s = _settings("nats://127.0.0.1:4222")
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    hb = build_heartbeat(s, port=3478, load=7, auth_secret="abc", now=now)
    assert hb.relay_id == "relay-hb-test"
    assert hb.public_ipv4 == ["127.0.0.1"]
    assert hb.public_ipv6 == ["2001:db8::5"]
    assert (hb.port, hb.load, hb.lat, hb.lon) == (3478, 7, 52.52, 13.40)
    assert hb.auth_secret.get_secret_value() == "abc"
    assert hb.interval_s == 0.2
    assert hb.sent_at == now
    assert "abc" not in repr(hb)


async def test_heartbeat_on_the_bus_carries_state(nats_url: str, inbox: Inbox) -> None:
    service = RelayService(_settings(nats_url))
    await service.start()
    try:
        first = await inbox.next()
        assert first.relay_id == "relay-hb-test"
        assert first.public_ipv4 == ["127.0.0.1"]
        assert first.public_ipv6 == ["2001:db8::5"]
        assert first.port == service.port
        assert first.realm == "hb.test"
        assert (first.lat, first.lon) == (52.52, 13.40)
        assert first.auth_secret.get_secret_value() == SECRET
        assert first.load == 0
        assert first.version
        # load follows the allocations
        username, password = rest_api_credentials(SECRET.encode(), "load", int(time.time()) + 600)
        client = TurnTestClient(("127.0.0.1", service.port), username, password)
        try:
            await client.allocate()
            deadline = time.monotonic() + 3
            load = 0
            while load != 1 and time.monotonic() < deadline:
                load = (await inbox.next()).load
            assert load == 1
        finally:
            client.close()
        # about every interval (0.2 s): several within a second
        start = time.monotonic()
        for _ in range(3):
            await inbox.next()
        assert time.monotonic() - start < 2.0
    finally:
        await service.close()


async def test_bus_relay_without_secret_announces_a_generated_one(
    nats_url: str, inbox: Inbox
) -> None:
    service = RelayService(_settings(nats_url, auth_secret=None, relay_id="relay-hb-gen"))
    await service.start()
    try:
        hb = await inbox.next()
        secret = hb.auth_secret.get_secret_value()
        assert len(secret) >= 32
        # the announced secret is the one the relay checks credentials with
        username, password = rest_api_credentials(secret.encode(), "gen", int(time.time()) + 600)
        client = TurnTestClient(("127.0.0.1", service.port), username, password)
        try:
            relayed = await client.allocate()
            assert relayed[0] == "127.0.0.1"
        finally:
            client.close()
    finally:
        await service.close()


@pytest.mark.slow
async def test_heartbeat_resent_at_once_after_a_bus_reconnect(tmp_path: Path) -> None:
    """A relay with a long interval re-announces itself right after NATS comes back."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    service = None
    watcher = None
    try:
        service = RelayService(
            _settings(server.url, heartbeat_interval=600.0, relay_id="relay-hb-reconnect")
        )
        await service.start()
        await asyncio.sleep(0.3)
        assert service.heartbeat.sent == 1
        server.stop()
        await asyncio.sleep(0.5)
        server.start()  # same port
        # The re-announcement counts as sent once NATS accepted it after the reconnect
        # (long before the 600 s interval); a watcher then sees the relay's next beats.
        assert await eventually(lambda: service.heartbeat.sent >= 2, 10)
        assert service.heartbeat.sent == 2
        assert service.bus is not None
        assert service.bus.is_connected
        watcher = await Bus.connect(server.url, name="hb-watcher")
        box = Inbox()
        await watcher.subscribe(subjects.RELAY_HEARTBEAT, RelayHeartbeat, box)
        await watcher.flush()
        # and what it publishes after the reconnect reaches subscribers again
        hb = None
        for _ in range(10):
            await service.heartbeat.poke()
            try:
                hb = await box.next(timeout=0.5)
                break
            except TimeoutError:
                continue
        assert hb is not None
        assert hb.relay_id == "relay-hb-reconnect"
    finally:
        if watcher is not None:
            await watcher.close()
        if service is not None:
            await service.close()
        server.stop()


@pytest.mark.slow
async def test_relay_serves_while_the_bus_is_down_and_joins_when_it_comes(
    tmp_path: Path,
) -> None:
    # Start NATS once to learn a port of its own, then stop it: the relay
    # starts while the bus is down and joins when it comes back on that port.
    server = NatsServer(tmp_path / "nats")
    await asyncio.to_thread(server.start)
    server.stop()
    service = RelayService(_settings(server.url, relay_id="relay-hb-late"))
    await service.start()
    watcher = None
    try:
        # TURN works without the bus
        username, password = rest_api_credentials(SECRET.encode(), "late", int(time.time()) + 60)
        client = TurnTestClient(("127.0.0.1", service.port), username, password)
        try:
            assert (await client.allocate())[0] == "127.0.0.1"
        finally:
            client.close()
        healthy, text = service.health()
        assert healthy
        assert "bus down" in text
        assert "zerogate_relay_bus_connected 0" in service.metrics_text()
        assert service.heartbeat.sent == 0

        await asyncio.to_thread(server.start)
        assert await eventually(lambda: service.heartbeat.sent >= 1, 15)
        watcher = await Bus.connect(server.url, name="late-watcher")
        box = Inbox()
        await watcher.subscribe(subjects.RELAY_HEARTBEAT, RelayHeartbeat, box)
        await watcher.flush()
        hb = await box.next(timeout=5.0)
        assert hb.relay_id == "relay-hb-late"
        assert hb.load == 1
        assert "bus connected" in service.health()[1]
    finally:
        if watcher is not None:
            await watcher.close()
        await service.close()
        server.stop()
