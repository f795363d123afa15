"""Per-peer paths: how a sealed WireGuard datagram leaves for one peer.

The core knows each peer by an :data:`Endpoint`. By default that endpoint is a
real UDP address and datagrams go out through the interface's shared socket
(:class:`SharedSocketPath`). A later layer (an ICE pair, a TURN channel) can
give a peer its own :class:`PeerPath`: the interface then tells the core that
the peer lives at ``path.endpoint`` and hands every datagram for that endpoint
to ``path.send``; what the path receives it feeds back with
``WireGuardInterface.receive(data, path.endpoint)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from zerogate.dataplane.udp import Endpoint, UdpSockets


@runtime_checkable
class PeerPath(Protocol):
    """Where datagrams for one peer go."""

    @property
    def endpoint(self) -> Endpoint:
        """The address the core uses for this peer (unique per interface)."""
        ...

    def send(self, data: bytes) -> None:
        """Send one sealed datagram; must not block and must not raise."""
        ...


class SharedSocketPath:
    """The default path: the interface's own UDP socket to a fixed endpoint."""

    def __init__(self, sockets: UdpSockets, endpoint: Endpoint) -> None:
        self._sockets = sockets
        self._endpoint = endpoint

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    def send(self, data: bytes) -> None:
        self._sockets.send(self._endpoint, data)
