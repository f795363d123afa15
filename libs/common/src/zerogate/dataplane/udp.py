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
Both are probed at startup and dropped if the kernel refuses them. Datagrams
from many sources (a server's queries) are read with one ``recvmmsg`` and
answered with one ``sendmmsg`` (:class:`DatagramBatch`, through ``ctypes``;
one ``recvfrom``/``sendto`` each where libc lacks them).

:class:`RunSender` and :func:`raise_buffers` are the one way every Zerogate
packet path sends batches: the WireGuard interface, the TURN relay's shell
and the agents' relayed paths (ChannelData) all use them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any, Literal

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


# --------------------------------------------------------------------------- recvmmsg/sendmmsg


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("hdr", _MsgHdr), ("len", ctypes.c_uint))


_SOCKADDR = 28  # sizeof(struct sockaddr_in6), the larger of the two families
_MSG_DONTWAIT = 0x40
_AGAIN = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})
# Offsets in the arrays viewed as 32- and 64-bit words (the structures' fields are aligned).
_HDR_U32 = ctypes.sizeof(_MMsgHdr) // 4
_HDR_U64 = ctypes.sizeof(_MMsgHdr) // 8
_NAMELEN_U32 = _MsgHdr.namelen.offset // 4
_LEN_U32 = _MMsgHdr.len.offset // 4
_NAME_U64 = _MsgHdr.name.offset // 8


def _load_mmsg() -> tuple[Any, Any] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = (
        ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p,
    )  # fmt: skip
    recv.restype = ctypes.c_int
    send.argtypes = (ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int)
    send.restype = ctypes.c_int
    return recv, send


_MMSG = _load_mmsg()
#: Whether libc has ``recvmmsg``/``sendmmsg`` (:class:`DatagramBatch` then uses them).
HAVE_MMSG = _MMSG is not None


def _words(array: ctypes.Array[Any], fmt: Literal["I", "Q"]) -> memoryview[int]:
    raw = (ctypes.c_ubyte * ctypes.sizeof(array)).from_buffer(array)
    return memoryview(raw).cast("B").cast(fmt)


def sockaddr_address(raw: bytes | memoryview) -> tuple[Any, ...]:
    """A ``struct sockaddr_in``/``sockaddr_in6`` as the socket module writes it.

    ``(host, port)`` for IPv4, ``(host, port, flowinfo, scope_id)`` for IPv6;
    ValueError for anything else.
    """
    family = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, bytes(raw[4:8])), port
    if family == socket.AF_INET6 and len(raw) >= 28:
        flowinfo = int.from_bytes(raw[4:8], "big")
        scope_id = int.from_bytes(raw[24:28], "little")
        return socket.inet_ntop(socket.AF_INET6, bytes(raw[8:24])), port, flowinfo, scope_id
    raise ValueError(f"not an IPv4 or IPv6 socket address (family {family})")


