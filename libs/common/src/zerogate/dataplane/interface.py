"""A WireGuard interface: the asyncio shell around the sans-IO core.

One :class:`WireGuardInterface` owns a core ``Device``, a TUN device, the UDP
sockets of :mod:`zerogate.dataplane.udp` and (optionally) the UAPI socket.
Packets move in callbacks registered with ``loop.add_reader``; each callback
drains its file descriptor in a batch until it would block (bounded by
:data:`MAX_BATCH`), seals or opens every packet, then sends the results in as
few system calls as possible (UDP GSO, TUN GRO). Then, in the fixed order of
the shell (CONVENTIONS): drain the core's transmits and events, and re-arm the
one timer from ``poll_timeout``.

Speed choices (measured on a 2-core VM, one iperf3 stream between two
namespaces; see the bench in ``bench/``):

* batches: readiness callbacks drain up to :data:`MAX_BATCH` packets; under
  load the TUN callback handles ~120 packets and the UDP one ~200 per wakeup;
* UDP GSO/GRO (:mod:`zerogate.dataplane.udp`): one ``sendmsg``/``recvmsg`` per
  run of equal-sized datagrams;
* TUN GRO writes (:mod:`zerogate.dataplane.offload`): decrypted TCP segments
  of one flow go to the kernel as one super-packet, which cut the receiver's
  CPU per byte most of all;
* TUN TSO reads are *off* by default: cutting super-packets needs a TCP
  checksum per segment in Python (~3 us), dearer than the ``read`` it saves;
* a deeper TUN queue (:data:`zerogate.dataplane.tun.TX_QUEUE_LEN`), so TCP
  does not lose packets at our own door.

Nothing here logs per packet above debug; drops are counted in
:attr:`WireGuardInterface.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from zerogate.dataplane import offload as gso
from zerogate.dataplane.errors import ConfigError, DataplaneError, UapiError
from zerogate.dataplane.paths import PeerPath
from zerogate.dataplane.tun import DEFAULT_MTU, VIRTIO_NET_HDR_LEN, Tun
from zerogate.dataplane.uapi import (
    SOCKET_DIR,
    ZERO_KEY,
    DeviceChange,
    DeviceState,
    PeerState,
    UapiServer,
    socket_path,
)
from zerogate.dataplane.udp import (
    CMSG_SPACE,
    RECV_SIZE,
    SO_MARK,
    UdpSockets,
    gro_segment_size,
)
from zerogate.dataplane.wgconfig import InterfaceConfig, PeerConfig
from zerogate.proto.wireguard import (
    UNSET,
    Device,
    Endpoint,
    HandshakeCompleted,
    HandshakeTimedOut,
    PeerEndpointChanged,
    WireGuardError,
)

log = logging.getLogger(__name__)

#: ``(data, source, now) -> (remote, wireguard datagram) | None``: see set_demux.
Demux = Callable[[bytes, Endpoint, float], "tuple[Endpoint, bytes] | None"]

MAX_BATCH = 256  # packets handled per readiness callback before yielding to the loop
TUN_WRITE_BATCH = MAX_BATCH  # opened packets collected before a (coalescing) TUN write
MESSAGE_INITIATION = 1  # whitepaper §5.4.2
INITIATION_SIZE = 148
# Handshake initiations per second above which the device is "under load" and
# demands cookies (whitepaper §5.3): boringtun's global 100/s (src/device/mod.rs).
# wireguard-go instead looks at its handshake queue (1/8 full); we have no
# queue, every datagram is handled as it is read, so we look at the rate.
UNDER_LOAD_INITIATIONS_PER_SECOND = 100
UNDER_LOAD_SECONDS = 1.0  # wireguard-go: the under-load state lasts 1 s after the last sign


@dataclass
class Stats:
    tun_read_errors: int = 0
    tun_write_errors: int = 0
    udp_recv_errors: int = 0
    udp_send_errors: int = 0


def resolve_endpoint(host: str, port: int) -> Endpoint:
    """Resolve a config endpoint to an address literal (blocking; startup only)."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0])), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve {host}: {exc.strerror}", key="Endpoint") from exc
    # Prefer IPv4 like wg(8) does when both exist.
    infos.sort(key=lambda info: 0 if info[0] == socket.AF_INET else 1)
    address = infos[0][4][0]
    return str(address), port


