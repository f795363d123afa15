"""Interop: our TURN client core over a real UDP socket, against our relay and coturn.

A test-only asyncio driver (:class:`Driver`, below) feeds the sans-IO
:class:`~zerogate.proto.turn.Allocation` from one UDP socket the way the agents'
shell will: STUN answers to :meth:`handle_datagram`, ChannelData and Data
indications to :meth:`decapsulate`, then it drains transmits and events and
re-arms one timer. Both servers run on loopback with loopback peers allowed and
grant at most :data:`LIFETIME` seconds, so the core refreshes every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from zerogate.proto.turn import (
    Allocated,
    Allocation,
    AllocationClosed,
    AllocationEvent,
    AllocationState,
    ChannelBound,
    rest_api_credentials,
)
from zerogate.testing.turn import Coturn, RelayProcess

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed"),
]

SECRET = "turn-client-interop-secret"
LIFETIME = 6  # seconds the servers grant at most: the core refreshes at half of it
CHANNEL_DATA_HEADER = 4  # RFC 8656 §12.4; no padding over UDP (§12.5)
STEP_TIMEOUT = 5.0


class Driver:
    """Moves one Allocation's datagrams over a real UDP socket (test-only shell)."""

    def __init__(self, server: tuple[str, int], username: str, password: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.core = Allocation(server, username, password, now=self.loop.time())
        self.events: asyncio.Queue[AllocationEvent] = asyncio.Queue()
        self.received: asyncio.Queue[tuple[tuple[str, int], bytes]] = asyncio.Queue()
        self.requests: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.flush()

    def _readable(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            if not self.core.handle_datagram(data, source, self.loop.time()):
                unwrapped = self.core.decapsulate(data, source)
                if unwrapped is not None:
                    self.received.put_nowait(unwrapped)
        self.flush()

    def flush(self) -> None:
        while (tx := self.core.poll_transmit()) is not None:
            self.requests.append(tx.data[:2])
            self.sock.sendto(tx.data, tx.destination)
        while (event := self.core.poll_event()) is not None:
            self.events.put_nowait(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.core.poll_timeout()
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.core.handle_timeout(self.loop.time())
        self.flush()

    def send(self, peer: tuple[str, int], payload: bytes) -> bytes:
        framed = self.core.encapsulate(peer, payload)
        assert framed is not None
        self.sock.sendto(framed, self.core.server)
        return framed

    async def next_event(self, kind: type) -> AllocationEvent:
        while True:
            event = await asyncio.wait_for(self.events.get(), STEP_TIMEOUT)
            if isinstance(event, kind):
                return event

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


@pytest.fixture(params=["zerogate", "coturn"], scope="module")
def turn_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    if request.param == "zerogate":
        server: RelayProcess | Coturn = RelayProcess(
            secret=SECRET,
            allow_peers=("127.0.0.0/8",),
            extra_args=["--max-lifetime", str(LIFETIME), "--default-lifetime", str(LIFETIME)],
        )
    else:
        server = Coturn(secret=SECRET, extra_args=[f"--max-allocate-lifetime={LIFETIME}"])
    with server:
        yield server.host, server.port


@contextlib.asynccontextmanager
async def driver_for(server: tuple[str, int], user: str) -> AsyncIterator[Driver]:
    username, password = rest_api_credentials(SECRET.encode(), user, int(time.time()) + 600)
    driver = Driver(server, username, password)
    try:
        yield driver
    finally:
        driver.close()


async def _recv(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), STEP_TIMEOUT)
    return data, source[:2]


async def test_allocate_bind_exchange_and_refresh(turn_server: tuple[str, int]) -> None:
    async with driver_for(turn_server, "interop") as driver:
        allocated = await driver.next_event(Allocated)
        assert isinstance(allocated, Allocated)
        relayed = allocated.relayed[0]
        assert relayed[0] == "127.0.0.1"
        assert allocated.mapped == driver.sock.getsockname()
        assert allocated.lifetime == LIFETIME
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.setblocking(False)
            peer_addr = peer.getsockname()
            driver.core.bind_peer(peer_addr, driver.loop.time())
            driver.flush()
            bound = await driver.next_event(ChannelBound)
            assert isinstance(bound, ChannelBound)
            assert bound.peer == peer_addr
            # datagrams both ways through ChannelData, over three lifetimes of refreshes
            deadline = time.monotonic() + 3 * LIFETIME
            count = 0
            while time.monotonic() < deadline:
                payload = b"up %d" % count
                framed = driver.send(peer_addr, payload)
                assert len(framed) == CHANNEL_DATA_HEADER + len(payload)  # no padding
                assert framed[:2] == bound.channel.to_bytes(2, "big")
                assert await _recv(peer) == (payload, relayed)
                peer.sendto(b"down %d" % count, relayed)
                got = await asyncio.wait_for(driver.received.get(), STEP_TIMEOUT)
                assert got == (peer_addr, b"down %d" % count)
                count += 1
                await asyncio.sleep(0.1)
            assert count > 3 * LIFETIME  # ~10 exchanges a second, none lost
        assert driver.core.state is AllocationState.ALLOCATED
        refreshes = driver.requests.count(b"\x00\x04")  # Refresh request (RFC 8656 §17)
        assert refreshes >= 3  # every LIFETIME / 2 seconds, each a live allocation
        driver.core.close(driver.loop.time())
        driver.flush()
        assert isinstance(await driver.next_event(AllocationClosed), AllocationClosed)
        assert driver.core.state is AllocationState.CLOSED
