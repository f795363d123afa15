"""The server never raises, and unauthenticated input leaves no state behind."""

import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method
from zerogate.proto.turn import Server, ServerConfig, long_term_key

T0 = 1_000.0
UNIX_T0 = 1_700_000_000.0


def make_config() -> ServerConfig:
    return ServerConfig(
        realm="zerogate.test",
        nonce_secret=b"n" * 32,
        static_users={"alice": "alice-password"},
        relay_addresses_v4=["198.51.100.10"],
        relay_addresses_v6=["2001:db8:100::10"],
        relay_port_min=50000,
        relay_port_max=50999,
    )


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SOURCES = st.sampled_from([("192.0.2.200", 40000), ("2001:db8::5", 1), ("8.8.8.8", 53)])


def fresh_server() -> Server:
    return Server(make_config(), now=T0, unix_now=UNIX_T0)


def drain(server: Server) -> list:
    out = []
    while (command := server.poll_command()) is not None:
        out.append(command)
    while (transmit := server.poll_transmit()) is not None:
        out.append(transmit)
    return out


@FUZZ
@given(data=st.binary(max_size=300), source=SOURCES, now=st.floats(0, 10_000))
def test_random_client_datagrams_never_raise(data, source, now):
    server = fresh_server()
    server.handle_client_datagram(data, source, now)
    server.handle_peer_datagram(("198.51.100.10", 50000), data, source, now)
    server.handle_timeout(now)
    drain(server)
    assert server.state_size() == 0


def _signed_requests(nonce: str, key: bytes) -> list[bytes]:
    out = []
    for method, attributes in [
        (Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: 17, Attr.ADDITIONAL_ADDRESS_FAMILY: 2}),
        (Method.CREATE_PERMISSION, {Attr.XOR_PEER_ADDRESS: ("8.8.8.8", 1)}),
        (Method.CHANNEL_BIND, {Attr.CHANNEL_NUMBER: 0x4001, Attr.XOR_PEER_ADDRESS: ("8.8.8.8", 1)}),
        (Method.REFRESH, {Attr.LIFETIME: 900, Attr.REQUESTED_ADDRESS_FAMILY: 1}),
    ]:
        message = stun.Message(method, MessageClass.REQUEST, os.urandom(12), dict(attributes))
        message.attributes.update(
            {Attr.USERNAME: "alice", Attr.REALM: "zerogate.test", Attr.NONCE: nonce}
        )
        out.append(stun.encode(message, key=key, fingerprint=True))
    return out


def _authenticated_server(source):
    server = fresh_server()
    probe = stun.Message(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12), {})
    server.handle_client_datagram(stun.encode(probe), source, T0)
    (challenge,) = drain(server)
    nonce = stun.decode(challenge.data).get_str(Attr.NONCE)
    key = long_term_key("alice", "zerogate.test", "alice-password")
    return server, _signed_requests(nonce, key)


SOURCE = ("192.0.2.200", 40000)
SERVER, REQUESTS = _authenticated_server(SOURCE)


@FUZZ
@given(
    index=st.integers(0, len(REQUESTS) - 1),
    mutations=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    truncate=st.integers(0, 400),
    step=st.floats(0, 700),
)
def test_mutated_authenticated_requests_never_raise(index, mutations, truncate, step):
    """Mutations of valid signed requests, mixed with valid ones, on a moving clock."""
    server, requests = SERVER, REQUESTS
    data = bytearray(requests[index])
    for position, value in mutations:
        if position < len(data):
            data[position] = value
    now = T0 + step
    server.handle_client_datagram(bytes(data[: max(truncate, 1)]), SOURCE, now)
    server.handle_client_datagram(requests[index], SOURCE, now)
    server.handle_client_datagram(b"\x40\x01" + bytes(data[:8]), SOURCE, now)
    server.handle_timeout(now)
    for item in drain(server):
        if hasattr(item, "data") and item.source is None and item.data[:1] != b"\x40":
            stun.decode(item.data)  # everything we send parses
    server.stats()


@FUZZ
@given(
    data=st.binary(max_size=64),
    peer=st.tuples(st.ip_addresses().map(str), st.integers(0, 65535)),
    port=st.integers(50000, 50999),
)
def test_random_peer_datagrams_never_raise(data, peer, port):
    server = SERVER
    for relay in (("198.51.100.10", port), ("2001:db8:100::10", port)):
        server.peer_to_client(relay, data, peer)
        server.handle_peer_datagram(relay, data, peer, T0 + 1)
    drain(server)


def test_flood_of_unauthenticated_allocates_leaves_no_state():
    server = fresh_server()
    request_count = 5000
    for port in range(request_count):
        source = (f"203.0.113.{port % 250 + 1}", 1024 + port)
        message = stun.Message(
            Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12), {Attr.REQUESTED_TRANSPORT: 17}
        )
        server.handle_client_datagram(stun.encode(message), source, T0 + port / 1000)
        # ...and a forged signed one with a made-up nonce and key.
        message.attributes.update(
            {
                Attr.USERNAME: "alice",
                Attr.REALM: "zerogate.test",
                Attr.NONCE: f"{port:x}-" + "0" * 24,
            }
        )
        server.handle_client_datagram(stun.encode(message, key=b"guess"), source, T0)
    replies = drain(server)
    assert len(replies) == 2 * request_count
    codes = [stun.decode(r.data).error_code().code for r in replies]
    assert set(codes) == {401, 438}
    assert server.state_size() == 0
    assert server.poll_timeout() is None
    assert server.stats().allocations == 0


def test_flood_of_channel_data_and_garbage_leaves_no_state():
    server = fresh_server()
    for port in range(2000):
        source = ("203.0.113.9", 1024 + port)
        server.handle_client_datagram(
            struct.pack("!HH", 0x4000 + port % 0x1000, 4) + b"abcd", source, T0
        )
        server.handle_client_datagram(os.urandom(port % 64), source, T0)
    drain(server)
    assert server.state_size() == 0
    assert server.stats().dropped >= 2000
