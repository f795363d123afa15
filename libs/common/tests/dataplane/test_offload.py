"""TCP segmentation (TSO super-packets from the TUN) and coalescing (GRO writes to it).

Checksums are checked against a word-by-word RFC 1071 sum written here, not
against the module's own arithmetic.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.dataplane.offload import TcpCoalescer, checksum, split_packet
from zerogate.proto.ip.nat import address_adjustment, rewrite

# linux/virtio_net.h
VNET_LEN = 10
F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE, GSO_TCPV4, GSO_TCPV6 = 0, 1, 4
# RFC 9293 §3.1 flag bits
FIN, SYN, RST, PSH, ACK, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x80
TCP = 6


def rfc1071(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo(src: bytes, dst: bytes, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, TCP, length)
    return src + dst + struct.pack("!IxxxB", length, TCP)


def tcp_packet(
    payload: bytes,
    *,
    v6: bool = False,
    seq: int = 1000,
    flags: int = ACK,
    sport: int = 40000,
    dport: int = 5201,
    ack: int = 77,
    ip_id: int = 0x1234,
    options: bytes = b"",
    valid: bool = True,
) -> bytes:
    tcp_len = 20 + len(options)
    tcp = (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (tcp_len // 4) << 4, flags, 500, 0, 0)
        + options
    )
    if v6:
        src, dst = ipaddress.IPv6Address("fd00::1").packed, ipaddress.IPv6Address("fd00::2").packed
        ip = struct.pack("!IHBB", 6 << 28, tcp_len + len(payload), TCP, 64) + src + dst
    else:
        src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        ip = bytearray(
            struct.pack(
                "!BBHHHBBH", 0x45, 0, 20 + tcp_len + len(payload), ip_id, 0x4000, 64, TCP, 0
            )
            + src
            + dst
        )
        struct.pack_into("!H", ip, 10, rfc1071(bytes(ip)))
        ip = bytes(ip)
    segment = bytearray(tcp + payload)
    if valid:
        struct.pack_into(
            "!H", segment, 16, rfc1071(pseudo(src, dst, len(segment)) + bytes(segment))
        )
    return ip + bytes(segment)


def assert_valid(packet: bytes) -> None:
    if packet[0] >> 4 == 4:
        assert rfc1071(packet[:20]) == 0, "IPv4 header checksum"
        assert struct.unpack_from("!H", packet, 2)[0] == len(packet)
        src, dst, body = packet[12:16], packet[16:20], packet[20:]
    else:
        assert struct.unpack_from("!H", packet, 4)[0] == len(packet) - 40
        src, dst, body = packet[8:24], packet[24:40], packet[40:]
    assert rfc1071(pseudo(src, dst, len(body)) + body) == 0, "TCP checksum"


def tso_super_packet(payload: bytes, mss: int, *, v6: bool, flags: int = ACK | PSH) -> bytes:
    """What the kernel hands a TSO-enabled TUN reader: checksum field = pseudo-header sum."""
    packet = bytearray(tcp_packet(payload, v6=v6, flags=flags, valid=False))
    ip_len = 40 if v6 else 20
    src, dst = (packet[8:24], packet[24:40]) if v6 else (packet[12:16], packet[16:20])
    partial = ~rfc1071(pseudo(bytes(src), bytes(dst), len(packet) - ip_len)) & 0xFFFF
    struct.pack_into("!H", packet, ip_len + 16, partial)
    header = struct.pack(
        "<BBHHHH", F_NEEDS_CSUM, GSO_TCPV6 if v6 else GSO_TCPV4, ip_len + 20, mss, ip_len, 16
    )
    return header + bytes(packet)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_checksum_is_rfc1071(data: bytes) -> None:
    assert checksum(data) == rfc1071(data)


@pytest.mark.parametrize("v6", [False, True])
def test_tso_super_packet_is_cut_into_valid_segments(v6: bool) -> None:
    payload = bytes(range(256)) * 40 + b"tail"  # 10244 bytes
    mss = 1380
    segments = split_packet(tso_super_packet(payload, mss, v6=v6))
    assert len(segments) == -(-len(payload) // mss)
    ip_len = 40 if v6 else 20
    body = b""
    for index, segment in enumerate(segments):
        assert_valid(segment)
        seq = struct.unpack_from("!I", segment, ip_len + 4)[0]
        assert seq == 1000 + index * mss
        flags = segment[ip_len + 13]
        last = index == len(segments) - 1
        assert bool(flags & PSH) == last
        assert flags & ACK
        if not v6:
            assert struct.unpack_from("!H", segment, 4)[0] == 0x1234 + index
        body += segment[ip_len + 20 :]
        assert len(segment) - ip_len - 20 == (len(payload) - mss * index if last else mss)
    assert body == payload


def test_tso_fin_only_on_the_last_and_cwr_only_on_the_first() -> None:
    segments = split_packet(tso_super_packet(b"x" * 3000, 1000, v6=False, flags=ACK | FIN | CWR))
    flags = [segment[33] for segment in segments]
    assert [bool(f & FIN) for f in flags] == [False, False, True]
    assert [bool(f & CWR) for f in flags] == [True, False, False]


PROXY_V4 = bytes([100, 96, 0, 9])
PROXY_V6 = ipaddress.IPv6Address("fd00:2021:1111:8000::7").packed


def source_translation(v6: bool) -> Callable[[bytes], bytes]:
    """The gateway's way back for a DNS resource: the real source becomes the proxy."""
    if v6:
        real, proxy = ipaddress.IPv6Address("fd00::1").packed, PROXY_V6
    else:
        real, proxy = bytes([10, 0, 0, 1]), PROXY_V4
    adjustment = address_adjustment(real, proxy)
    ip_len = 40 if v6 else 20
    return lambda packet: rewrite(
        packet, 6 if v6 else 4, ip_len, TCP, dst=False, address=proxy, adjustment=adjustment
    )


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 9000), mss=st.integers(500, 1460), v6=st.booleans())
def test_rewrite_once_on_a_super_packet_equals_rewriting_each_segment(
    size: int, mss: int, v6: bool
) -> None:
    translate = source_translation(v6)
    buffer = tso_super_packet(bytes(range(256)) * (size // 256) + b"z" * (size % 256), mss, v6=v6)
    once = split_packet(buffer, translate)
    each = [translate(segment) for segment in split_packet(buffer)]
    assert once == each
    for segment in once:
        assert_valid(segment)
        source = segment[8:24] if v6 else segment[12:16]
        assert source == (PROXY_V6 if v6 else PROXY_V4)


def test_rewrite_applies_to_a_plain_packet_and_one_with_a_partial_checksum() -> None:
    translate = source_translation(False)
    packet = tcp_packet(b"hello")
    assert split_packet(bytes(VNET_LEN) + packet, translate) == [translate(packet)]
    partial = bytearray(tcp_packet(b"hello", valid=False))
    value = ~rfc1071(pseudo(bytes(partial[12:16]), bytes(partial[16:20]), len(partial) - 20))
    struct.pack_into("!H", partial, 36, value & 0xFFFF)
    header = struct.pack("<BBHHHH", F_NEEDS_CSUM, GSO_NONE, 0, 0, 20, 16)
    (out,) = split_packet(header + bytes(partial), translate)
    assert_valid(out)
    assert out[12:16] == PROXY_V4


def test_plain_packet_with_partial_checksum_is_completed() -> None:
    packet = bytearray(tcp_packet(b"hello", valid=False))
    partial = ~rfc1071(pseudo(bytes(packet[12:16]), bytes(packet[16:20]), len(packet) - 20))
    struct.pack_into("!H", packet, 36, partial & 0xFFFF)
    header = struct.pack("<BBHHHH", F_NEEDS_CSUM, GSO_NONE, 0, 0, 20, 16)
    (out,) = split_packet(header + bytes(packet))
    assert_valid(out)


def test_plain_packet_passes_unchanged() -> None:
    packet = tcp_packet(b"abc")
    assert split_packet(bytes(VNET_LEN) + packet) == [packet]


def coalesce(packets: list[bytes]) -> list[bytes]:
    """What each writev would hand the kernel, as one buffer."""
    return [b"".join(iov) for iov in TcpCoalescer().coalesce(packets)]


def _run(count: int, size: int = 1000, *, v6: bool = False, seq: int = 1000) -> list[bytes]:
    return [tcp_packet(bytes([i]) * size, v6=v6, seq=seq + i * size, ip_id=i) for i in range(count)]


@pytest.mark.parametrize("v6", [False, True])
def test_coalesced_run_round_trips_through_segmentation(v6: bool) -> None:
    packets = _run(5, v6=v6)
    packets.append(tcp_packet(b"z" * 300, v6=v6, seq=6000, ip_id=5))  # shorter last one
    (written,) = coalesce(packets)
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack_from(
        "<BBHHHH", written
    )
    ip_len = 40 if v6 else 20
    assert flags == F_NEEDS_CSUM
    assert gso_type == (GSO_TCPV6 if v6 else GSO_TCPV4)
    assert (hdr_len, gso_size, csum_start, csum_offset) == (ip_len + 20, 1000, ip_len, 16)
    big = written[VNET_LEN:]
    total = struct.unpack_from("!H", big, 4 if v6 else 2)[0]
    assert total == len(big) - (40 if v6 else 0)
    again = split_packet(written)
    assert [p[ip_len:] for p in again] == [p[ip_len:] for p in packets]
    for packet in again:
        assert_valid(packet)


def test_coalescing_stops_at_gaps_flows_and_control_flags() -> None:
    run = _run(3)
    gap = tcp_packet(b"g" * 1000, seq=9000)  # not contiguous
    other_flow = tcp_packet(b"o" * 1000, seq=10000, sport=1)
    syn = tcp_packet(b"", seq=1, flags=SYN)
    udp_like = bytes([0x45]) + bytes(59)  # not TCP
    out = coalesce([*run, gap, other_flow, syn, udp_like])
    assert len(out) == 5
    kinds = [struct.unpack_from("<BB", b)[1] for b in out]
    assert kinds == [GSO_TCPV4, GSO_NONE, GSO_NONE, GSO_NONE, GSO_NONE]
    # packets we do not coalesce are written as they are, marked valid: the AEAD checked them
    assert out[1] == struct.pack("<BBHHHH", F_DATA_VALID, GSO_NONE, 0, 0, 0, 0) + gap
    assert out[4][VNET_LEN:] == udp_like


def test_psh_ends_a_run_and_travels_on_it() -> None:
    packets = _run(2)
    packets.append(tcp_packet(b"p" * 1000, seq=3000, flags=ACK | PSH, ip_id=2))
    packets += _run(2, seq=4000)
    out = coalesce(packets)
    assert len(out) == 2
    assert out[0][VNET_LEN + 33] & PSH
    assert len(split_packet(out[0])) == 3


def test_a_larger_segment_ends_a_run() -> None:
    packets = [*_run(2, 500), tcp_packet(b"L" * 900, seq=2000)]
    out = coalesce(packets)
    assert [len(split_packet(b)) for b in out] == [2, 1]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_split_never_raises_on_garbage(data: bytes) -> None:
    for segment in split_packet(data):
        assert isinstance(segment, bytes)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_coalesce_never_raises_on_garbage(packets: list[bytes]) -> None:
    out = coalesce(packets)
    assert len(out) <= len(packets)
    assert all(len(b) >= VNET_LEN for b in out)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=1400), min_size=1, max_size=12),
    st.booleans(),
)
def test_coalesce_then_split_preserves_every_tcp_payload(sizes: list[int], v6: bool) -> None:
    packets = []
    seq = 5
    for i, size in enumerate(sizes):
        packets.append(tcp_packet(bytes([i % 256]) * size, v6=v6, seq=seq, ip_id=i))
        seq += size
    out = coalesce(packets)
    ip_len = 40 if v6 else 20
    again = [segment for written in out for segment in split_packet(written)]
    assert [p[ip_len:] for p in again] == [p[ip_len:] for p in packets]


