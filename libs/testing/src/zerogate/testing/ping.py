"""ICMP echo from a raw socket (RFC 792, RFC 4443), so no ``ping`` binary is needed."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0  # RFC 792
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129  # RFC 4443 §4.1, §4.2


def _inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _echo_request(v6: bool, ident: int, seq: int, payload: bytes) -> bytes:
    kind = ICMPV6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST
    head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:  # the kernel fills in the ICMPv6 checksum (it needs the pseudo-header)
        return head + payload
    csum = _inet_checksum(head + payload)
    return struct.pack("!BBHHH", kind, 0, csum, ident, seq) + payload


def _echo_reply(v6: bool, data: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply, else None. IPv4 raw reads include the IP header."""
    if not v6:
        if len(data) < 20:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < 8:
        return None
    kind, code, _csum, ident, seq = struct.unpack("!BBHHH", data[:8])
    if code != 0 or kind != (ICMPV6_ECHO_REPLY if v6 else ICMP_ECHO_REPLY):
        return None
    return ident, seq


@dataclass(frozen=True)
class PingReport:
    """Per-request round-trip times in ms (``None`` = lost) and the duplicate replies seen."""

    rtts: tuple[float | None, ...]
    duplicates: int

    @property
    def received(self) -> int:
        return sum(r is not None for r in self.rtts)


def ping_loop(
    sock: socket.socket,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
    count: int,
    interval: float,
    timeout: float,
    payload_size: int,
    linger: bool,
) -> PingReport:
    v6 = dst.version == 6
    ident = secrets.randbits(16)
    payload = (b"zerogate-netlab-" * (payload_size // 16 + 1))[:payload_size]
    sent: dict[int, float] = {}
    rtts: list[float | None] = [None] * count
    duplicates = 0
    seq = 0
    next_send = time.monotonic()
    end = float("inf")
    while True:
        now = time.monotonic()
        if seq < count and now >= next_send:
            sent[seq] = now
            with contextlib.suppress(OSError):  # no route yet: counts as a loss
                sock.sendto(_echo_request(v6, ident, seq, payload), (str(dst), 0))
            seq += 1
            next_send = now + interval
            if seq == count:
                end = now + timeout
        done = seq == count and not linger and all(r is not None for r in rtts)
        if now >= end or done:
            return PingReport(tuple(rtts), duplicates)
        wake = min(next_send if seq < count else end, end)
        ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if not ready:
            continue
        data, addr = sock.recvfrom(65535)
        got = time.monotonic()
        reply = _echo_reply(v6, data)
        if reply is None or reply[0] != ident or reply[1] not in sent:
            continue
        if ipaddress.ip_address(str(addr[0]).split("%")[0]) != dst:
            continue
        if rtts[reply[1]] is None:
            rtts[reply[1]] = (got - sent[reply[1]]) * 1000.0
        else:
            duplicates += 1
