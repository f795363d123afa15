"""The interface's UDP sockets on real loopback sockets: dual stack, GSO sends, GRO reads."""

from __future__ import annotations

import select
import socket
import sys
from pathlib import Path

import pytest

from zerogate.dataplane.paths import PeerPath, SharedSocketPath
from zerogate.dataplane.udp import (
    CMSG_SPACE,
    GSO_MAX_SEGMENTS,
    RECV_SIZE,
    UdpError,
    UdpSockets,
    gro_segment_size,
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
