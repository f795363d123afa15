"""One allocation as the TURN server keeps it: permissions, channels, their lifetimes.

The server core (:mod:`zerogate.proto.turn.server`) owns the tables that find an
allocation (by client, by relay address, the fast-path routes); this module
owns what one allocation knows about itself and the RFC 8656 rules that only
concern it:

* a permission is per peer IP (§9) and lapses at its expiry;
* a channel binds one number to one peer (§11): neither may be bound to another
  while it lives, nor for :data:`CHANNEL_REBIND_COOLDOWN` after it lapsed (§12);
* a ChannelBind installs or refreshes the permission of its peer too (§11.2).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from zerogate.proto import stun
from zerogate.proto.net import ClientAddr, PeerAddr, RelayAddr
from zerogate.proto.turn.auth import Authenticated
from zerogate.proto.turn.outputs import AllocationId

__all__ = ["CHANNEL_REBIND_COOLDOWN", "Channel", "Opening", "RelayAllocation", "ip_version"]

CHANNEL_REBIND_COOLDOWN = 300  # RFC 8656 §12: 5 minutes before a number/peer is reused


def ip_version(host: str) -> int | None:
    """4 or 6 for an IP literal, None for anything else."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


@dataclass(slots=True)
class Channel:
    number: int
    peer: PeerAddr
    expires: float


@dataclass(slots=True)
class Opening:
    """An Allocate waiting for its relay sockets; answered when all are bound."""

    request: stun.Message
    lifetime: int
    families: list[int]
    address_error: stun.AddressErrorCode | None
    reserve_next: bool  # EVEN-PORT with the R bit: hold port+1 under a new token
    claimed: bool  # the port came from a RESERVATION-TOKEN: no other port will do
    waiting: set[RelayAddr] = field(default_factory=set)
    tried: set[int] = field(default_factory=set)


@dataclass(slots=True)
class RelayAllocation:
    id: AllocationId
    client: ClientAddr
    auth: Authenticated
    port: int
    relays: dict[int, RelayAddr]  # IP version (4/6) -> advertised relay address
    expires: float
    opening: Opening | None = None
    permissions: dict[str, float] = field(default_factory=dict)  # peer IP -> expiry
    channels: dict[int, Channel] = field(default_factory=dict)
    peer_channels: dict[PeerAddr, int] = field(default_factory=dict)
    cooldown: dict[int, tuple[PeerAddr, float]] = field(default_factory=dict)
    #: the server's fast-path keys of this allocation (removed before re-adding)
    fast_keys: list[tuple[ClientAddr, int]] = field(default_factory=list)
    fast_in_keys: list[tuple[RelayAddr, PeerAddr]] = field(default_factory=list)
    armed: float | None = None  # earliest deadline this allocation has in the timer heap

    def relay_for(self, host: str) -> RelayAddr | None:
        """The relay address of ``host``'s family, if the allocation has one."""
        version = ip_version(host)
        return self.relays.get(version) if version is not None else None

    def permit(self, ip: str, expires: float) -> None:
        """Install or refresh the permission of ``ip`` until at least ``expires``."""
        self.permissions[ip] = max(self.permissions.get(ip, 0.0), expires)

    def channel_conflict(self, number: int, peer: PeerAddr, now: float) -> bool:
        """True when binding ``number`` to ``peer`` breaks RFC 8656 §11/§12 (400)."""
        bound = self.channels.get(number)
        if bound is not None and bound.peer != peer:
            return True  # the number is bound to another peer
        other = self.peer_channels.get(peer)
        if other is not None and other != number:
            return True  # the peer is bound to another number
        cooling = self.cooldown.get(number)
        if cooling is not None and cooling[1] > now and cooling[0] != peer:
            return True
        return any(
            cooled_peer == peer and cooled_number != number and until > now
            for cooled_number, (cooled_peer, until) in self.cooldown.items()
        )

    def bind_channel(self, number: int, peer: PeerAddr, expires: float) -> None:
        """Bind (or refresh) ``number`` to ``peer`` until ``expires``; no checks."""
        self.cooldown.pop(number, None)
        bound = self.channels.get(number)
        if bound is None:
            self.channels[number] = Channel(number, peer, expires)
            self.peer_channels[peer] = number
        else:
            bound.expires = expires

    def next_deadline(self) -> float:
        """The earliest moment something of this allocation lapses."""
        deadline = self.expires
        for expires in self.permissions.values():
            deadline = min(deadline, expires)
        for channel in self.channels.values():
            deadline = min(deadline, channel.expires)
        for _, until in self.cooldown.values():
            deadline = min(deadline, until)
        return deadline

    def sweep(self, now: float) -> bool:
        """Drop the permissions, channels and cooldowns due by ``now``; True when a
        permission or a channel went (the fast-path routes must be rebuilt)."""
        changed = False
        for ip, expires in list(self.permissions.items()):
            if expires <= now:
                del self.permissions[ip]
                changed = True
        for number, channel in list(self.channels.items()):
            if channel.expires <= now:
                del self.channels[number]
                self.peer_channels.pop(channel.peer, None)
                self.cooldown[number] = (channel.peer, now + CHANNEL_REBIND_COOLDOWN)
                changed = True
        for number, (_, until) in list(self.cooldown.items()):
            if until <= now:
                del self.cooldown[number]
        return changed

    def routes(self) -> Iterator[tuple[int, PeerAddr, RelayAddr]]:
        """``(channel number, peer, relay)`` for every channel that may carry data:
        its peer has a permission and the allocation a relay of its family."""
        for channel in self.channels.values():
            if channel.peer[0] not in self.permissions:
                continue
            relay = self.relay_for(channel.peer[0])
            if relay is not None:
                yield channel.number, channel.peer, relay

    def clear(self) -> None:
        self.channels.clear()
        self.peer_channels.clear()
        self.permissions.clear()
        self.cooldown.clear()
