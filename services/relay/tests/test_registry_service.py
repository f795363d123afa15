"""The registry on a real nats-server: heartbeats in, offers and events out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zerogate.common import subjects
from zerogate.common.bus import Bus, RemoteError
from zerogate.common.errors import ConfigError
from zerogate.common.messages.relay import (
    RelayHeartbeat,
    RelayOffline,
    RelayOnline,
    RelaySelectReply,
    RelaySelectRequest,
)
from zerogate.common.servers import NatsServer
from zerogate.relay.geo import Geolocator
from zerogate.relay.registry_service import RegistryService, run

FRANKFURT = (50.11, 8.68)
VIRGINIA = (38.95, -77.45)
#: "one that misses three intervals is gone", restated.
MISSED = 3


def uid() -> str:
    return uuid.uuid4().hex[:8]


def heartbeat(relay_id: str, where, *, interval: float, ip: str, secret: str) -> RelayHeartbeat:
    return RelayHeartbeat(
        relay_id=relay_id,
        public_ipv4=[ip],
        public_ipv6=["2001:db8::" + ip.rsplit(".", 1)[1]],
        port=3478,
        realm="zerogate",
        lat=where[0],
        lon=where[1],
        load=0,
        auth_secret=secret,
        version="test",
        interval_s=interval,
        sent_at=datetime.now(UTC),
    )


def expected_password(secret: str, username: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()


class EventLog:
    """Collects relay events for a set of relay ids."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.online: asyncio.Queue[RelayOnline] = asyncio.Queue()
        self.offline: asyncio.Queue[RelayOffline] = asyncio.Queue()

    async def on_online(self, ev: RelayOnline) -> None:
        if ev.relay_id in self.wanted:
            await self.online.put(ev)

    async def on_offline(self, ev: RelayOffline) -> None:
        if ev.relay_id in self.wanted:
            await self.offline.put(ev)


@pytest.fixture
async def service(bus: Bus) -> AsyncIterator[RegistryService]:
    geo = Geolocator()
    geo.warm_up()  # load the country table now, not inside a timed test
    svc = RegistryService(geolocator=geo)
    await svc.start(bus)
    try:
        yield svc
    finally:
        await svc.stop()


async def test_select_events_and_expiry_end_to_end(service: RegistryService, nats_url: str):
    fra, iad = f"fra-{uid()}", f"iad-{uid()}"
    secrets = {fra: f"s-{uid()}", iad: f"s-{uid()}"}
    log = EventLog({fra, iad})
    relay_bus = await Bus.connect(nats_url, name=f"test-relays-{uid()}")
    watcher = await Bus.connect(nats_url, name=f"test-watch-{uid()}")
    try:
        await watcher.subscribe(subjects.event("relay", "online"), RelayOnline, log.on_online)
        await watcher.subscribe(subjects.event("relay", "offline"), RelayOffline, log.on_offline)
        await watcher.flush()

        # Long enough that a loaded CI machine does not miss three in a row.
        interval = 1.0
        await relay_bus.publish(
            subjects.RELAY_HEARTBEAT,
            heartbeat(fra, FRANKFURT, interval=interval, ip="203.0.113.10", secret=secrets[fra]),
        )
        keep_iad = True

        async def iad_beats() -> None:
            while keep_iad:
                await relay_bus.publish(
                    subjects.RELAY_HEARTBEAT,
                    heartbeat(
                        iad, VIRGINIA, interval=interval, ip="203.0.113.20", secret=secrets[iad]
                    ),
                )
                await asyncio.sleep(interval / 4)

        beating = asyncio.create_task(iad_beats())
        try:
            online = {(await asyncio.wait_for(log.online.get(), 5)).relay_id for _ in range(2)}
            assert online == {fra, iad}

            # Berlin gets Frankfurt first; credentials follow the TURN REST scheme.
            before = datetime.now(UTC)
            reply = await relay_bus.request(
                subjects.RELAY_SELECT,
                RelaySelectRequest(lat=52.52, lon=13.40, for_id="client-42", count=2),
                RelaySelectReply,
                timeout=2.0,
            )
            assert [o.relay_id for o in reply.offers][:2] == [fra, iad]
            first = reply.offers[0]
            assert [str(a) for a in first.addresses] == ["203.0.113.10:3478", "[2001:db8::10]:3478"]
            assert first.realm == "zerogate"
            expiry_text, for_id = first.username.split(":")
            assert for_id == "client-42"
            # Default TTL: 24 h (the relays' --max-credential-lifetime) less 5 min of
            # clock skew, so no relay refuses a fresh offer for living too long.
            ttl = timedelta(hours=24) - timedelta(minutes=5)
            assert (
                before + ttl - timedelta(seconds=2)
                <= datetime.fromtimestamp(int(expiry_text), UTC)
                <= datetime.now(UTC) + ttl
            )
            assert first.password.get_secret_value() == expected_password(
                secrets[fra], first.username
            )
            assert first.distance_km is not None
            assert 400 < first.distance_km < 450

            # New York by IP (offline country lookup: 8.8.8.8 is in the US) gets Virginia.
            expires = datetime.now(UTC) + timedelta(minutes=10)
            reply = await relay_bus.request(
                subjects.RELAY_SELECT,
                RelaySelectRequest(ip="8.8.8.8", for_id="gw-1", count=1, expires_at=expires),
                RelaySelectReply,
                timeout=2.0,
            )
            assert [o.relay_id for o in reply.offers] == [iad]
            assert reply.offers[0].expires_at == datetime.fromtimestamp(
                int(expires.timestamp()), UTC
            )

            # An expiry in the past is refused with a coded error.
            with pytest.raises(RemoteError) as err:
                await relay_bus.request(
                    subjects.RELAY_SELECT,
                    RelaySelectRequest(
                        for_id="gw-1", expires_at=datetime.now(UTC) - timedelta(seconds=5)
                    ),
                    RelaySelectReply,
                    timeout=2.0,
                )
            assert err.value.code == "bad_request"

            # Frankfurt stopped after one heartbeat: gone after three intervals.
            gone = await asyncio.wait_for(log.offline.get(), MISSED * interval + 5)
            assert gone.relay_id == fra
            assert gone.at - gone.last_seen >= timedelta(seconds=MISSED * interval * 0.9)
            reply = await relay_bus.request(
                subjects.RELAY_SELECT,
                RelaySelectRequest(lat=52.52, lon=13.40, for_id="client-42", count=2),
                RelaySelectReply,
                timeout=2.0,
            )
            assert fra not in [o.relay_id for o in reply.offers]
            assert reply.offers[0].relay_id == iad
            assert log.offline.empty()  # Virginia kept beating
        finally:
            keep_iad = False
            await beating
        gone = await asyncio.wait_for(log.offline.get(), MISSED * interval + 5)
        assert gone.relay_id == iad
    finally:
        await relay_bus.close()
        await watcher.close()


