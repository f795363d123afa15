"""ICMP errors made up locally (RFC 792, RFC 1812 §5.2.7.1, RFC 4443)."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from zerogate.proto.ip.icmp import checksum, unreachable


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
