"""Interop: our sans-IO ICE agent against aioice's ``Connection`` over loopback UDP.

aioice (0.13) as controlling nominates aggressively (USE-CANDIDATE on every
check); as controlled it accepts USE-CANDIDATE on any pair that succeeded, so
our renomination moves its data path too. Both sides must end up on one
nominated pair and carry a datagram each way: aioice with ``send``/``recv``, we
with a plain ``sendto`` on the selected pair.

aioice gathers a host candidate per interface and skips loopback; the tests
pin it to 127.0.0.1 so that everything stays on this machine. Every wait is
bounded (a few seconds); sockets bind port 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import aioice
import aioice.ice
import pytest

from zerogate.proto.ice import (
    FIELDS,
    Candidate,
    Event,
    IceAgent,
    PairNominated,
    host_candidate,
    is_ice_message,
)
from zerogate.proto.net import Endpoint

pytestmark = pytest.mark.interop

TIMEOUT = 5.0  # seconds; the loopback handshake takes well under one
OUR_UFRAG, OUR_PWD = "zg01", "zerogatezerogatezerog1"


class Shell:
    """A test-only asyncio shell: UDP sockets in, the agent's datagrams and timer out."""

    def __init__(self, agent: IceAgent) -> None:
        self.agent = agent
        self.loop = asyncio.get_running_loop()
        self.sockets: dict[Endpoint, asyncio.DatagramTransport] = {}
        self.events: list[Event] = []
        self.nominated = asyncio.Event()
        self.data: asyncio.Queue[tuple[bytes, Endpoint]] = asyncio.Queue()  # (payload, local)
        self._timer: asyncio.TimerHandle | None = None

    async def bind(self) -> Endpoint:
        shell = self

        class Socket(asyncio.DatagramProtocol):
            local: Endpoint

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.local = transport.get_extra_info("sockname")[:2]

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                shell.received(data, (addr[0], addr[1]), self.local)

        transport, protocol = await self.loop.create_datagram_endpoint(
            Socket, local_addr=("127.0.0.1", 0)
        )
        self.sockets[protocol.local] = transport
        return protocol.local

    def received(self, data: bytes, source: Endpoint, local: Endpoint) -> None:
        if is_ice_message(data):
            self.agent.handle_stun(data, source, local, self.loop.time())
            self.drain()
        else:
            self.data.put_nowait((data, local))

    def drain(self) -> None:
        while (tx := self.agent.poll_transmit()) is not None:
            self.sockets[tx.source].sendto(tx.data, tx.destination)
        while (event := self.agent.poll_event()) is not None:
            self.events.append(event)
            if isinstance(event, PairNominated):
                self.nominated.set()
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.agent.poll_timeout()
        self._timer = None if deadline is None else self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.agent.handle_timeout(self.loop.time())
        self.drain()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for transport in self.sockets.values():
            transport.close()


def ours(candidate: aioice.Candidate) -> Candidate:
    return Candidate(**{name: getattr(candidate, name) for name in FIELDS})


def theirs(candidate: Candidate) -> aioice.Candidate:
    return aioice.Candidate(**dataclasses.asdict(candidate))


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda **_kw: ["127.0.0.1"])


@pytest.fixture
async def pair(
    request: pytest.FixtureRequest, loopback_only: None
) -> AsyncIterator[tuple[Shell, aioice.Connection]]:
    """Our agent in a shell and an aioice Connection, roles from the test's parameter."""
    we_control: bool = request.param
    connection = aioice.Connection(ice_controlling=not we_control, use_ipv6=False)
    await connection.gather_candidates()
    loop = asyncio.get_running_loop()
    agent = IceAgent(
        controlling=we_control,
        local_ufrag=OUR_UFRAG,
        local_pwd=OUR_PWD,
        remote_ufrag=connection.local_username,
        remote_pwd=connection.local_password,
        now=loop.time(),
    )
    connection.remote_username, connection.remote_password = OUR_UFRAG, OUR_PWD
    shell = Shell(agent)
    try:
        yield shell, connection
    finally:
        shell.close()
        await connection.close()


async def connect(shell: Shell, connection: aioice.Connection, *, local_preference: int) -> None:
    """Trickle both ways, then wait until both sides have a nominated pair."""
    local = await shell.bind()
    ours_host = host_candidate(local, local_preference=local_preference)
    now = shell.loop.time()
    shell.agent.add_local_candidate(ours_host, now)
    for candidate in connection.local_candidates:
        assert shell.agent.add_remote_candidate(ours(candidate), now)
    await connection.add_remote_candidate(theirs(ours_host))
    shell.drain()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(connection.connect(), shell.nominated.wait())


async def exchange(shell: Shell, connection: aioice.Connection) -> Endpoint:
    """One datagram each way on the selected pair; returns our socket that got aioice's."""
    pair = shell.agent.selected_pair
    assert pair is not None
    async with asyncio.timeout(TIMEOUT):
        await connection.send(b"from aioice")
        data, local = await shell.data.get()
        assert data == b"from aioice"
        shell.sockets[pair.base].sendto(b"from zerogate", pair.destination)
        assert await connection.recv() == b"from zerogate"
    return local


@pytest.mark.parametrize("pair", [True], indirect=True, ids=["we-control"])
async def test_our_controlling_agent_with_aioice_controlled(
    pair: tuple[Shell, aioice.Connection],
) -> None:
    shell, connection = pair
    await connect(shell, connection, local_preference=65535)
    selected = shell.agent.selected_pair
    assert selected is not None
    assert selected.nominated
    assert selected.destination == (
        connection.local_candidates[0].host,
        connection.local_candidates[0].port,
    )
    assert await exchange(shell, connection) == selected.base


@pytest.mark.parametrize("pair", [False], indirect=True, ids=["aioice-controls"])
async def test_our_controlled_agent_with_aioice_controlling(
    pair: tuple[Shell, aioice.Connection],
) -> None:
    shell, connection = pair
    await connect(shell, connection, local_preference=65535)
    selected = shell.agent.selected_pair
    assert selected is not None
    assert selected.nominated
    assert not shell.agent.controlling  # no role conflict with a well-behaved peer
    assert await exchange(shell, connection) == selected.base


@pytest.mark.parametrize("pair", [True], indirect=True, ids=["we-control"])
async def test_renomination_moves_aioice_to_the_better_pair(
    pair: tuple[Shell, aioice.Connection],
) -> None:
    """A better local candidate trickled after connecting: we renominate and aioice's
    controlled side follows (it sends to the new socket)."""
    shell, connection = pair
    await connect(shell, connection, local_preference=1000)
    first = shell.agent.selected_pair
    assert first is not None
    assert await exchange(shell, connection) == first.base

    shell.nominated.clear()
    better = host_candidate(await shell.bind(), local_preference=65535)
    shell.agent.add_local_candidate(better, shell.loop.time())
    await connection.add_remote_candidate(theirs(better))
    shell.drain()
    async with asyncio.timeout(TIMEOUT):
        await shell.nominated.wait()
    second = shell.agent.selected_pair
    assert second is not None
    assert second.base == better.address != first.base
    assert second.valid_priority > first.valid_priority
    # aioice switches when its side of the new pair has succeeded too; allow it a moment.
    for _ in range(int(TIMEOUT / 0.05)):
        if await exchange(shell, connection) == better.address:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("aioice kept sending to the first pair")
