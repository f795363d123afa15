"""The interface's UDP sockets on real loopback sockets: dual stack, GSO sends, GRO reads."""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerogate.dataplane.paths import PeerPath, SharedSocketPath
from zerogate.dataplane.udp import (
    CMSG_SPACE,
    GSO_MAX_SEGMENTS,
    HAVE_MMSG,
    RECV_SIZE,
    DatagramBatch,
    UdpError,
    UdpSockets,
    gro_segment_size,
    sockaddr_address,
)

UDP_GRO = 104  # linux/udp.h
SOL_UDP = 17


def _drain(sock: socket.socket, expected: int, gro: bool) -> tuple[list[bytes], int]:
    """Read until ``expected`` datagrams arrived; also count recv calls."""
    got: list[bytes] = []
    calls = 0
    while len(got) < expected:
        ready, _, _ = select.select([sock], [], [], 5)
        assert ready, f"only {len(got)} of {expected} datagrams arrived"
        data, ancdata, _flags, _addr = sock.recvmsg(RECV_SIZE, CMSG_SPACE)
        calls += 1
        size = gro_segment_size(ancdata) if gro else 0
        if size and size < len(data):
            got.extend(data[i : i + size] for i in range(0, len(data), size))
        else:
            got.append(data)
    return got, calls


@pytest.fixture
def pair():
    sender = UdpSockets.bind(0)
    receiver = UdpSockets.bind(0)
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def test_both_families_share_one_port(pair) -> None:
    sender, _ = pair
    assert sender.port > 0
    if sender.v6 is not None:
        assert sender.v6.getsockname()[1] == sender.port
        assert sender.v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_taken_port_is_a_clear_error(pair) -> None:
    sender, _ = pair
    with pytest.raises(UdpError, match="ListenPort"):
        UdpSockets.bind(sender.port)


def test_buffers_are_raised(pair) -> None:
    sender, _ = pair
    # the kernel reports double the value set; the default is around 200 KiB
    assert sender.v4.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 4 * 1024 * 1024


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_send_many_delivers_every_datagram_in_order(pair, family: str) -> None:
    sender, receiver = pair
    if family == "v6" and (receiver.v6 is None or sender.v6 is None):
        pytest.skip("no IPv6 on this host")
    host = "127.0.0.1" if family == "v4" else "::1"
    sock = receiver.v4 if family == "v4" else receiver.v6
    assert sock is not None
    # sizes chosen to exercise the GSO grouping: equal runs, a short tail, a bigger one after it
    sizes = [1000] * 70 + [500] + [1200, 1200, 7] + [64]
    datagrams = [bytes([i % 256]) * size for i, size in enumerate(sizes)]
    sender.send_many((host, receiver.port), datagrams)
    got, _ = _drain(sock, len(datagrams), receiver.gro)
    assert got == datagrams


