"""The sans-IO TURN server (RFC 8656 over UDP, RFC 8489 long-term credentials).

How the shell drives it (and nothing else):

1. A datagram arrives on the listen socket (port 3478):
   if ``data[0] & 0xC0 == 0x40`` (ChannelData) call :meth:`Server.channel_to_peer`;
   a result ``(relay, peer, payload)`` is sent from the relay socket ``relay`` to
   ``peer``; ``None`` means drop. Anything else goes to
   :meth:`Server.handle_client_datagram`.
2. A datagram arrives on a relay socket: call :meth:`Server.peer_to_client`; a
   result ``(client, framed)`` is sent from the listen socket to ``client``;
   ``None`` means "no channel is bound for that peer": then call
   :meth:`Server.handle_peer_datagram`, which sends a Data indication if a
   permission exists, or drops the datagram.
3. After feeding input, drain :meth:`Server.poll_command` **first** (bind or
   close relay sockets synchronously; report a failed bind with
   :meth:`Server.relay_bind_failed`), then :meth:`Server.poll_transmit`.
4. Re-arm one timer at :meth:`Server.poll_timeout`; when it fires call
   :meth:`Server.handle_timeout`.

Relay ports: the core picks each allocation's port itself, at random from
``relay_port_min..relay_port_max``, skipping ports it already uses. A dual-stack
allocation uses the same port number on its IPv4 and IPv6 relay address. For every
relay address it emits :class:`RelayOpened` before queueing the success response;
the shell binds a UDP socket on that port (on the local address belonging to the
advertised ``relay`` address) when it polls the command. If the bind fails it calls
:meth:`Server.relay_bind_failed`, which deletes the allocation, emits
:class:`RelayClosed` for any sibling relay address and replaces the still-queued
success response with a 508 (Insufficient Capacity) error.

Addresses are ``(ip literal, port)`` tuples; the core compares IP literals after
:func:`ipaddress.ip_address` normalisation, so the shell should pass what the
socket reports (IPv4-mapped forms are unmapped by the core).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from zerogate.proto.turn.config import ServerConfig

__all__ = [
    "Addr",
    "AllocationId",
    "Command",
    "RelayClosed",
    "RelayOpened",
    "Server",
    "Stats",
    "Transmit",
]

Addr = tuple[str, int]
AllocationId = NewType("AllocationId", int)


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` to ``destination``.

    ``source`` is ``None`` for the listen socket, else the relay address (as
    advertised in :class:`RelayOpened`) whose socket must send it.
    """

    source: Addr | None
    destination: Addr
    data: bytes


@dataclass(frozen=True, slots=True)
class RelayOpened:
    """Bind a UDP socket for ``relay`` (advertised address and port) now."""

    relay: Addr
    allocation: AllocationId


@dataclass(frozen=True, slots=True)
class RelayClosed:
    """Close the socket of ``relay``; the allocation is gone or lost that family."""

    relay: Addr
    allocation: AllocationId


Command = RelayOpened | RelayClosed


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts for /metrics (``relay.allocations.active`` and friends)."""

    allocations: int
    permissions: int
    channels: int
    responses_by_code: dict[int, int]  # 200 for successes
    dropped: int  # datagrams dropped (garbage, no permission, unknown channel ...)


class Server:
    """One TURN server: all allocations of one listen address.

    Thread-unsafe and IO-free; time comes in as ``now`` (seconds, monotonic).
    No method raises on bad input from the network.
    """

    def __init__(self, config: ServerConfig, *, now: float) -> None:
        raise NotImplementedError

    # -- input ---------------------------------------------------------------
    def handle_client_datagram(self, data: bytes, source: Addr, now: float) -> None:
        """A datagram from a client on the listen socket: a STUN message or ChannelData."""
        raise NotImplementedError

    def handle_peer_datagram(self, relay: Addr, data: bytes, peer: Addr, now: float) -> None:
        """A datagram that arrived on the relay socket ``relay`` from ``peer``.

        Queues a ChannelData (channel bound) or a Data indication (permission
        installed) to the client, or drops it.
        """
        raise NotImplementedError

    def handle_timeout(self, now: float) -> None:
        """Expire allocations, permissions, channels and cached responses due by ``now``."""
        raise NotImplementedError

    def relay_bind_failed(self, relay: Addr, now: float) -> None:
        """The shell could not bind ``relay``: delete its allocation, answer 508 instead."""
        raise NotImplementedError

    # -- output --------------------------------------------------------------
    def poll_transmit(self) -> Transmit | None:
        """Next datagram to send, or ``None``."""
        raise NotImplementedError

    def poll_command(self) -> Command | None:
        """Next socket order (:class:`RelayOpened` / :class:`RelayClosed`), or ``None``."""
        raise NotImplementedError

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` should next be called, or ``None`` (nothing pending)."""
        raise NotImplementedError

    # -- fast paths (no allocation of message objects, no logging) -----------
    def channel_to_peer(self, data: bytes, source: Addr) -> tuple[Addr, Addr, memoryview] | None:
        """ChannelData from a client: ``(relay, peer, payload)`` to send, or ``None`` to drop.

        ``None`` when the channel is not bound for ``source``, the permission is
        gone, or the Length field is wrong. Expiry is enforced by the timer, not here.
        """
        raise NotImplementedError

    def peer_to_client(self, relay: Addr, data: bytes, peer: Addr) -> tuple[Addr, bytes] | None:
        """A datagram from ``peer`` on ``relay``: ``(client, channeldata_bytes)`` when a
        channel is bound for that peer, else ``None`` (then call
        :meth:`handle_peer_datagram` for the Data-indication path)."""
        raise NotImplementedError

    # -- introspection -------------------------------------------------------
    def stats(self) -> Stats:
        """Current counts for /metrics."""
        raise NotImplementedError