class DatagramBatch:
    """Reads up to ``count`` datagrams in one call and answers them in one call.

    ``receive()`` returns the datagrams waiting on the non-blocking ``sock``
    (``[]`` when none; other errors raise ``OSError``); ``reply(i, payload)``
    queues an answer to the sender of the ``i``-th, which ``flush()`` sends
    (``receive()`` flushes first: the senders' addresses live until the next
    read; a reply larger than ``size`` is sent at once on its own). A reply
    that cannot be sent is dropped and counted in ``dropped``, as a lost
    datagram would be; a datagram longer than ``size`` is cut, as by
    ``recvfrom(size)``. ``source(i)`` is the ``i``-th sender as an
    endpoint, for answers given later with ``sock.sendto``.

    With ``recvmmsg``/``sendmmsg`` (``native``) a batch costs two system calls
    and no per-datagram address objects; without them (or with ``native=False``)
    it reads and sends one datagram per call.
    """

    def __init__(
        self, sock: socket.socket, *, count: int = 64, size: int = 4096, native: bool = True
    ) -> None:
        self.sock = sock
        self.count = count
        self.size = size
        self.dropped = 0
        self.native = native and _MMSG is not None
        self._queued = 0
        self._received = 0
        # The portable form: what recvfrom said, and what to send.
        self._sources: list[Any] = []
        self._outbox: list[tuple[bytes, Any]] = []
        if not self.native:
            return
        self._recv_area = (ctypes.c_ubyte * (count * size))()
        self._send_area = (ctypes.c_ubyte * (count * size))()
        self._names = (ctypes.c_ubyte * (count * _SOCKADDR))()
        self._recv_iov = (_IoVec * count)()
        self._send_iov = (_IoVec * count)()
        self._recv = (_MMsgHdr * count)()
        self._send = (_MMsgHdr * count)()
        names = ctypes.addressof(self._names)
        self._names_at = names
        for i in range(count):
            self._recv_iov[i].base = ctypes.addressof(self._recv_area) + i * size
            self._recv_iov[i].len = size
            self._send_iov[i].base = ctypes.addressof(self._send_area) + i * size
            hdr = self._recv[i].hdr
            hdr.name = names + i * _SOCKADDR
            hdr.namelen = _SOCKADDR
            hdr.iov = ctypes.pointer(self._recv_iov[i])
            hdr.iovlen = 1
            out = self._send[i].hdr
            out.iov = ctypes.pointer(self._send_iov[i])
            out.iovlen = 1
        self._recv_view = memoryview(self._recv_area).cast("B")
        self._send_view = memoryview(self._send_area).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        self._recv_u32 = _words(self._recv, "I")
        self._send_u32 = _words(self._send, "I")
        self._send_u64 = _words(self._send, "Q")
        self._send_iov_u64 = _words(self._send_iov, "Q")

    def receive(self) -> list[bytes]:
        """The datagrams waiting now, at most ``count`` (``[]``: none)."""
        if self._queued:
            self.flush()
        if not self.native:
            return self._receive_portable()
        words = self._recv_u32
        for i in range(self._received):
            words[i * _HDR_U32 + _NAMELEN_U32] = _SOCKADDR
        self._received = 0
        assert _MMSG is not None
        got = _MMSG[0](self.sock.fileno(), self._recv, self.count, _MSG_DONTWAIT, None)
        if got < 0:
            err = ctypes.get_errno()
            if err in _AGAIN:
                return []
            raise OSError(err, os.strerror(err))
        self._received = got
        view, size = self._recv_view, self.size
        return [
            view[i * size : i * size + words[i * _HDR_U32 + _LEN_U32]].tobytes() for i in range(got)
        ]

    def _receive_portable(self) -> list[bytes]:
        out: list[bytes] = []
        sources = self._sources
        sources.clear()
        recvfrom = self.sock.recvfrom
        for _ in range(self.count):
            try:
                data, source = recvfrom(self.size)
            except BlockingIOError:
                break
            out.append(data)
            sources.append(source)
        self._received = len(out)
        return out

    def source(self, index: int) -> tuple[Any, ...]:
        """The sender of the ``index``-th datagram of the last ``receive()``."""
        if not self.native:
            return self._sources[index]  # type: ignore[no-any-return]
        at = index * _SOCKADDR
        return sockaddr_address(self._names_view[at : at + _SOCKADDR])

    def reply(self, index: int, payload: bytes) -> None:
        """Queue ``payload`` to the sender of the ``index``-th datagram of the last read."""
        if not 0 <= index < self._received:
            raise IndexError(f"datagram {index} was not in the last read")
        if not self.native:
            self._outbox.append((payload, self._sources[index]))
            self._queued += 1
            return
        slot = self._queued
        length = len(payload)
        if length > self.size:  # larger than a slot: on its own, at once
            try:
                self.sock.sendto(payload, self.source(index))
            except OSError:
                self.dropped += 1
            return
        if slot >= self.count:  # more replies than datagrams read: send what is queued
            self.flush()
            slot = 0
        at = slot * self.size
        self._send_view[at : at + length] = payload
        self._send_iov_u64[slot * 2 + 1] = length
        self._send_u64[slot * _HDR_U64 + _NAME_U64] = self._names_at + index * _SOCKADDR
        self._send_u32[slot * _HDR_U32 + _NAMELEN_U32] = self._recv_u32[
            index * _HDR_U32 + _NAMELEN_U32
        ]
        self._queued = slot + 1

    def flush(self) -> int:
        """Send the queued replies; returns how many went out."""
        queued, self._queued = self._queued, 0
        if not queued:
            return 0
        if not self.native:
            return self._flush_portable()
        assert _MMSG is not None
        send, fd, sent = _MMSG[1], self.sock.fileno(), 0
        start = 0
        while start < queued:
            done = send(fd, ctypes.byref(self._send[start]), queued - start, _MSG_DONTWAIT)
            if done > 0:
                start += done
                sent += done
                continue
            if done < 0 and ctypes.get_errno() in _AGAIN:
                self.dropped += queued - start
                break
            self.dropped += 1  # this one was refused (e.g. no route): the rest may go
            start += 1
        return sent

    def _flush_portable(self) -> int:
        sent = 0
        sendto = self.sock.sendto
        for payload, destination in self._outbox:
            try:
                sendto(payload, destination)
                sent += 1
            except OSError:
                self.dropped += 1
        self._outbox.clear()
        return sent
