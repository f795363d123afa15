"""The interface's UDP sockets, read and written in batches.

One socket per address family, both bound to the listen port (an AF_INET6
socket with ``IPV6_V6ONLY=1`` beside an AF_INET one, so sources come back in
their plain form and no v4-mapped address is ever handed to the core).
Endpoints are ``(host, port)`` tuples everywhere.

Speed (Linux): buffers are raised with ``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE``
(:func:`raise_buffers`); UDP GSO (``UDP_SEGMENT``) sends up to
:data:`GSO_MAX_SEGMENTS` equal-sized datagrams to one destination in one
``sendmsg`` (:class:`RunSender`); UDP GRO (``UDP_GRO``) lets one ``recvmsg``
return many datagrams glued together, with their size in a control message.
Both are probed at startup and dropped if the kernel refuses them.

:class:`RunSender` and :func:`raise_buffers` are the one way every Zerogate
packet path sends batches: the WireGuard interface, the TURN relay's shell
and the agents' relayed paths (ChannelData) all use them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import time
from collections.abc import Sequence

from zerogate.dataplane.errors import DataplaneError
from zerogate.proto.net import Endpoint as Endpoint  # re-exported: paths.py reads it here

log = logging.getLogger(__name__)

SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h
UDP_GRO = 104  # linux/udp.h
SO_SNDBUFFORCE = 32  # asm-generic/socket.h
SO_RCVBUFFORCE = 33
SO_MARK = 36
SOCKET_BUFFER = 8 * 1024 * 1024
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS in linux/udp.h
GSO_MAX_BYTES = 65000  # stay under the 65507-byte IPv4 UDP payload limit
#: What sendmsg answers when the kernel, the route or the device refuses GSO.
NO_GSO_ERRNOS = frozenset(
    {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.ENOTSUP}
)
RECV_SIZE = 65536
CMSG_SPACE = socket.CMSG_SPACE(4)
_U16 = struct.Struct("=H")
_I32 = struct.Struct("=i")
BIND_ATTEMPTS = 16
IP_MTU = 14  # linux/in.h
IPV6_MTU = 24  # linux/in6.h
IPV4_HEADER = 20  # RFC 791 (no options)
IPV6_HEADER = 40  # RFC 8200 §3
UDP_HEADER = 8  # RFC 768
PATH_MTU_TTL = 10.0  # seconds a route MTU is trusted before it is read again
MAX_CACHED_DESTINATIONS = 4096


class UdpError(DataplaneError):
    """Binding the UDP sockets failed."""


def raise_buffers(sock: socket.socket, size: int = SOCKET_BUFFER) -> None:
    """Raise both kernel buffers to ``size``: past ``net.core.[rw]mem_max`` where we may.

    ``SO_*BUFFORCE`` needs CAP_NET_ADMIN; without it the plain options are
    capped by the sysctls. With the default ~200 KiB a burst overflows at
    about 50k datagrams/s.
    """
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, size)


class RunSender:
    """Sends datagrams to one destination in as few system calls as the kernel allows.

    A run of equal-sized datagrams (only the last may be shorter, at most
    :data:`GSO_MAX_SEGMENTS` and :data:`GSO_MAX_BYTES`) leaves in one
    ``sendmsg`` with ``UDP_SEGMENT``; the rest one ``sendto`` each. When the
    kernel refuses GSO (:data:`NO_GSO_ERRNOS`) the run goes out datagram by
    datagram and GSO stays off for this sender. Never raises: failures are
    returned as a count (a full buffer or an unreachable host drops).
    """

    __slots__ = ("enabled", "gso_sends")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        #: sendmsg calls that carried several datagrams
        self.gso_sends = 0

    def send(
        self,
        sock: socket.socket,
        destination: Endpoint,
        datagrams: Sequence[bytes],
        unfragmented: int = GSO_MAX_BYTES,
    ) -> int:
        """Send ``datagrams`` in order; returns how many could not be sent.

        A datagram larger than ``unfragmented`` (the path's limit) goes alone:
        the kernel would fragment a whole GSO super-datagram as one datagram
        (seen on Linux 6.x over IPv6), so each is fragmented on its own.
        """
        count = len(datagrams)
        if count == 1 or not self.enabled:
            return self._one_by_one(sock, destination, datagrams)
        failed = 0
        start = 0
        while start < count:
            size = len(datagrams[start])
            end = start + 1
            if size <= unfragmented:
                total = size
                limit = min(count, start + GSO_MAX_SEGMENTS)
                while end < limit:
                    nxt = len(datagrams[end])
                    if nxt > size or total + nxt > GSO_MAX_BYTES:
                        break
                    total += nxt
                    end += 1
                    if nxt < size:  # only the last segment may be shorter
                        break
            if end - start == 1 or not self.enabled:
                failed += self._one_by_one(sock, destination, datagrams[start:end])
            else:
                failed += self._gso(sock, destination, datagrams[start:end], size)
            start = end
        return failed

    def _gso(
        self, sock: socket.socket, destination: Endpoint, run: Sequence[bytes], size: int
    ) -> int:
        try:
            sock.sendmsg(run, [(SOL_UDP, UDP_SEGMENT, _U16.pack(size))], 0, destination)
        except OSError as exc:
            if exc.errno not in NO_GSO_ERRNOS:
                return len(run)
            log.info("UDP GSO refused (%s); sending one by one", exc.strerror)
            self.enabled = False
            return self._one_by_one(sock, destination, run)
        self.gso_sends += 1
        return 0

    @staticmethod
    def _one_by_one(sock: socket.socket, destination: Endpoint, datagrams: Sequence[bytes]) -> int:
        failed = 0
        for data in datagrams:
            try:
                sock.sendto(data, destination)
            except OSError:
                failed += 1
        return failed


class UdpSockets:
    """Bound UDP sockets for one interface (IPv4 always, IPv6 when the host has it)."""

    def __init__(self, v4: socket.socket, v6: socket.socket | None) -> None:
        self.v4 = v4
        self.v6 = v6
        self.port: int = v4.getsockname()[1]
        self.sender = RunSender(self._probe(UDP_SEGMENT, 1280))
        self.gro = self._probe(UDP_GRO, 1)
        self.send_errors = 0
        # destination -> (largest datagram that leaves unfragmented, when we looked)
        self._segment_limits: dict[Endpoint, tuple[int, float]] = {}

    @classmethod
    def bind(cls, port: int | None, *, fwmark: int | None = None) -> UdpSockets:
        """Bind both families to ``port`` (0 or None: one free port for both)."""
        wanted = port or 0
        last_error: OSError | None = None
        for _ in range(BIND_ATTEMPTS):
            v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                v4.bind(("0.0.0.0", wanted))  # noqa: S104 - a VPN listens on every address
            except OSError as exc:
                v4.close()
                raise UdpError(
                    f"ListenPort: cannot bind UDP port {wanted}: {exc.strerror}"
                ) from exc
            chosen = v4.getsockname()[1]
            v6: socket.socket | None = None
            if socket.has_ipv6:
                v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    v6.bind(("::", chosen))
                except OSError as exc:
                    v6.close()
                    v6 = None
                    if exc.errno == errno.EADDRINUSE:
                        v4.close()
                        last_error = exc
                        if wanted:
                            raise UdpError(
                                f"ListenPort: cannot bind IPv6 UDP port {wanted}: {exc.strerror}"
                            ) from exc
                        continue
                    log.info("no IPv6 UDP socket: %s", exc.strerror)
            for sock in (v4, v6):
                if sock is None:
                    continue
                sock.setblocking(False)
                raise_buffers(sock)
                if fwmark:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
                    except OSError as exc:
                        raise UdpError(f"FwMark: cannot set: {exc.strerror}") from exc
            return cls(v4, v6)
        raise UdpError(f"ListenPort: no free port for both families: {last_error}")

    def _probe(self, option: int, value: int) -> bool:
        try:
            for sock in self.sockets():
                sock.setsockopt(SOL_UDP, option, value)
            if option == UDP_SEGMENT:
                for sock in self.sockets():  # a per-call size is given in sendmsg instead
                    sock.setsockopt(SOL_UDP, option, 0)
        except OSError:
            return False
        return True

    def sockets(self) -> list[socket.socket]:
        return [self.v4] if self.v6 is None else [self.v4, self.v6]

    def socket_for(self, host: str) -> socket.socket | None:
        if ":" in host:
            return self.v6
        return self.v4

    def send(self, destination: Endpoint, data: bytes) -> None:
        """Send one datagram; a full buffer or an unreachable host drops it."""
        sock = self.v6 if ":" in destination[0] else self.v4
        if sock is None:
            self.send_errors += 1
            return
        try:
            sock.sendto(data, destination)
        except OSError:
            self.send_errors += 1

    @property
    def gso(self) -> bool:
        """Whether UDP GSO is (still) in use."""
        return self.sender.enabled

    def send_many(self, destination: Endpoint, datagrams: Sequence[bytes]) -> None:
        """Send datagrams to one destination, with GSO where sizes allow."""
        sock = self.v6 if ":" in destination[0] else self.v4
        if sock is None:
            self.send_errors += len(datagrams)
            return
        several = len(datagrams) > 1 and self.sender.enabled
        limit = self.segment_limit(destination) if several else GSO_MAX_BYTES
        self.send_errors += self.sender.send(sock, destination, datagrams, limit)

    def segment_limit(self, destination: Endpoint) -> int:
        """The largest UDP payload to ``destination`` that needs no fragmenting.

        From the route's MTU (``IP_MTU``/``IPV6_MTU`` on a socket connected to
        it), cached for :data:`PATH_MTU_TTL` seconds.
        """
        now = time.monotonic()
        cached = self._segment_limits.get(destination)
        if cached is not None and now - cached[1] < PATH_MTU_TTL:
            return cached[0]
        v6 = ":" in destination[0]
        family, level, option, header = (
            (socket.AF_INET6, socket.IPPROTO_IPV6, IPV6_MTU, IPV6_HEADER + UDP_HEADER)
            if v6
            else (socket.AF_INET, socket.IPPROTO_IP, IP_MTU, IPV4_HEADER + UDP_HEADER)
        )
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(destination)
                limit = probe.getsockopt(level, option) - header
        except OSError:
            limit = 0  # no route now: send one by one, and look again later
        if len(self._segment_limits) >= MAX_CACHED_DESTINATIONS:
            self._segment_limits.clear()
        self._segment_limits[destination] = (limit, now)
        return limit

    def close(self) -> None:
        for sock in self.sockets():
            sock.close()


def gro_segment_size(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The datagram size of a GRO batch from recvmsg's control data (0 if none)."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= _I32.size:
            return int(_I32.unpack_from(data)[0])
    return 0