@st.composite
def mutated(draw: st.DrawFn, packet: bytes) -> bytes:
    data = bytearray(packet)
    for _ in range(draw(st.integers(0, 4))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


VALID4 = tcp_packet(b"d" * 100)
VALID6 = tcp_packet(b"d" * 100, v6=True)
SUPER4 = tso_super_packet(b"s" * 3000, 1000, v6=False)
SUPER6 = tso_super_packet(b"s" * 3000, 1000, v6=True)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(mutated(VALID4), mutated(VALID6)), max_size=6))
def test_coalesce_survives_damaged_tcp_packets(packets: list[bytes]) -> None:
    out = coalesce(packets)
    assert len(out) <= len(packets)


@settings(max_examples=400, deadline=None)
@given(st.one_of(mutated(SUPER4), mutated(SUPER6)))
def test_split_survives_damaged_super_packets(data: bytes) -> None:
    for segment in split_packet(data):
        assert len(segment) <= len(data)


def destination_translation(v6: bool) -> Callable[[bytes], bytes | None]:
    """The gateway's way in for a DNS resource: the packets' destination (standing for a
    proxy address) becomes a real address; port 22 is refused."""
    if v6:
        proxy, real = (
            ipaddress.IPv6Address("fd00::2").packed,
            ipaddress.IPv6Address("fd00:5::10").packed,
        )
    else:
        proxy, real = bytes([10, 0, 0, 2]), bytes([172, 16, 5, 10])
    adjustment = address_adjustment(proxy, real)
    ip_len = 40 if v6 else 20

    def admit(packet: bytes) -> bytes | None:
        if struct.unpack_from("!H", packet, ip_len + 2)[0] == 22:
            return None
        return rewrite(
            packet, 6 if v6 else 4, ip_len, TCP, dst=True, address=real, adjustment=adjustment
        )

    return admit


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([5201, 22, 443]), st.integers(0, 1400), st.booleans()),
        max_size=30,
    ),
    st.booleans(),
)
def test_coalescing_with_a_rewrite_equals_rewriting_each_packet_first(
    segments: list[tuple[int, int, bool]], v6: bool
) -> None:
    """Runs are checked and translated once, on their header; what reaches the kernel is
    what checking and translating each segment before coalescing gives."""
    admit = destination_translation(v6)
    seqs: dict[int, int] = {}
    packets = []
    for i, (port, size, push) in enumerate(segments):
        seq = seqs.get(port, 1000)
        seqs[port] = seq + size
        flags = ACK | (PSH if push else 0)
        packets.append(tcp_packet(bytes([i]) * size, v6=v6, seq=seq, dport=port, flags=flags))
    each = [p for packet in packets if (p := admit(packet)) is not None]
    got = [b"".join(iov) for iov in TcpCoalescer().coalesce(packets, admit)]
    # A refused segment between two runs may keep them apart where, removed first, it
    # would not: compare what the kernel makes of the writes, segment by segment.
    segments = [p for written in got for p in split_packet(written)]
    for segment in segments:
        assert_valid(bytes(segment))
    ip_len = 40 if v6 else 20
    assert [_essence(p, ip_len) for p in segments] == [_essence(p, ip_len) for p in each]


