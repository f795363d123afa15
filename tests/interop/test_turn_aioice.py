"""Interop: aioice's TURN client and ICE agent through our relay (``zerogate-relay`` process).

aioice sends Allocate (LIFETIME 600), Refresh at 5/6 of the granted lifetime,
CreatePermission and ChannelBind before its first datagram to a peer, ChannelBind
again every ``channel_refresh_time`` seconds, and ChannelData. Our relay grants
at most ``--max-lifetime 6`` seconds here, so aioice refreshes every 5 s and a
run of ~15-20 s real time covers several refreshes and channel re-binds; a
failed refresh makes aioice close the transport, which would stop the data.

A relay never relays to its own sockets (its listen port and relay port range
on its own addresses), so the two ICE agents use two relays, on 127.0.0.1 and
127.0.0.2: relayed candidates on one relay reach those on the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import cast

import pytest
from aioice import Connection, TransportPolicy
from aioice.turn import create_turn_endpoint

from zerogate.proto.turn import rest_api_credentials
from zerogate.testing.turn import RelayProcess

pytestmark = [pytest.mark.interop, pytest.mark.slow]

SECRET = "aioice-interop-secret"
MAX_LIFETIME = 6  # seconds the relay grants at most; aioice refreshes at 5/6 of it


def _short_lived_relay(host: str) -> RelayProcess:
    return RelayProcess(
        host=host,
        secret=SECRET,
        allow_peers=("127.0.0.0/8",),
        extra_args=["--max-lifetime", str(MAX_LIFETIME), "--default-lifetime", str(MAX_LIFETIME)],
    )


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    with _short_lived_relay("127.0.0.1") as process:
        yield process


@pytest.fixture(scope="module")
def other_relay() -> Iterator[RelayProcess]:
    with _short_lived_relay("127.0.0.2") as process:
        yield process


def _credentials(user: str) -> tuple[str, str]:
    return rest_api_credentials(SECRET.encode(), user, int(time.time()) + 3600)


async def _metrics(port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: relay\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    out = {}
    for line in raw.partition(b"\r\n\r\n")[2].decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _count(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == "aioice.turn" and text in r.getMessage())


async def test_two_ice_agents_exchange_data_only_through_the_relay(
    relay: RelayProcess, other_relay: RelayProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioice.turn")
    agents = []
    relays = (relay, other_relay)
    for controlling, user, server in ((True, "client", relay), (False, "gateway", other_relay)):
        username, password = _credentials(user)
        agents.append(
            Connection(
                ice_controlling=controlling,
                components=1,
                turn_server=(server.host, server.port),
                turn_username=username,
                turn_password=password,
                transport_policy=TransportPolicy.RELAY,
            )
        )
    a, b = agents
    try:
        await asyncio.wait_for(asyncio.gather(a.gather_candidates(), b.gather_candidates()), 10)
        for agent, server in zip(agents, relays, strict=True):
            assert agent.local_candidates
            assert all(c.type == "relay" for c in agent.local_candidates)
            assert all(c.host == server.host for c in agent.local_candidates)
        for src, dst in ((a, b), (b, a)):
            for candidate in src.local_candidates:
                await dst.add_remote_candidate(candidate)
            await dst.add_remote_candidate(None)
            dst.remote_username = src.local_username
            dst.remote_password = src.local_password
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 20)

        # ~16 s of traffic both ways: at least three refresh rounds at 5 s each
        deadline = time.monotonic() + 16
        i = 0
        while time.monotonic() < deadline:
            await a.send(b"ping %d" % i)
            assert await asyncio.wait_for(b.recv(), 5) == b"ping %d" % i
            await b.send(b"pong %d" % i)
            assert await asyncio.wait_for(a.recv(), 5) == b"pong %d" % i
            i += 1
            await asyncio.sleep(0.2)
        assert i > 20

        # two allocations, each refreshed at least three times, none failed
        assert _count(caplog, "TURN allocation refreshed") >= 6
        assert _count(caplog, "refresh failed") == 0
        for server in relays:  # each relay carried every datagram its agent sent and got
            metrics = await _metrics(server.http_port)
            assert metrics["zerogate_relay_allocations"] == 1
            assert metrics['zerogate_relay_relayed_packets_total{direction="to_peer"}'] >= i
            assert metrics['zerogate_relay_relayed_packets_total{direction="to_client"}'] >= i
    finally:
        await asyncio.gather(a.close(), b.close())


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sources: set[tuple[str, int]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sources.add(addr)
        assert self.transport is not None
        self.transport.sendto(data, addr)


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def test_turn_endpoint_rebinds_its_channel_and_keeps_relaying(
    relay: RelayProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioice.turn")
    loop = asyncio.get_running_loop()
    echo_transport, echo = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    peer = echo_transport.get_extra_info("sockname")[:2]
    username, password = _credentials("endpoint")
    transport, inbox = await create_turn_endpoint(
        _Inbox,
        server_addr=(relay.host, relay.port),
        username=username,
        password=password,
        lifetime=600,
        channel_refresh_time=3,
    )
    try:
        relayed = transport.get_extra_info("sockname")  # aioice: the relayed address
        deadline = time.monotonic() + 12
        i = 0
        while time.monotonic() < deadline:
            transport.sendto(b"msg %d" % i, peer)
            assert await asyncio.wait_for(inbox.queue.get(), 5) == b"msg %d" % i
            i += 1
            await asyncio.sleep(0.1)
        # the peer only ever saw the relayed address
        assert echo.sources == {tuple(relayed)}
        # bound once, then re-bound about every 3 s; allocation refreshed every 5 s
        assert _count(caplog, "TURN channel bound") >= 4
        assert _count(caplog, "TURN allocation refreshed") >= 2
        assert _count(caplog, "refresh failed") == 0
    finally:
        transport.close()
        echo_transport.close()
        await asyncio.sleep(0.1)


LONG_RUN_S = 185  # several minutes of real time, as the relay issue asks
LONG_LIFETIME_S = 60  # granted lifetime: aioice refreshes at 5/6 of it, every 50 s


async def test_refreshes_and_rebinds_hold_for_several_minutes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three minutes of relayed traffic: allocations refreshed, channels re-bound,
    permissions kept alive by the re-binds; nothing fails and nothing is lost."""
    caplog.set_level(logging.INFO, logger="aioice.turn")
    with RelayProcess(
        secret=SECRET,
        allow_peers=("127.0.0.0/8",),
        extra_args=[
            "--max-lifetime",
            str(LONG_LIFETIME_S),
            "--default-lifetime",
            str(LONG_LIFETIME_S),
        ],
    ) as relay:
        loop = asyncio.get_running_loop()
        echo_transport, _echo = await loop.create_datagram_endpoint(
            _Echo, local_addr=("127.0.0.1", 0)
        )
        peer = echo_transport.get_extra_info("sockname")[:2]
        username, password = _credentials("long-run")
        transport, inbox = await create_turn_endpoint(
            _Inbox,
            server_addr=(relay.host, relay.port),
            username=username,
            password=password,
            lifetime=600,
            channel_refresh_time=40,
        )
        try:
            deadline = time.monotonic() + LONG_RUN_S
            sent = 0
            while time.monotonic() < deadline:
                transport.sendto(b"long %d" % sent, peer)
                assert await asyncio.wait_for(inbox.queue.get(), 5) == b"long %d" % sent
                sent += 1
                await asyncio.sleep(0.5)
            assert sent > LONG_RUN_S  # one echo every half second, none missing
            # 185 s / 50 s: three refreshes; 185 s / 40 s: four re-binds after the first bind
            assert _count(caplog, "TURN allocation refreshed") >= 3
            assert _count(caplog, "TURN channel bound") >= 5
            assert _count(caplog, "refresh failed") == 0
            metrics = await _metrics(relay.http_port)
            assert metrics["zerogate_relay_allocations"] == 1
            assert metrics["zerogate_relay_channels"] == 1
        finally:
            transport.close()
            echo_transport.close()
            await asyncio.sleep(0.1)