def test_gro_reads_many_datagrams_per_call(pair) -> None:
    sender, receiver = pair
    if not (sender.gso and receiver.gro):
        pytest.skip("kernel without UDP GSO/GRO")
    datagrams = [bytes([i]) * 1400 for i in range(GSO_MAX_SEGMENTS // 2)]
    sender.send_many(("127.0.0.1", receiver.port), datagrams)
    got, calls = _drain(receiver.v4, len(datagrams), True)
    assert got == datagrams
    assert calls < len(datagrams)


def test_send_to_a_missing_family_is_counted_not_raised() -> None:
    sockets = UdpSockets.bind(0)
    try:
        sockets.send(("203.0.113.1", 9), b"x" * 70000)  # too big: EMSGSIZE
        assert sockets.send_errors == 1
    finally:
        sockets.close()


def test_gro_segment_size_reads_the_control_message() -> None:
    assert gro_segment_size([(SOL_UDP, UDP_GRO, (1400).to_bytes(4, sys.byteorder))]) == 1400
    assert gro_segment_size([(0, 1, b"")]) == 0
    assert gro_segment_size([]) == 0


def test_segment_limit_is_the_route_mtu_minus_headers() -> None:
    sockets = UdpSockets.bind(0)
    try:
        lo_mtu = int(Path("/sys/class/net/lo/mtu").read_text())
        # IPv4 lengths are 16 bits (RFC 791): the kernel caps the route MTU at 65535.
        # RFC 791 IPv4 header 20 bytes, RFC 768 UDP header 8 bytes
        assert sockets.segment_limit(("127.0.0.1", 9)) == min(lo_mtu, 65535) - 20 - 8
        if sockets.v6 is not None:
            # RFC 8200 §3: IPv6 header 40 bytes
            assert sockets.segment_limit(("::1", 9)) == lo_mtu - 40 - 8
    finally:
        sockets.close()


def test_shared_socket_path_sends_from_the_interface_port(pair) -> None:
    sender, receiver = pair
    path = SharedSocketPath(sender, ("127.0.0.1", receiver.port))
    assert isinstance(path, PeerPath)
    assert path.endpoint == ("127.0.0.1", receiver.port)
    path.send(b"sealed")
    ready, _, _ = select.select([receiver.v4], [], [], 5)
    assert ready
    data, source = receiver.v4.recvfrom(100)
    assert data == b"sealed"
    assert source[1] == sender.port


# -- DatagramBatch: many senders read in one call and answered in one call ------------------


def _loopback(family: socket.AddressFamily) -> str:
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def _wait_readable(sock: socket.socket) -> None:
    ready, _, _ = select.select([sock], [], [], 5)
    assert ready, "nothing arrived"


@pytest.mark.parametrize("native", [True, False], ids=["mmsg", "portable"])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def test_a_batch_answers_each_sender_with_its_own_reply(native: bool, family) -> None:
    host = _loopback(family)
    with socket.socket(family, socket.SOCK_DGRAM) as server:
        server.bind((host, 0))
        server.setblocking(False)
        batch = DatagramBatch(server, count=8, size=64, native=native)
        clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(5)]
        try:
            for i, client in enumerate(clients):
                client.connect(server.getsockname()[:2])
                client.send(b"query %d" % i)
            _wait_readable(server)
            got: list[bytes] = []
            sources = []
            while len(got) < len(clients):  # all five arrive in one read, or a few
                datagrams = batch.receive()
                if not datagrams:
                    _wait_readable(server)
                    continue
                for index, data in enumerate(datagrams):
                    got.append(data)
                    sources.append(batch.source(index))
                    batch.reply(index, b"answer to " + data)
                assert batch.flush() == len(datagrams)
            assert sorted(got) == sorted(b"query %d" % i for i in range(5))
            assert sorted(sources) == sorted(c.getsockname() for c in clients)
            for i, client in enumerate(clients):
                client.settimeout(5)
                assert client.recv(100) == b"answer to query %d" % i
            assert batch.receive() == []
            assert batch.dropped == 0
        finally:
            for client in clients:
                client.close()


@pytest.fixture
def loopback() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A non-blocking server socket and a client connected to it, on 127.0.0.1."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.connect(server.getsockname())
        client.settimeout(5)
        yield server, client


def _asked(batch: DatagramBatch, client: socket.socket, query: bytes) -> list[bytes]:
    client.send(query)
    _wait_readable(batch.sock)
    return batch.receive()


@pytest.mark.parametrize("native", [True, False], ids=["mmsg", "portable"])
def test_a_reply_larger_than_a_slot_and_a_long_datagram(loopback, native: bool) -> None:
    server, client = loopback
    batch = DatagramBatch(server, count=4, size=16, native=native)
    assert _asked(batch, client, b"x" * 40) == [b"x" * 16]  # cut to the slot, as recvfrom(16)
    batch.reply(0, b"y" * 1000)  # too large for a slot: sent on its own
    batch.reply(0, b"short")
    batch.flush()
    assert client.recv(2000) == b"y" * 1000
    assert client.recv(2000) == b"short"
    with pytest.raises(IndexError):
        batch.reply(1, b"no such datagram")


def test_more_replies_than_slots_all_go_out(loopback) -> None:
    server, client = loopback
    batch = DatagramBatch(server, count=2, size=16)
    assert _asked(batch, client, b"q") == [b"q"]
    for i in range(5):
        batch.reply(0, b"%d" % i)
    batch.flush()
    assert [client.recv(16) for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]


@pytest.mark.skipif(not HAVE_MMSG, reason="libc has no recvmmsg/sendmmsg")
def test_a_refused_reply_is_counted_and_the_rest_still_go(loopback) -> None:
    server, client = loopback
    batch = DatagramBatch(server, count=4, size=70_000)
    assert _asked(batch, client, b"q") == [b"q"]
    batch.reply(0, b"ok-1")
    batch.reply(0, b"z" * 66_000)  # fits a slot, not an IPv4 datagram: EMSGSIZE
    batch.reply(0, b"ok-3")
    assert batch.flush() == 2
    assert batch.dropped == 1
    assert client.recv(100) == b"ok-1"
    assert client.recv(100) == b"ok-3"


@given(st.binary(max_size=40))
def test_sockaddr_address_reads_both_families_and_refuses_the_rest(raw: bytes) -> None:
    try:
        address = sockaddr_address(raw)
    except ValueError:
        return
    family = int.from_bytes(raw[0:2], "little")
    assert family in (socket.AF_INET, socket.AF_INET6)
    assert len(address) == (2 if family == socket.AF_INET else 4)
    assert address[1] == int.from_bytes(raw[2:4], "big")
    assert socket.inet_pton(family, address[0])