def _essence(packet: bytes | bytearray, ip_len: int) -> tuple[bytes, bytes, int]:
    """Addresses, ports and sequence number; payload; flags but PSH (which a run carries on
    its last segment): what a segment brings."""
    addresses = bytes(packet[8:40] if ip_len == 40 else packet[12:20])
    ports_seq = bytes(packet[ip_len : ip_len + 8])
    return addresses + ports_seq, bytes(packet[ip_len + 20 :]), packet[ip_len + 13] & ~PSH


def test_a_run_whose_first_segment_is_held_goes_out_segment_by_segment() -> None:
    """A run's first segment held (its name still resolving): the others are each
    checked on their own, none is lost or glued to the held one."""
    translate = destination_translation(False)
    held: list[bytes] = []

    def admit(packet: bytes) -> bytes | None:
        if not held:
            held.append(packet)
            return None
        return translate(packet)

    packets = _run(4)
    out = [b"".join(iov) for iov in TcpCoalescer().coalesce(packets, admit)]
    assert held == [packets[0]]
    assert len(out) == 3
    assert [struct.unpack_from("<BB", b)[1] for b in out] == [GSO_NONE] * 3
    assert [b[VNET_LEN:] for b in out] == [translate(p) for p in packets[1:]]


def test_a_pure_ack_after_a_run_is_written_on_its_own() -> None:
    """A segment without payload continuing a run (a duplicate ACK, which TCP counts) is
    never glued on: a super-packet cut by gso_size would lose it."""
    packets = [*_run(2, size=100), tcp_packet(b"", seq=1200)]
    out = coalesce(packets)
    assert [struct.unpack_from("<BB", b)[1] for b in out] == [GSO_TCPV4, GSO_NONE]
    assert out[1][VNET_LEN:] == packets[2]
