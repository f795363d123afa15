"""aioice's TURN client (a real peer's state machine) against our core, over an in-memory link."""

import asyncio
import time

from aioice.turn import TurnClientUdpProtocol

from zerogate.proto.turn import CloseRelaySocket, OpenRelaySocket, Server, ServerConfig

SERVER_ADDR = ("198.51.100.1", 3478)
CLIENT_ADDR = ("192.0.2.200", 40000)
PEER = ("8.8.8.8", 5000)


class Link:
    """Carries the client's datagrams into the core and the core's answers back."""

    def __init__(self, server: Server, protocol: TurnClientUdpProtocol) -> None:
        self.server = server
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.to_peers: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
        self.commands: list[OpenRelaySocket | CloseRelaySocket] = []
        self.closed = False

    # the asyncio.DatagramTransport surface aioice uses
    def sendto(self, data: bytes, addr=None) -> None:
        if data[0] & 0xC0 == 0x40:
            routed = self.server.channel_to_peer(data, CLIENT_ADDR)
            if routed is not None:
                self.to_peers.append((routed[0], routed[1], bytes(routed[2])))
            return
        self.server.handle_client_datagram(data, CLIENT_ADDR, self.loop.time())
        self.flush()

    def from_peer(self, relay, data: bytes, peer) -> None:
        routed = self.server.peer_to_client(relay, data, peer)
        if routed is not None:
            self.loop.call_soon(self.protocol.datagram_received, routed[1], SERVER_ADDR)
            return
        self.server.handle_peer_datagram(relay, data, peer, self.loop.time())
        self.flush()

    def flush(self) -> None:
        while (command := self.server.poll_command()) is not None:
            self.commands.append(command)
            if isinstance(command, OpenRelaySocket):
                self.server.handle_relay_bound(command.relay, self.loop.time())
        while (transmit := self.server.poll_transmit()) is not None:
            if transmit.source is None:
                assert transmit.destination == CLIENT_ADDR
                self.loop.call_soon(self.protocol.datagram_received, transmit.data, SERVER_ADDR)
            else:
                self.to_peers.append((transmit.source, transmit.destination, transmit.data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data, addr) -> None:
        self.received.append((data, addr))


async def test_aioice_allocates_binds_relays_and_deletes():
    loop = asyncio.get_running_loop()
    config = ServerConfig(
        realm="zerogate.test",
        nonce_secret=b"n" * 32,
        static_users={"alice": "alice-password"},
        relay_addresses_v4=["198.51.100.10"],
    )
    server = Server(config, now=loop.time(), unix_now=time.time())
    protocol = TurnClientUdpProtocol(
        SERVER_ADDR, "alice", "alice-password", lifetime=600, channel_refresh_time=500
    )
    link = Link(server, protocol)
    protocol.connection_made(link)  # type: ignore[arg-type]
    receiver = Receiver()
    protocol.receiver = receiver

    relayed = await asyncio.wait_for(protocol.connect(), 5)
    assert relayed[0] == "198.51.100.10"
    assert protocol.mapped_address == CLIENT_ADDR
    assert [type(c) for c in link.commands] == [OpenRelaySocket]
    assert link.commands[0].relay == relayed

    await asyncio.wait_for(protocol.send_data(b"hello peer", PEER), 5)
    assert link.to_peers == [(relayed, PEER, b"hello peer")]
    assert server.stats().channels == 1

    link.from_peer(relayed, b"hello client", PEER)
    await asyncio.sleep(0)
    assert receiver.received == [(b"hello client", PEER)]

    await asyncio.wait_for(protocol.delete(), 5)
    assert link.closed
    assert server.stats().allocations == 0
    assert isinstance(link.commands[-1], CloseRelaySocket)
