"""Linux TUN devices: open them, configure them with pyroute2, read and write packets.

A :class:`Tun` wraps the file descriptor of ``/dev/net/tun`` attached to one
interface (``IFF_TUN | IFF_NO_PI``: every read and write is exactly one IP
packet). With ``offload=True`` the device is opened with ``IFF_VNET_HDR``: each
packet then carries a ``virtio_net_hdr`` in front, which lets us *write* TCP
super-packets (GRO, see :mod:`zerogate.dataplane.offload`). With ``tso=True``
we also ask ``TUNSETOFFLOAD`` for checksum and TCP segmentation offload, so the
kernel may hand us 64 KiB super-packets to cut up; measured here that costs
more Python time (checksums) than it saves, so it is off by default. The device
disappears when the descriptor is closed (it is never made persistent), so a
crashed process leaves nothing behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from collections.abc import Iterable, Mapping
from types import TracebackType

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from zerogate.dataplane.errors import TunError
from zerogate.dataplane.wgconfig import IPInterface, IPNetwork

log = logging.getLogger(__name__)

TUN_PATH = "/dev/net/tun"
# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
VIRTIO_NET_HDR_LEN = 10  # struct virtio_net_hdr (linux/virtio_net.h)
DEFAULT_MTU = 1420  # wg-quick's default: 1500 - 80 bytes of IPv6/UDP/WireGuard overhead
# Packets the TUN queue holds before dropping. TCP Small Queues lets one flow
# park up to net.ipv4.tcp_limit_output_bytes (4 MiB on current kernels, ~2900
# packets of 1420 bytes) below the socket; with the default 500-1000 the queue
# overflowed under a single iperf3 stream and TCP backed off (hundreds of
# retransmits per second measured here, none with 4096).
TX_QUEUE_LEN = 4096
READ_SIZE = 65536 + VIRTIO_NET_HDR_LEN


class Tun:
    """An open TUN device. Use :meth:`open`, then :meth:`configure`."""

    def __init__(self, fd: int, name: str, offload: bool) -> None:
        self.fd = fd
        self.name = name
        self.offload = offload
        self.tso = False
        self.read_size = READ_SIZE
        self.ifindex: int | None = None

    @classmethod
    def open(cls, name: str, *, offload: bool = False, tso: bool = False) -> Tun:
        """Create the interface ``name``; with ``offload`` try vnet headers, else plain."""
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise TunError(f"cannot open {TUN_PATH}: {exc.strerror}") from exc
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        except OSError as exc:
            os.close(fd)
            raise TunError(f"cannot create TUN {name}: {exc.strerror}") from exc
        enabled = False
        if offload:
            try:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VIRTIO_NET_HDR_LEN))
                features = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 if tso else 0
                fcntl.ioctl(fd, TUNSETOFFLOAD, features)
                enabled = True
            except OSError as exc:
                # IFF_VNET_HDR cannot be dropped on an attached fd: start again without.
                log.info("TUN offloads unavailable (%s); using plain packets", exc.strerror)
                os.close(fd)
                return cls.open(name, offload=False, tso=False)
        os.set_blocking(fd, False)
        tun = cls(fd, name, enabled)
        tun.tso = enabled and tso
        return tun

    def configure(
        self,
        *,
        mtu: int,
        addresses: Iterable[IPInterface] = (),
        routes: Iterable[IPNetwork] = (),
    ) -> None:
        """Set MTU, addresses and routes, and bring the link up (rtnetlink via pyroute2)."""
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.name)
                if not found:
                    raise TunError(f"interface {self.name} vanished")
                index = int(found[0])
                self.ifindex = index
                ipr.link("set", index=index, mtu=mtu, txqlen=TX_QUEUE_LEN)
                for address in addresses:
                    ipr.addr(
                        "add",
                        index=index,
                        address=str(address.ip),
                        prefixlen=address.network.prefixlen,
                    )
                ipr.link("set", index=index, state="up")
                for network in routes:
                    if network.prefixlen == 0:
                        # wg-quick needs policy routing (fwmark rules) for a default
                        # route; we do not install one, the operator routes.
                        log.warning("not installing default route %s on %s", network, self.name)
                        continue
                    try:
                        ipr.route("add", dst=str(network), oif=index)
                    except NetlinkError as exc:
                        if exc.code != errno.EEXIST:  # already covered by an Address
                            raise
        except NetlinkError as exc:
            raise TunError(f"configuring {self.name}: {exc}") from exc

    def update_routes(
        self,
        *,
        add: Iterable[IPNetwork] = (),
        remove: Iterable[IPNetwork] = (),
        sources: Mapping[int, str] | None = None,
    ) -> None:
        """Route ``add`` through this device and stop routing ``remove`` (rtnetlink).

        ``sources`` (IP version -> address) pins the source address of packets
        the routes carry (``ip route ... src``), for a device with more than one
        address of a family. Blocking (pyroute2): call it off the event loop.
        Routes of a device go with it, so nothing is left behind when the
        descriptor closes.
        """
        try:
            with IPRoute() as ipr:
                index = self.ifindex or int(ipr.link_lookup(ifname=self.name)[0])
                for network in remove:
                    try:
                        ipr.route("del", dst=str(network), oif=index)
                    except NetlinkError as exc:
                        if exc.code not in (errno.ESRCH, errno.ENOENT):
                            raise
                for network in add:
                    source = (sources or {}).get(network.version)
                    extra = {"prefsrc": source} if source else {}
                    ipr.route("replace", dst=str(network), oif=index, **extra)
        except (NetlinkError, IndexError) as exc:
            raise TunError(f"routing through {self.name}: {exc}") from exc

    def read(self) -> bytes:
        """One packet (raises BlockingIOError when none is waiting)."""
        return os.read(self.fd, READ_SIZE)

    def write(self, packet: bytes) -> None:
        os.write(self.fd, packet)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Tun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
