"""ICMP echo over a raw socket (RFC 792, RFC 4443): one loop for every ping we send.

``zerogate ping`` uses it from the client host and the test lab from inside a
network namespace, so neither needs a ``ping`` binary. The caller opens the
raw socket (where it must: in a namespace, as root); :func:`ping_loop` sends
``count`` echoes ``interval`` apart, matches replies by identifier, sequence
and source address, and waits ``timeout`` after the last echo.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import select
import socket
import time
from dataclasses import dataclass

from zerogate.proto.ip.icmp import echo_reply, echo_request


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
    *,
    count: int,
    interval: float,
    timeout: float,
    payload: bytes,
    linger: bool = False,
) -> PingReport:
    """Echo ``dst`` over the raw ICMP socket ``sock`` (of ``dst``'s family).

    Returns once every reply is in, or ``timeout`` after the last echo; with
    ``linger`` it always waits the full ``timeout``, so late duplicates count.
    An echo that cannot be sent (no route yet) counts as lost.
    """
    v6 = dst.version == 6
    ident = secrets.randbits(16)
    sent: dict[int, float] = {}
    rtts: list[float | None] = [None] * count
    duplicates = 0
    seq = 0
    next_send = time.monotonic()
    end = float("inf")
    sock.setblocking(False)
    while True:
        now = time.monotonic()
        if seq < count and now >= next_send:
            sent[seq] = now
            with contextlib.suppress(OSError):
                sock.sendto(echo_request(v6, ident, seq, payload), (str(dst), 0))
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
        try:
            data, addr = sock.recvfrom(65535)
        except BlockingIOError:
            continue
        got = time.monotonic()
        reply = echo_reply(v6, data)
        if reply is None or reply[0] != ident or reply[1] not in sent:
            continue
        if ipaddress.ip_address(str(addr[0]).split("%")[0]) != dst:
            continue
        if rtts[reply[1]] is None:
            rtts[reply[1]] = (got - sent[reply[1]]) * 1000.0
        else:
            duplicates += 1
