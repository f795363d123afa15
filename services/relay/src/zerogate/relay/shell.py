"""The relay's packet path: the asyncio shell around the sans-IO TURN core.

::

    client ─UDP 3478─▶ listen socket ─ChannelData─▶ core.channel_to_peer ─▶ relay socket ─▶ peer
                                     └─STUN───────▶ core.handle_client_datagram
    peer ─UDP─▶ relay socket ─▶ core.peer_to_client ─▶ listen socket ─▶ client
                             └─(no channel)─▶ core.handle_peer_datagram (Data indication)

Why it looks the way it does (all measured on a 2-core box):

* Sockets are non-blocking and read from ``loop.add_reader`` callbacks that
  drain up to :data:`BATCH` datagrams per wake-up. An asyncio
  ``DatagramProtocol`` moves ~35k datagrams/s here; a reader that drains in
  batches moves several times that.
* Kernel buffers are raised to several MB (``SO_RCVBUFFORCE`` as root, else
  ``SO_RCVBUF`` up to ``net.core.rmem_max``): with the default ~200 KiB a burst
  overflows them at ~50k datagrams/s.
* ChannelData and peer datagrams never become message objects: the core's fast
  paths return where to send, the shell sends, counters are summed per batch,
  nothing is logged.
* After any slow-path input the shell drains the core in the fixed order
  commands → transmits → timer (see :mod:`zerogate.proto.turn.server`). Each
  :class:`~zerogate.proto.turn.OpenRelaySocket` is carried out and its outcome
  reported before the next command is polled: a port another local socket holds
  (an ephemeral port of some outgoing connection) makes the core order another
  port, and the client gets 508 only once every port of the range was tried.

* Runs of equal-sized datagrams for one destination within a batch (a bulk
  flow through one channel) leave in one ``sendmsg`` with UDP GSO
  (``UDP_SEGMENT``, Linux 4.18+) through the shared
  :class:`zerogate.dataplane.udp.RunSender`: on loopback that cut the relay's
  CPU time per packet from ~7.7 µs to ~3.7 µs. Where the kernel refuses GSO it
  falls back to one ``sendto`` per datagram. Buffers are raised with the same
  :func:`zerogate.dataplane.udp.raise_buffers`. GRO on receive is not used
  (yet): each datagram is still one ``recvfrom_into``.

One relay socket is bound per relay address of an allocation, on the listen
address of its family (or the wildcard), so a relay behind a 1:1 NAT advertises
its public address while binding its local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from zerogate.common.listen import bind_failure
from zerogate.dataplane.udp import RunSender, raise_buffers
from zerogate.proto.net import ClientAddr, Endpoint, PeerAddr, RelayAddr
from zerogate.proto.turn import CloseRelaySocket, OpenRelaySocket, Server

log = logging.getLogger(__name__)

#: Datagrams drained per reader wake-up before yielding to the loop.
BATCH: Final = 128
#: Largest UDP payload (IPv4 total length 65535 − 20 − 8).
MAX_DATAGRAM: Final = 65535
#: Relay sockets get smaller buffers than the listen socket: there are many.
RELAY_SOCKET_BUFFER: Final = 1024 * 1024
#: STUN message type of a Data indication (RFC 8656 section 18: method 0x007,
#: indication class 0b01 → 0x0017).
DATA_INDICATION: Final = b"\x00\x17"


class RelayStartError(Exception):
    """The relay cannot start (a listen socket cannot be bound); names the setting."""


@dataclass
class Counters:
    """Packet-path counters, summed per batch (Prometheus counters, monotonic)."""

    #: Datagrams / payload bytes relayed client → peer (ChannelData and Send indications).
    to_peer_packets: int = 0
    to_peer_bytes: int = 0
    #: Datagrams / payload bytes relayed peer → client (ChannelData and Data indications).
    to_client_packets: int = 0
    to_client_bytes: int = 0
    #: Datagrams received on the listen socket / on relay sockets.
    client_datagrams: int = 0
    peer_datagrams: int = 0
    #: Datagrams the kernel refused (buffer full, unreachable): dropped.
    send_errors: int = 0
    #: Relay ports that could not be bound (another port was tried each time).
    relay_bind_failures: int = 0
    #: ChannelData the fast path dropped (unbound channel, bad length, relay gone).
    fast_path_drops: int = 0
    #: sendmsg calls that carried several datagrams (UDP GSO).
    gso_sends: int = 0


def _udp_socket(host: str, port: int, buffer: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
        raise_buffers(sock, buffer)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class RelayShell:
    """Owns the sockets of one TURN core and moves its datagrams.

    ``listen`` is one ``(ip, port)`` per address family. ``relay_bind`` maps an
    advertised relay IP to the local IP its sockets bind (missing: the listen
    IP of that family). Call :meth:`start` inside the running loop, :meth:`close`
    to stop.
    """

    def __init__(
        self,
        core: Server,
        listen: list[Endpoint],
        *,
        relay_bind: dict[str, str] | None = None,
        socket_buffer: int = 8 * 1024 * 1024,
        gso: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.counters = Counters()
        self._listen_addrs = listen
        self._relay_bind = dict(relay_bind or {})
        self._socket_buffer = socket_buffer
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        #: family (4/6) → listen socket
        self._listen: dict[int, socket.socket] = {}
        #: advertised relay address → its socket
        self._relays: dict[RelayAddr, socket.socket] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._buf = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buf)
        self._closed = False
        self._sender = RunSender(gso and sys.platform == "linux")

    # -- lifecycle -------------------------------------------------------------
    @property
    def bound(self) -> list[Endpoint]:
        """The listen addresses actually bound (ports resolved when 0 was asked)."""
        return [s.getsockname()[:2] for s in self._listen.values()]

    @property
    def relay_sockets(self) -> int:
        return len(self._relays)

    def start(self) -> None:
        """Bind the listen sockets and start reading; raises :class:`RelayStartError`."""
        self._loop = asyncio.get_running_loop()
        for host, port in self._listen_addrs:
            version = ipaddress.ip_address(host).version
            try:
                sock = _udp_socket(host, port, self._socket_buffer)
            except OSError as exc:
                self.close()
                failure = bind_failure("relay STUN/TURN", host, port, "--port/ZG_RELAY_PORT", exc)
                raise RelayStartError(failure.detail) from exc
            self._listen[version] = sock
            self._loop.add_reader(sock.fileno(), self._on_client, sock)
        self.core.listening_on(self.bound)
        self._flush()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sock in [*self._listen.values(), *self._relays.values()]:
            self._drop_socket(sock)
        self._listen.clear()
        self._relays.clear()

    def _drop_socket(self, sock: socket.socket) -> None:
        if self._loop is not None and sock.fileno() >= 0:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
        sock.close()

    # -- readers (the hot path) ------------------------------------------------
    def _on_client(self, sock: socket.socket) -> None:
        """Drain the listen socket: ChannelData fast path, STUN slow path."""
        core = self.core
        view = self._view
        buf = self._buf
        relays = self._relays
        recvfrom_into = sock.recvfrom_into
        channel_to_peer = core.channel_to_peer
        send = self._sender.send
        slow = False
        received = packets = nbytes = errors = drops = 0
        # consecutive datagrams for one (relay socket, peer): sent as GSO runs
        parts: list[bytes] = []
        run_sock: socket.socket | None = None
        run_peer: PeerAddr | None = None
        for _ in range(BATCH):
            try:
                n, source = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                errors += 1
                continue
            received += 1
            if len(source) != 2:
                source = source[:2]
            if n and buf[0] & 0xC0 == 0x40:
                out = channel_to_peer(view[:n], source)  # type: ignore[arg-type]
                if out is None:
                    drops += 1
                    continue
                relay_sock = relays.get(out[0])
                if relay_sock is None:
                    drops += 1
                    continue
                if parts and (relay_sock is not run_sock or out[1] != run_peer):
                    failed = send(run_sock, run_peer, parts)  # type: ignore[arg-type]
                    errors += failed
                    packets -= failed
                    parts = []
                run_sock, run_peer = relay_sock, out[1]
                payload = out[2]
                parts.append(bytes(payload))  # the receive buffer is reused
                packets += 1
                nbytes += len(payload)
            else:
                core.handle_client_datagram(bytes(view[:n]), source, self._clock())
                slow = True
        if parts:
            failed = send(run_sock, run_peer, parts)  # type: ignore[arg-type]
            errors += failed
            packets -= failed
        c = self.counters
        c.client_datagrams += received
        c.to_peer_packets += packets
        c.to_peer_bytes += nbytes
        c.send_errors += errors
        c.fast_path_drops += drops
        c.gso_sends = self._sender.gso_sends
        if slow:
            self._flush()

    def _on_peer(self, sock: socket.socket, relay: RelayAddr) -> None:
        """Drain one relay socket: channel fast path, else Data indications via the core."""
        core = self.core
        view = self._view
        buf = self._buf
        recvfrom_into = sock.recvfrom_into
        peer_to_client = core.peer_to_client
        listen = self._listen
        send = self._sender.send
        slow = False
        received = packets = nbytes = errors = 0
        # One relay socket serves one client, so a batch is mostly one run.
        parts: list[bytes] = []
        run_sock: socket.socket | None = None
        run_client: ClientAddr | None = None
        for _ in range(BATCH):
            try:
                n, peer = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                errors += 1
                continue
            received += 1
            if len(peer) != 2:
                peer = peer[:2]
            out = peer_to_client(relay, view[:n], peer)  # type: ignore[arg-type]
            if out is None:
                core.handle_peer_datagram(relay, bytes(view[:n]), peer, self._clock())
                slow = True
                continue
            client, framed = out
            if client != run_client:
                if parts:
                    failed = send(run_sock, run_client, parts)  # type: ignore[arg-type]
                    errors += failed
                    packets -= failed
                    parts = []
                run_client = client
                run_sock = listen.get(6 if ":" in client[0] else 4)
            if run_sock is None:
                continue
            parts.append(framed)
            packets += 1
            nbytes += n
        if parts:
            failed = send(run_sock, run_client, parts)  # type: ignore[arg-type]
            errors += failed
            packets -= failed
        c = self.counters
        c.peer_datagrams += received
        c.to_client_packets += packets
        c.to_client_bytes += nbytes
        c.send_errors += errors
        c.gso_sends = self._sender.gso_sends
        if slow:
            self._flush()

    # -- draining the core -----------------------------------------------------
    def _flush(self) -> None:
        """Commands first (each carried out and reported before the next), then
        transmits, then re-arm the timer."""
        if self._closed:
            return
        core = self.core
        while True:
            cmd = core.poll_command()
            if cmd is None:
                break
            if isinstance(cmd, OpenRelaySocket):
                self._open_relay(cmd.relay)
            elif isinstance(cmd, CloseRelaySocket):
                sock = self._relays.pop(cmd.relay, None)
                if sock is not None:
                    self._drop_socket(sock)
        c = self.counters
        while True:
            tx = core.poll_transmit()
            if tx is None:
                break
            if tx.source is None:
                sock = self._listen.get(6 if ":" in tx.destination[0] else 4)
                if tx.data[:2] == DATA_INDICATION:
                    c.to_client_packets += 1
                    c.to_client_bytes += len(tx.data)
            else:
                sock = self._relays.get(tx.source)
                c.to_peer_packets += 1
                c.to_peer_bytes += len(tx.data)
            if sock is None:
                continue
            try:
                sock.sendto(tx.data, tx.destination)
            except OSError as exc:
                c.send_errors += 1
                log.debug("send failed: %s", exc.strerror)
        self._arm_timer()

    def _open_relay(self, relay: RelayAddr) -> None:
        """Bind the socket of ``relay`` and tell the core how it went."""
        host, port = relay
        version = ipaddress.ip_address(host).version
        bind_host = self._relay_bind.get(host)
        if bind_host is None:
            listen = self._listen.get(version)
            bind_host = listen.getsockname()[0] if listen else ("::" if version == 6 else "0.0.0.0")  # noqa: S104
        try:
            sock = _udp_socket(bind_host, port, RELAY_SOCKET_BUFFER)
        except OSError as exc:
            self.counters.relay_bind_failures += 1
            if exc.errno != errno.EADDRINUSE:
                log.warning("cannot bind relay port", extra={"port": port, "error": exc.strerror})
            self.core.handle_relay_bind_failed(relay, self._clock())
            return
        old = self._relays.pop(relay, None)
        if old is not None:
            self._drop_socket(old)
        self._relays[relay] = sock
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._on_peer, sock, relay)
        self.core.handle_relay_bound(relay, self._clock())

    def _arm_timer(self) -> None:
        deadline = self.core.poll_timeout()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is None or self._loop is None:
            return
        delay = max(0.0, deadline - self._clock())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timeout(self._clock())
        self._flush()
