"""ICMP errors made up locally (RFC 792, RFC 1812 §5.2.7.1, RFC 4443), and echo."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.proto.ip.icmp import checksum, echo_reply, echo_request, unreachable


def _tcp_v4(src: str, dst: str) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + struct.pack("!HHII", 40000, 443, 1, 0) + bytes(12)


def test_ipv4_admin_prohibited_quotes_the_header_and_8_bytes() -> None:
    packet = _tcp_v4("100.64.0.5", "10.1.2.3")
    answer = unreachable(packet)
    assert answer is not None
    assert answer[0] == 0x45
    assert answer[9] == 1  # ICMP
    assert answer[12:16] == packet[16:20]  # from the refused destination
    assert answer[16:20] == packet[12:16]  # back to the sender
    assert checksum(answer[:20]) == 0
    icmp = answer[20:]
    assert icmp[0] == 3  # destination unreachable
    assert icmp[1] == 13  # communication administratively prohibited
    assert checksum(icmp) == 0
    assert icmp[8:] == packet[:28]  # IP header + first 8 bytes (RFC 792)
    assert unreachable(packet, prohibited=False)[21] == 1  # host unreachable


def test_ipv6_admin_prohibited_has_a_valid_checksum() -> None:
    src = ipaddress.IPv6Address("fd00:2021:1111::5").packed
    dst = ipaddress.IPv6Address("fd00:5::10").packed
    packet = struct.pack("!IHBB16s16s", 6 << 28, 20, 6, 64, src, dst) + bytes(20)
    answer = unreachable(packet)
    assert answer is not None
    assert answer[6] == 58
    assert answer[8:24] == dst
    assert answer[24:40] == src
    icmp = answer[40:]
    assert icmp[0] == 1  # destination unreachable (RFC 4443 §3.1)
    assert icmp[1] == 1  # administratively prohibited
    pseudo = dst + src + struct.pack("!I3xB", len(icmp), 58)
    assert checksum(pseudo + icmp) == 0
    assert len(answer) <= 1280  # fits the IPv6 minimum MTU


def test_no_error_about_an_error() -> None:
    packet = _tcp_v4("100.64.0.5", "10.1.2.3")
    error = unreachable(packet)
    assert error is not None
    assert unreachable(error) is None


@given(st.binary(max_size=100))
def test_garbage_never_raises(data: bytes) -> None:
    unreachable(data)


def test_rfc1071_checksum_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum (with end-around carry) to ddf2.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == (~0xDDF2 & 0xFFFF)
    # A message carrying its own checksum sums to zero.
    msg = bytes.fromhex("0800000012340001") + b"abc"
    with_csum = msg[:2] + checksum(msg).to_bytes(2, "big") + msg[4:]
    assert checksum(with_csum) == 0


def test_echo_request_and_reply_layout() -> None:
    # RFC 792: type 8 request / type 0 reply, code 0, identifier and sequence.
    req = echo_request(False, 0x1234, 7, b"payload")
    assert req[:2] == bytes([8, 0])
    assert req[4:8] == bytes.fromhex("12340007")
    assert req[8:] == b"payload"
    assert checksum(req) == 0
    ip_header = bytes([0x45]) + bytes(19)
    reply = bytes([0, 0]) + req[2:]
    assert echo_reply(False, ip_header + reply) == (0x1234, 7)
    assert echo_reply(False, ip_header + req) is None  # a request is not a reply
    # RFC 4443: 128 request / 129 reply; the kernel writes the checksum; no IP
    # header on raw ICMPv6 reads.
    req6 = echo_request(True, 0xBEEF, 2, b"")
    assert req6 == bytes([128, 0, 0, 0, 0xBE, 0xEF, 0, 2])
    assert echo_reply(True, bytes([129, 0]) + req6[2:]) == (0xBEEF, 2)
    assert echo_reply(True, b"\x81") is None


@given(st.binary(max_size=64), st.booleans())
@settings(max_examples=300, deadline=None)
def test_echo_reply_parser_never_crashes(data: bytes, v6: bool) -> None:
    result = echo_reply(v6, data)
    assert result is None or (0 <= result[0] < 65536 and 0 <= result[1] < 65536)
