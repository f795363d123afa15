"""What the TURN cores hand to their shells: datagrams to send and socket orders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from zerogate.proto.net import Endpoint, RelayAddr

__all__ = [
    "AllocationId",
    "CloseRelaySocket",
    "Command",
    "OpenRelaySocket",
    "Transmit",
]

AllocationId = NewType("AllocationId", int)


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` to ``destination``.

    ``source`` is ``None`` for the socket the core talks through (the server's
    listen socket; the client's one UDP socket), else the relay address (as
    ordered by :class:`OpenRelaySocket`) whose socket must send it.
    """

    source: RelayAddr | None
    destination: Endpoint
    data: bytes


@dataclass(frozen=True, slots=True)
class OpenRelaySocket:
    """Bind a UDP socket for ``relay`` (advertised address and port) now, then report
    the outcome: :meth:`Server.handle_relay_bound` or
    :meth:`Server.handle_relay_bind_failed`."""

    relay: RelayAddr
    allocation: AllocationId


@dataclass(frozen=True, slots=True)
class CloseRelaySocket:
    """Close the socket of ``relay``; the allocation is gone or lost that family."""

    relay: RelayAddr
    allocation: AllocationId


Command = OpenRelaySocket | CloseRelaySocket
