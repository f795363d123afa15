"""IP packets for tests and benches, built and checked with a checksum written apart
from the code under test (RFC 1071 word by word, RFC 9293 / RFC 8200 pseudo-headers)."""

from __future__ import annotations

import ipaddress
import struct

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58  # IANA protocol numbers


def ones_sum(data: bytes) -> int:
    """RFC 1071, word by word (deliberately not the code's modulo trick)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


def csum(data: bytes) -> int:
    return ~ones_sum(data) & 0xFFFF


def _pseudo(version: int, src: bytes, dst: bytes, protocol: int, length: int) -> bytes:
    if version == 4:
        return src + dst + struct.pack("!BBH", 0, protocol, length)
    return src + dst + struct.pack("!I3xB", length, protocol)


def l4(protocol: int, sport: int, dport: int, payload: bytes, *, kind: int = 8) -> bytes:
    """A TCP/UDP/ICMP header (checksum zero) and payload; ``sport`` is the echo id for ICMP."""
    if protocol == TCP:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x10, 65535, 0, 0) + payload
    if protocol == UDP:
        return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHH", kind, 0, 0, sport, dport) + payload


def finish(version: int, protocol: int, src: bytes, dst: bytes, body: bytes, *,
           udp_zero: bool = False) -> bytes:  # fmt: skip
    """Fill in the L4 checksum and put an IP header in front."""
    out = bytearray(body)
    at = {TCP: 16, UDP: 6, ICMP: 2, ICMPV6: 2}.get(protocol)
    if at is not None and not (udp_zero and protocol == UDP):
        if protocol == ICMP:
            value = csum(body)
        else:
            value = csum(_pseudo(version, src, dst, protocol, len(body)) + body)
            if value == 0 and protocol == UDP:
                value = 0xFFFF
        out[at : at + 2] = struct.pack("!H", value)
    body = bytes(out)
    if version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 7, 0, 64, protocol, 0,
                             src, dst)  # fmt: skip
        header = header[:10] + struct.pack("!H", csum(header)) + header[12:]
    else:
        header = struct.pack("!IHBB16s16s", 6 << 28, len(body), protocol, 64, src, dst)
    return header + body


def packet(src: str, dst: str, protocol: int, sport: int = 40000, dport: int = 443,
           payload: bytes = b"hello", *, kind: int | None = None,
           udp_zero: bool = False) -> bytes:  # fmt: skip
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if protocol == ICMP and a.version == 6:
        protocol = ICMPV6
    if kind is None:
        kind = 128 if protocol == ICMPV6 else 8
    body = l4(protocol, sport, dport, payload, kind=kind)
    return finish(a.version, protocol, a.packed, b.packed, body, udp_zero=udp_zero)


def checksums_ok(data: bytes) -> bool:
    """Every checksum of ``data`` (IPv4 header, TCP/UDP/ICMP/ICMPv6) adds up."""
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 0x0F) * 4
        if ones_sum(data[:ihl]) != 0xFFFF:
            return False
        protocol, src, dst, body = data[9], data[12:16], data[16:20], data[ihl:]
    else:
        protocol, src, dst, body = data[6], data[8:24], data[24:40], data[40:]
    if protocol == UDP and version == 4 and body[6:8] == b"\0\0":
        return True
    if protocol == ICMP:
        return ones_sum(body) == 0xFFFF
    if protocol in (TCP, UDP, ICMPV6):
        return ones_sum(_pseudo(version, src, dst, protocol, len(body)) + body) == 0xFFFF
    return True


def addresses(data: bytes) -> tuple[str, str]:
    if data[0] >> 4 == 4:
        return str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20]))
    return str(ipaddress.IPv6Address(data[8:24])), str(ipaddress.IPv6Address(data[24:40]))
