"""ICMP echo from the client host, for ``zerogate ping`` (a raw socket: the client runs as root).

The echo goes out through the host's routes like any packet, so a resource
address takes the tunnel: the first echo may wait for the connection to be
set up, exactly as an application's first packet would.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import struct
import time

from zerogate.proto.ip.icmp import checksum

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0  # RFC 792
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129  # RFC 4443 §4


def ping(
    address: str, *, count: int = 1, timeout: float = 2.0, interval: float = 0.5
) -> list[float | None]:
    """Round-trip times in ms (None = no reply within ``timeout`` of the last echo)."""
    dst = ipaddress.ip_address(address)
    v6 = dst.version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    ident = int.from_bytes(os.urandom(2), "big")
    sent: dict[int, float] = {}
    rtts: list[float | None] = [None] * count
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        sock.setblocking(False)
        seq = 0
        next_send = time.monotonic()
        end = float("inf")
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                payload = struct.pack("!d", now) + b"zerogate-ping"
                kind = ICMPV6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST
                head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
                if not v6:  # the kernel fills in the ICMPv6 checksum itself
                    head = head[:2] + struct.pack("!H", checksum(head + payload)) + head[4:]
                with contextlib.suppress(OSError):
                    sock.sendto(head + payload, (str(dst), 0))
                sent[seq] = now
                seq += 1
                next_send = now + interval
                if seq == count:
                    end = now + timeout
            if now >= end or (seq == count and all(r is not None for r in rtts)):
                return rtts
            wake = min(next_send if seq < count else end, end)
            ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                data, source = sock.recvfrom(65535)
                got = time.monotonic()
                reply = _reply(v6, data)
                if reply is None or reply[0] != ident or reply[1] not in sent:
                    continue
                if ipaddress.ip_address(str(source[0]).split("%")[0]) != dst:
                    continue
                if rtts[reply[1]] is None:
                    rtts[reply[1]] = round((got - sent[reply[1]]) * 1000.0, 3)


def _reply(v6: bool, data: bytes) -> tuple[int, int] | None:
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