async def test_malformed_select_is_refused(service: RegistryService, bus: Bus):
    # A payload the model refuses: the requester gets a coded error, the service lives on.
    raw = await bus.nats.request(subjects.RELAY_SELECT, b'{"count": 0}', timeout=2.0)
    assert raw.headers is not None
    assert raw.headers.get("Zg-Error")
    reply = await bus.request(
        subjects.RELAY_SELECT, RelaySelectRequest(for_id="c"), RelaySelectReply, timeout=2.0
    )
    assert isinstance(reply.offers, list)


async def test_run_entry_point(nats_url: str):
    relay_id = f"run-{uid()}"
    task = asyncio.create_task(run(nats_url, name=f"test-registry-{uid()}"))
    client = await Bus.connect(nats_url, name=f"test-run-{uid()}")
    try:
        deadline = time.monotonic() + 10
        offers: list[str] = []
        while relay_id not in offers and time.monotonic() < deadline:
            assert not task.done(), task
            await client.publish(
                subjects.RELAY_HEARTBEAT,
                heartbeat(relay_id, FRANKFURT, interval=5.0, ip="203.0.113.30", secret="x"),
            )
            with contextlib.suppress(Exception):
                reply = await client.request(
                    subjects.RELAY_SELECT,
                    RelaySelectRequest(lat=50.0, lon=8.0, for_id="c", count=4),
                    RelaySelectReply,
                    timeout=1.0,
                )
                offers = [o.relay_id for o in reply.offers]
            await asyncio.sleep(0.1)
        assert relay_id in offers
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


async def test_state_survives_nats_restart(tmp_path: Path):
    """The bus is down longer than three heartbeat intervals; afterwards the
    registry still offers what it knew (missed-heartbeat counting restarts)."""
    store = tmp_path / f"nats-{os.getpid()}"
    server = NatsServer(store)
    await asyncio.to_thread(server.start)
    svc = RegistryService()
    reg_bus = relay_bus = None
    try:
        reg_bus = await Bus.connect(server.url, name=f"test-reg-{uid()}")
        relay_bus = await Bus.connect(server.url, name=f"test-relay-{uid()}")
        await svc.start(reg_bus)
        await reg_bus.flush()
        relay_id = f"fra-{uid()}"
        interval = 1.0
        seen = asyncio.Event()

        async def on_online(ev: RelayOnline) -> None:
            if ev.relay_id == relay_id:
                seen.set()

        await relay_bus.subscribe(subjects.event("relay", "online"), RelayOnline, on_online)
        await relay_bus.flush()
        await relay_bus.publish(
            subjects.RELAY_HEARTBEAT,
            heartbeat(relay_id, FRANKFURT, interval=interval, ip="203.0.113.40", secret="x"),
        )
        await relay_bus.flush()
        await asyncio.wait_for(seen.wait(), 10)
        assert relay_id in svc.registry

        await asyncio.to_thread(server.stop)
        await asyncio.sleep(MISSED * interval + 1.0)  # outage longer than three intervals
        assert relay_id in svc.registry  # nothing expires while the bus is down
        await asyncio.to_thread(server.start)  # same port, same store

        deadline = time.monotonic() + 15
        reply = None
        while reply is None and time.monotonic() < deadline:
            try:
                reply = await relay_bus.request(
                    subjects.RELAY_SELECT,
                    RelaySelectRequest(lat=52.5, lon=13.4, for_id="c"),
                    RelaySelectReply,
                    timeout=0.5,
                )
            except Exception:
                await asyncio.sleep(0.2)
        assert reply is not None, "registry did not answer after the restart"
        assert [o.relay_id for o in reply.offers] == [relay_id]
    finally:
        await svc.stop()
        for b in (reg_bus, relay_bus):
            if b is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(b.close(), 5)
        await asyncio.to_thread(server.stop)


@pytest.mark.parametrize("ttl", [timedelta(hours=24), timedelta(days=30)])
def test_registry_refuses_a_ttl_the_relays_would_refuse(ttl: timedelta):
    """Issue 8 item 9: a relay refuses TURN REST usernames expiring more than its
    --max-credential-lifetime (24 h by default) ahead; the registry never mints them."""
    with pytest.raises(ConfigError):
        RegistryService(credential_ttl=ttl)