class WireGuardInterface:
    """A running WireGuard interface (create with :meth:`start`, end with :meth:`close`)."""

    def __init__(
        self,
        config: InterfaceConfig,
        *,
        offload: bool = True,
        tso: bool = False,
        uapi_dir: Path | None = SOCKET_DIR,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.name = config.name
        self.mtu = config.mtu or DEFAULT_MTU
        self._want_offload = offload
        self._want_tso = tso
        self._uapi_dir = uapi_dir
        self._clock = clock
        self._wall_clock = wall_clock
        self.fwmark = config.fwmark
        self.stats = Stats()
        try:
            self.device = Device(config.private_key, now=clock(), unix_time=wall_clock())
        except WireGuardError as exc:
            raise ConfigError(str(exc), key="PrivateKey") from exc
        # Padding stops at the MTU, so full-size packets are not fragmented (§5.4.6).
        self.device.mtu = self.mtu
        self.tun: Tun | None = None
        self.udp: UdpSockets | None = None
        self.uapi: UapiServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._paths: dict[Endpoint, PeerPath] = {}
        self._under_load_until = 0.0
        self._initiation_window = 0.0
        self._initiations = 0
        self._closed = False
        self._tun_reader: Callable[[], None] = self._on_tun_readable
        self._gro: gso.TcpCoalescer | None = None
        # Hooks for the agents (see set_demux and friends); None costs nothing per packet.
        self._demux: Demux | None = None
        self._unrouted: Callable[[bytes], None] | None = None
        self._inbound_filter: Callable[[bytes], bool] | None = None
        self._inbound_rewrite: gso.Admit | None = None
        self._outbound_rewrite: gso.Rewrite | None = None
        self._event_hook: Callable[[object], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind, create and configure the TUN, start the UAPI server, start moving packets."""
        self._loop = asyncio.get_running_loop()
        now = self._clock()
        try:
            for peer in self.config.peers:
                self._add_peer(peer, now)
            self.udp = UdpSockets.bind(self.config.listen_port, fwmark=self.fwmark)
            self.device.listen_port = self.udp.port
            self.tun = Tun.open(self.name, offload=self._want_offload, tso=self._want_tso)
            routes = [net for peer in self.config.peers for net in peer.allowed_ips]
            # pyroute2's synchronous IPRoute runs an event loop of its own: keep it
            # off ours (and off uvloop, which cannot open netlink endpoints).
            await asyncio.to_thread(
                self.tun.configure, mtu=self.mtu, addresses=self.config.addresses, routes=routes
            )
            if self.tun.offload:
                self._gro = gso.TcpCoalescer()
            self._add_readers()
            if self._uapi_dir is not None:
                self.uapi = UapiServer(self, socket_path(self.name, self._uapi_dir))
                await self.uapi.start()
        except BaseException:
            await self.close()
            raise
        log.info(
            "interface up",
            extra={
                "interface": self.name,
                "listen_port": self.udp.port,
                "tun_offload": self.tun.offload,
                "tun_tso": self.tun.tso,
                "udp_gso": self.udp.gso,
                "udp_gro": self.udp.gro,
            },
        )
        self._service()

    def _add_peer(self, peer: PeerConfig, now: float) -> None:
        endpoint = resolve_endpoint(*peer.endpoint) if peer.endpoint else None
        try:
            self.device.add_peer(
                peer.public_key,
                preshared_key=peer.preshared_key,
                allowed_ips=peer.allowed_ips,
                endpoint=endpoint,
                persistent_keepalive=peer.persistent_keepalive,
                now=now,
            )
        except WireGuardError as exc:
            raise ConfigError(str(exc), key="PublicKey") from exc

    def _add_readers(self) -> None:
        assert self._loop is not None
        assert self.tun is not None
        assert self.udp is not None
        self._loop.add_reader(self.tun.fd, self._tun_reader)
        for sock in self.udp.sockets():
            self._loop.add_reader(sock.fileno(), self._on_udp_readable, sock)

    def _remove_udp_readers(self) -> None:
        if self._loop is None or self.udp is None:
            return
        for sock in self.udp.sockets():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())

    async def close(self) -> None:
        """Stop moving packets, remove the UAPI socket and the interface."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.uapi is not None:
            await self.uapi.close()
            self.uapi = None
        self._remove_udp_readers()
        if self.tun is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self.tun.fd)
            self.tun.close()  # a non-persistent TUN vanishes with its descriptor
            self.tun = None
        if self.udp is not None:
            self.stats.udp_send_errors = self.udp.send_errors
            self.udp.close()
            self.udp = None
        log.info("interface down", extra={"interface": self.name, **asdict(self.stats)})

    # ------------------------------------------------------------------ per-peer paths
    def set_peer_path(
        self, public_key: bytes, path: PeerPath | None, *, endpoint: Endpoint | None = None
    ) -> None:
        """Send ``public_key``'s datagrams through ``path``.

        ``path=None`` goes back to the shared UDP socket, to ``endpoint`` when
        given (else the peer keeps the path's endpoint until it roams).
        """
        peer = self.device.peers.get(public_key)
        if peer is None:
            raise DataplaneError("no such peer")
        if peer.endpoint is not None:
            self._paths.pop(peer.endpoint, None)
        if path is None:
            if endpoint is not None:
                self.device.update_peer(public_key, endpoint=endpoint, now=self._clock())
            return
        self._paths[path.endpoint] = path
        self.device.update_peer(public_key, endpoint=path.endpoint, now=self._clock())
        self._service()

    def has_path(self, endpoint: Endpoint) -> bool:
        return endpoint in self._paths

    def add_path(self, path: PeerPath) -> None:
        """Send whatever the core addresses to ``path.endpoint`` through ``path``.

        Unlike :meth:`set_peer_path` this does not move a peer: it says how an
        address is reached (e.g. answers go back through the relay a peer's
        datagram came through, before ICE has chosen).
        """
        self._paths[path.endpoint] = path

    def drop_path(self, endpoint: Endpoint) -> None:
        self._paths.pop(endpoint, None)

    def set_demux(self, demux: Demux | None) -> None:
        """Hand every datagram that is not WireGuard to ``demux`` (ICE, TURN: the node).

        ``demux(data, source, now)`` may return ``(remote, wireguard_datagram)``
        (a peer's datagram unwrapped from a relay's ChannelData), which is then
        opened as if it had come from ``remote``.
        """
        self._demux = demux

    def set_unrouted(self, hook: Callable[[bytes], None] | None) -> None:
        """Call ``hook(packet)`` for a TUN packet no session can carry yet.

        That is a packet whose destination no peer's AllowedIPs cover, or whose
        peer has no endpoint yet (a connection being set up). Packets for a
        peer with an endpoint but no session are queued by the core itself.
        """
        self._unrouted = hook

    def set_inbound_filter(self, accept: Callable[[bytes], bool] | None) -> None:
        """Only opened packets for which ``accept(packet)`` is true reach the TUN."""
        self._inbound_filter = accept

    def set_inbound_rewrite(self, rewrite: gso.Admit | None) -> None:
        """Hand every opened packet to ``rewrite`` before the TUN; it returns the packet
        to write (the same or a changed one) or ``None`` to drop it. Takes the place
        of the inbound filter while set (a gateway translating addresses). With TUN
        offloads, a run of one flow's TCP segments that the coalescer glues together
        is handed over once, as its first segment, and the answer holds for the run
        (``offload.TcpCoalescer.coalesce``): it must decide on the IP and transport
        headers alone."""
        self._inbound_rewrite = rewrite

    def set_outbound_rewrite(self, rewrite: gso.Rewrite | None) -> None:
        """Hand every packet read from the TUN to ``rewrite`` before it is sealed; it
        returns the packet to send (the same or a changed one, of the same length).
        It must decide on the IP and transport headers alone: a TCP super-packet's
        header is rewritten once, before it is cut (``offload.split_packet``)."""
        self._outbound_rewrite = rewrite

    def set_event_hook(self, hook: Callable[[object], None] | None) -> None:
        """Hear the core's events (handshakes, roaming) as they are drained."""
        self._event_hook = hook

    def send_packets(self, packets: Sequence[bytes]) -> None:
        """Send IP packets into the tunnel as if read from the TUN (buffered ones, probes)."""
        now = self._clock()
        encrypt = self.device.encrypt
        unrouted = self._unrouted
        for packet in packets:
            sealed = encrypt(packet, now)
            if sealed is None:
                if unrouted is not None:
                    self._maybe_unrouted(packet, unrouted)
                continue
            self._send_batch(sealed[0], [sealed[1]])
        self._service()

    def write_tun(self, packets: Sequence[bytes | bytearray]) -> None:
        """Write IP packets to the local TUN (answers made up locally, e.g. ICMP)."""
        self._write_tun(list(packets))

    def service(self) -> None:
        """Drain the core's datagrams and events now (after feeding it from elsewhere)."""
        self._service()

    def _maybe_unrouted(self, packet: bytes | bytearray, hook: Callable[[bytes], None]) -> None:
        peer = self.device.peer_for(packet)
        if peer is None or peer.endpoint is None:
            hook(bytes(packet))

    def receive(self, data: bytes, source: Endpoint) -> None:
        """Feed a datagram that arrived on a path other than the shared socket."""
        plain = self.device.decrypt(data, source, self._clock())
        accept = self._inbound_filter
        rewrite = self._inbound_rewrite
        if plain and self.tun is not None:
            if rewrite is not None:
                rewritten = rewrite(plain)
                if rewritten is not None:
                    self._write_tun([rewritten])
            elif accept is None or accept(plain):
                self._write_tun([plain])
        self._service()

    # ------------------------------------------------------------------ TUN -> UDP
    def _on_tun_readable(self) -> None:
        tun = self.tun
        if tun is None:
            return
        fd = tun.fd
        read = os.read
        now = self._clock()
        encrypt = self.device.encrypt
        offload = tun.offload
        read_size = tun.read_size
        split = gso.split_packet
        batch: list[bytes] = []
        destination: Endpoint | None = None
        flush = self._send_batch
        unrouted = self._unrouted
        outbound = self._outbound_rewrite
        for _ in range(MAX_BATCH):
            try:
                buffer = read(fd, read_size)
            except BlockingIOError:
                break
            except OSError:
                self.stats.tun_read_errors += 1
                break
            if not offload:
                packets: Sequence[bytes | bytearray] = (
                    (buffer,) if outbound is None else (outbound(buffer),)
                )
            elif buffer[0] or buffer[1]:  # checksum to finish or a super-packet to cut
                packets = split(buffer, outbound)  # a super-packet's header rewritten once
            else:
                plain = buffer[VIRTIO_NET_HDR_LEN:]
                packets = (plain,) if outbound is None else (outbound(plain),)
            for packet in packets:
                sealed = encrypt(packet, now)
                if sealed is None:
                    if unrouted is not None:
                        self._maybe_unrouted(packet, unrouted)
                    continue
                dest, data = sealed
                if dest != destination:
                    if batch:
                        flush(destination, batch)  # type: ignore[arg-type]
                        batch = []
                    destination = dest
                batch.append(data)
        if batch:
            flush(destination, batch)  # type: ignore[arg-type]
        self._service()

    def _send_batch(self, destination: Endpoint, batch: list[bytes]) -> None:
        if self._paths:
            path = self._paths.get(destination)
            if path is not None:
                send_many = getattr(path, "send_many", None)
                if send_many is not None:
                    send_many(batch)
                else:
                    for data in batch:
                        path.send(data)
                return
        if self.udp is not None:
            self.udp.send_many(destination, batch)

    # ------------------------------------------------------------------ UDP -> TUN
    def _on_udp_readable(self, sock: socket.socket) -> None:
        now = self._clock()
        decrypt = self.device.decrypt
        plain: list[bytes | bytearray] = []
        append = plain.append
        write_tun = self._write_tun
        gro = self.udp is not None and self.udp.gro
        recvmsg = sock.recvmsg
        recvfrom = sock.recvfrom
        demux = self._demux
        accept = self._inbound_filter
        rewrite = self._inbound_rewrite
        later: gso.Admit | None = None
        if rewrite is not None and self._gro is not None:
            # The coalescer checks and translates each run of a flow once, on its header.
            later, rewrite, accept = rewrite, None, None
        budget = MAX_BATCH
        while budget > 0:
            try:
                if gro:
                    data, ancdata, _flags, address = recvmsg(RECV_SIZE, CMSG_SPACE)
                else:
                    data, address = recvfrom(RECV_SIZE)
                    ancdata = None
            except BlockingIOError:
                break
            except OSError:
                self.stats.udp_recv_errors += 1
                budget -= 1
                continue
            source = (address[0], address[1])
            size = gro_segment_size(ancdata) if ancdata else 0
            if size and size < len(data):
                handshakes = size == INITIATION_SIZE
                for start in range(0, len(data), size):
                    segment = data[start : start + size]
                    if demux is not None and not (segment[0] <= 4 and segment[1:4] == b"\0\0\0"):
                        unwrapped = demux(segment, source, now)
                        if unwrapped is None:
                            continue
                        opened = decrypt(unwrapped[1], unwrapped[0], now)
                    else:
                        if handshakes and segment[0] == MESSAGE_INITIATION:
                            self._note_initiation(now)
                        opened = decrypt(segment, source, now)
                    if opened:
                        if rewrite is not None:
                            translated = rewrite(opened)
                            if translated is not None:
                                append(translated)
                        elif accept is None or accept(opened):
                            append(opened)
                budget -= -(-len(data) // size)
            else:
                if demux is not None and data and not (data[0] <= 4 and data[1:4] == b"\0\0\0"):
                    unwrapped = demux(data, source, now)
                    if unwrapped is None:
                        budget -= 1
                        continue
                    opened = decrypt(unwrapped[1], unwrapped[0], now)
                else:
                    if len(data) == INITIATION_SIZE and data[0] == MESSAGE_INITIATION:
                        self._note_initiation(now)
                    opened = decrypt(data, source, now)
                if opened:
                    if rewrite is not None:
                        translated = rewrite(opened)
                        if translated is not None:
                            append(translated)
                    elif accept is None or accept(opened):
                        append(opened)
                budget -= 1
            if len(plain) >= TUN_WRITE_BATCH:
                # hand the kernel what we have: the receiving application can start
                # on it while we open the rest
                write_tun(plain, later)
                plain = []
                append = plain.append
        if plain:
            write_tun(plain, later)
        self._service()

    def _note_initiation(self, now: float) -> None:
        """Count an incoming initiation; too many in a second put the device under load."""
        if now - self._initiation_window >= 1.0:
            self._initiation_window = now
            self._initiations = 0
        self._initiations += 1
        if self._initiations > UNDER_LOAD_INITIATIONS_PER_SECOND:
            if not self._under_load_until:
                log.info("under load: demanding cookies", extra={"interface": self.name})
                self.device.set_under_load(True)
            self._under_load_until = now + UNDER_LOAD_SECONDS

    def _write_tun(
        self, packets: list[bytes | bytearray], rewrite: gso.Admit | None = None
    ) -> None:
        """Write ``packets`` (with ``rewrite``: as it admits them, coalescing only)."""
        tun = self.tun
        if tun is None:
            return
        fd = tun.fd
        if self._gro is not None:
            writev = os.writev
            for iov in self._gro.coalesce(packets, rewrite):
                try:
                    writev(fd, iov)
                except OSError:
                    self.stats.tun_write_errors += 1
            return
        write = os.write
        for packet in packets:
            try:
                write(fd, packet)
            except OSError:
                self.stats.tun_write_errors += 1

    # ------------------------------------------------------------------ core outputs
    def _service(self) -> None:
        """Drain transmits and events, then re-arm the one timer."""
        device = self.device
        udp = self.udp
        paths = self._paths
        while (transmit := device.poll_transmit()) is not None:
            path = paths.get(transmit.destination) if paths else None
            if path is not None:
                path.send(transmit.data)
            elif udp is not None:
                udp.send(transmit.destination, transmit.data)
        while (event := device.poll_event()) is not None:
            self._on_event(event)
        self._arm_timer()

    def _on_event(self, event: object) -> None:
        if self._event_hook is not None:
            self._event_hook(event)
        if isinstance(event, HandshakeCompleted):
            log.debug("handshake completed", extra={"peer": event.peer.hex()[:8]})
        elif isinstance(event, HandshakeTimedOut):
            log.debug("handshake timed out", extra={"peer": event.peer.hex()[:8]})
        elif isinstance(event, PeerEndpointChanged):
            log.debug("peer roamed", extra={"peer": event.peer.hex()[:8]})

    def _arm_timer(self) -> None:
        if self._closed or self._loop is None:
            return
        deadline = self.device.poll_timeout()
        if self._under_load_until and (deadline is None or self._under_load_until < deadline):
            deadline = self._under_load_until
        if deadline == self._timer_deadline and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        now = self._clock()
        if self._under_load_until and now >= self._under_load_until:
            self._under_load_until = 0.0
            self.device.set_under_load(False)
            log.info("load is over", extra={"interface": self.name})
        self.device.handle_timeout(now)
        self._service()

    # ------------------------------------------------------------------ UAPI
    def uapi_get(self) -> DeviceState:
        peers = tuple(
            PeerState(
                public_key=peer.public_key,
                preshared_key=peer.preshared_key,
                endpoint=peer.endpoint,
                last_handshake_unix=peer.last_handshake_unix,
                rx_bytes=peer.rx_bytes,
                tx_bytes=peer.tx_bytes,
                persistent_keepalive=peer.persistent_keepalive,
                allowed_ips=tuple(peer.allowed_ips),
            )
            for peer in self.device.peers.values()
        )
        return DeviceState(
            private_key=self.device.private_key,
            listen_port=self.udp.port if self.udp is not None else 0,
            fwmark=self.fwmark,
            peers=peers,
        )

    def uapi_set(self, change: DeviceChange) -> None:
        now = self._clock()
        try:
            self._apply(change, now)
        except WireGuardError as exc:
            raise UapiError(str(exc)) from exc
        finally:
            self._service()

    def _apply(self, change: DeviceChange, now: float) -> None:
        device = self.device
        if change.private_key is not None:
            if change.private_key == ZERO_KEY:
                raise UapiError("removing the private key is not supported")
            if change.private_key != device.private_key:
                device.set_private_key(change.private_key, now)
        if (
            change.listen_port is not None
            and self.udp is not None
            and change.listen_port != self.udp.port
        ):
            self._rebind(change.listen_port)
        if change.fwmark is not None:
            self._set_fwmark(change.fwmark or None)
        if change.replace_peers:
            keep = {peer.public_key for peer in change.peers if not peer.remove}
            for key in [key for key in device.peers if key not in keep]:
                device.remove_peer(key)
        for peer in change.peers:
            exists = peer.public_key in device.peers
            if peer.remove:
                if exists:
                    device.remove_peer(peer.public_key)
                continue
            if not exists and peer.update_only:
                continue
            if peer.public_key == device.public_key:
                continue  # wireguard-go ignores a peer with our own key
            psk = None if peer.preshared_key == ZERO_KEY else peer.preshared_key
            keepalive = peer.persistent_keepalive or None
            if not exists:
                device.add_peer(
                    peer.public_key,
                    preshared_key=psk,
                    allowed_ips=peer.allowed_ips,
                    endpoint=peer.endpoint,
                    persistent_keepalive=keepalive,
                    now=now,
                )
                continue
            device.update_peer(
                peer.public_key,
                preshared_key=UNSET if peer.preshared_key is None else psk,
                allowed_ips=(
                    peer.allowed_ips if (peer.allowed_ips or peer.replace_allowed_ips) else UNSET
                ),
                replace_allowed_ips=peer.replace_allowed_ips,
                endpoint=UNSET if peer.endpoint is None else peer.endpoint,
                persistent_keepalive=UNSET if peer.persistent_keepalive is None else keepalive,
                now=now,
            )

    def _rebind(self, port: int) -> None:
        old = self.udp
        new = UdpSockets.bind(port, fwmark=self.fwmark)
        self._remove_udp_readers()
        self.udp = new
        self.device.listen_port = new.port
        assert self._loop is not None
        for sock in new.sockets():
            self._loop.add_reader(sock.fileno(), self._on_udp_readable, sock)
        if old is not None:
            old.close()

    def _set_fwmark(self, mark: int | None) -> None:
        if self.udp is not None:
            for sock in self.udp.sockets():
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark or 0)
                except OSError as exc:
                    raise UapiError(f"fwmark: {exc.strerror}") from exc
        self.fwmark = mark
        self.device.fwmark = mark
