"""ICMP echo from the client host, for ``zerogate ping`` (a raw socket: the client runs as root).

The echo goes out through the host's routes like any packet, so a resource
address takes the tunnel: the first echo may wait for the connection to be
set up, exactly as an application's first packet would.
"""

from __future__ import annotations

import ipaddress
import socket

from zerogate.common.ping import ping_loop

PAYLOAD = b"zerogate-ping"


def ping(
    address: str, *, count: int = 1, timeout: float = 2.0, interval: float = 0.5
) -> list[float | None]:
    """Round-trip times in ms (None = no reply within ``timeout`` of the last echo)."""
    dst = ipaddress.ip_address(address)
    if dst.version == 6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        report = ping_loop(
            sock, dst, count=count, interval=interval, timeout=timeout, payload=PAYLOAD
        )
    return [None if rtt is None else round(rtt, 3) for rtt in report.rtts]
