"""The WireGuard device: many peers, cryptokey routing, sessions and timers.

Sans-IO: bytes and the current time in, datagrams / events / the next deadline
out. ``now`` is a monotonic clock in seconds and drives every timer; the wall
clock (``unix_time`` given once at construction) is only used for TAI64N
timestamps.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping

from zerogate.proto.wireguard.events import Endpoint, Event, Transmit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET
"""Default of :meth:`Device.update_peer` keywords: "leave as it is"."""


class Peer:
    """A configured peer. Read-only for the shell; change it through the device."""

    public_key: bytes
    preshared_key: bytes | None
    endpoint: Endpoint | None
    allowed_ips: list[IPNetwork]
    persistent_keepalive: int | None
    last_handshake_unix: float | None
    rx_bytes: int
    tx_bytes: int


class Device:
    """A WireGuard interface's protocol state."""

    listen_port: int | None
    fwmark: int | None

    def __init__(self, private_key: bytes, *, now: float, unix_time: float) -> None:
        raise NotImplementedError

    @property
    def private_key(self) -> bytes:
        raise NotImplementedError

    @property
    def public_key(self) -> bytes:
        raise NotImplementedError

    @property
    def peers(self) -> Mapping[bytes, Peer]:
        raise NotImplementedError

    def set_private_key(self, private_key: bytes, now: float) -> None:
        raise NotImplementedError

    def add_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None = None,
        allowed_ips: Iterable[IPNetwork] = (),
        endpoint: Endpoint | None = None,
        persistent_keepalive: int | None = None,
        now: float,
    ) -> Peer:
        raise NotImplementedError

    def update_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None | _Unset = UNSET,
        allowed_ips: Iterable[IPNetwork] | _Unset = UNSET,
        replace_allowed_ips: bool = False,
        endpoint: Endpoint | None | _Unset = UNSET,
        persistent_keepalive: int | None | _Unset = UNSET,
        now: float,
    ) -> Peer:
        raise NotImplementedError

    def remove_peer(self, public_key: bytes) -> None:
        raise NotImplementedError

    def encrypt(self, packet: bytes, now: float) -> tuple[Endpoint, bytes] | None:
        raise NotImplementedError

    def decrypt(self, datagram: bytes, source: Endpoint, now: float) -> bytes | None:
        raise NotImplementedError

    def poll_transmit(self) -> Transmit | None:
        raise NotImplementedError

    def poll_event(self) -> Event | None:
        raise NotImplementedError

    def poll_timeout(self) -> float | None:
        raise NotImplementedError

    def handle_timeout(self, now: float) -> None:
        raise NotImplementedError

    def set_under_load(self, under_load: bool) -> None:
        raise NotImplementedError
