"""Tiny read-only views of IPv4/IPv6 packet headers (RFC 791 §3.1, RFC 8200 §3).

Addresses are returned as ``(version, int)`` so that routing tables can match
prefixes with shifts; ``None`` means the packet is too short or not IP.
"""

from __future__ import annotations

IPV4_HEADER_LEN = 20  # RFC 791 §3.1, without options
IPV6_HEADER_LEN = 40  # RFC 8200 §3


def version(packet: bytes | bytearray | memoryview) -> int | None:
    """4 or 6 when the packet is long enough for that version's header, else None."""
    if not packet:
        return None
    v = packet[0] >> 4
    if v == 4 and len(packet) >= IPV4_HEADER_LEN:
        return 4
    if v == 6 and len(packet) >= IPV6_HEADER_LEN:
        return 6
    return None


def destination(packet: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(version, destination address as int)."""
    v = version(packet)
    if v == 4:
        return 4, int.from_bytes(packet[16:20], "big")
    if v == 6:
        return 6, int.from_bytes(packet[24:40], "big")
    return None


def source(packet: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(version, source address as int)."""
    v = version(packet)
    if v == 4:
        return 4, int.from_bytes(packet[12:16], "big")
    if v == 6:
        return 6, int.from_bytes(packet[8:24], "big")
    return None


def total_length(packet: bytes | bytearray | memoryview) -> int | None:
    """The length the header claims (IPv4 total length; IPv6 payload length + 40),
    or None when it is shorter than the header or longer than ``packet``."""
    v = version(packet)
    if v == 4:
        n = int.from_bytes(packet[2:4], "big")
        if n < IPV4_HEADER_LEN:
            return None
    elif v == 6:
        n = int.from_bytes(packet[4:6], "big") + IPV6_HEADER_LEN
    else:
        return None
    return n if n <= len(packet) else None
