"""ICMP errors made up locally ("administratively prohibited", "unreachable"), and echo.

When a packet is refused (no authorization, a filtered port), the sender
should learn at once instead of waiting for a timeout: the answer quotes the
refused packet as RFC 792 and RFC 4443 §2.4 ask (IPv4: the IP header and the
first 8 bytes of its payload; IPv6: as much as fits in the minimum MTU).
"""

from __future__ import annotations

import struct

from zerogate.proto.ip.packet import IPV4_HEADER_LEN, IPV6_HEADER_LEN

ICMP_DEST_UNREACHABLE = 3  # RFC 792
ICMP_CODE_HOST_UNREACHABLE = 1  # RFC 792
ICMP_CODE_ADMIN_PROHIBITED = 13  # RFC 1812 §5.2.7.1
ICMPV6_DEST_UNREACHABLE = 1  # RFC 4443 §3.1
ICMPV6_CODE_ADMIN_PROHIBITED = 1  # RFC 4443 §3.1
ICMPV6_CODE_ADDRESS_UNREACHABLE = 3  # RFC 4443 §3.1
IPV6_MIN_MTU = 1280  # RFC 8200 §5: an ICMPv6 error must fit in it
PROTO_ICMP = 1
PROTO_ICMPV6 = 58
DEFAULT_TTL = 64
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0  # RFC 792
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129  # RFC 4443 §4.1, §4.2


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _is_icmp_error(packet: bytes) -> bool:
    """Never answer an ICMP error with another (RFC 1122 §3.2.2, RFC 4443 §2.4 (e))."""
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        return packet[9] == PROTO_ICMP and len(packet) > ihl and packet[ihl] not in (0, 8)
    return packet[6] == PROTO_ICMPV6 and len(packet) > IPV6_HEADER_LEN and packet[40] < 128


def unreachable(
    packet: bytes, *, prohibited: bool = True, source: bytes | None = None
) -> bytes | None:
    """The ICMP answer to ``packet``, sent back to its source; None when none is due.

    ``prohibited`` picks "administratively prohibited" (a policy refused it),
    else "host/address unreachable" (nothing there). ``source`` is the address
    the answer comes from (default: the refused packet's destination, as if
    the destination's router answered).
    """
    if len(packet) >= IPV4_HEADER_LEN and packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        if len(packet) < ihl or _is_icmp_error(packet) or packet[16] >= 224:
            return None
        code = ICMP_CODE_ADMIN_PROHIBITED if prohibited else ICMP_CODE_HOST_UNREACHABLE
        quote = packet[: ihl + 8]
        body = struct.pack("!BBHI", ICMP_DEST_UNREACHABLE, code, 0, 0) + quote
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        src = source or packet[16:20]
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45, 0, IPV4_HEADER_LEN + len(body), 0, 0, DEFAULT_TTL, PROTO_ICMP, 0,
            src, packet[12:16],
        )  # fmt: skip
        header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
        return header + body
    if len(packet) >= IPV6_HEADER_LEN and packet[0] >> 4 == 6:
        if _is_icmp_error(packet) or packet[24] == 0xFF:
            return None
        code = ICMPV6_CODE_ADMIN_PROHIBITED if prohibited else ICMPV6_CODE_ADDRESS_UNREACHABLE
        room = IPV6_MIN_MTU - IPV6_HEADER_LEN - 8
        quote = packet[:room]
        src = source or packet[24:40]
        dst = packet[8:24]
        length = 8 + len(quote)
        pseudo = src + dst + struct.pack("!I3xB", length, PROTO_ICMPV6)
        body = struct.pack("!BBHI", ICMPV6_DEST_UNREACHABLE, code, 0, 0) + quote
        body = body[:2] + struct.pack("!H", checksum(pseudo + body)) + body[4:]
        header = struct.pack("!IHBB16s16s", 6 << 28, length, PROTO_ICMPV6, DEFAULT_TTL, src, dst)
        return header + body
    return None


def echo_request(v6: bool, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request's ICMP message, as a raw ICMP socket sends it.

    ICMPv6's checksum covers a pseudo-header the kernel knows and we do not,
    so a raw ICMPv6 socket fills it in; ICMP's is ours to write."""
    kind = ICMPV6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST
    head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:
        return head + payload
    return struct.pack("!BBHHH", kind, 0, checksum(head + payload), ident, seq) + payload


def echo_reply(v6: bool, data: bytes) -> tuple[int, int] | None:
    """``(identifier, sequence)`` of an echo reply read from a raw socket, else None.

    A raw IPv4 socket's reads start with the IP header; a raw ICMPv6 socket's
    with the ICMPv6 message."""
    if not v6:
        if len(data) < IPV4_HEADER_LEN:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < 8:
        return None
    kind, code, _csum, ident, seq = struct.unpack("!BBHHH", data[:8])
    if code != 0 or kind != (ICMPV6_ECHO_REPLY if v6 else ICMP_ECHO_REPLY):
        return None
    return ident, seq
