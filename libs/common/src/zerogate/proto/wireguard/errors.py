"""Errors of the WireGuard core.

::

    WireGuardError                 base of everything this package raises
    ├── RemoteProtocolError        the peer (or anyone on the path) sent garbage:
    │                              bad length, bad type, failed MAC/AEAD, replay.
    │                              The device drops the datagram and counts it.
    └── LocalProtocolError         we misused the API: a bad key length, an
                                   unknown peer, a bad argument. A bug of ours.

``Device.decrypt`` never raises: it answers bad input with ``None``. The codecs
and the handshake functions raise :class:`RemoteProtocolError` so that tests
and tools can see *why* a datagram was refused.
"""

from __future__ import annotations


class WireGuardError(Exception):
    """Base of every error raised by :mod:`zerogate.proto.wireguard`."""


class RemoteProtocolError(WireGuardError):
    """The remote side sent something invalid; drop it."""


class LocalProtocolError(WireGuardError):
    """The caller misused the API."""
