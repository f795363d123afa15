"""Errors of the TURN core.

::

    TurnError
    ├── RemoteProtocolError   the client or a peer sent something we refuse (drop, count)
    └── LocalProtocolError    the shell misused the API (a bug in our code)

The server itself never lets a per-packet fault escape: bad datagrams are
answered with a STUN error response or dropped silently. These classes are for
the helpers (ChannelData framing, credential parsing, configuration checks).
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "TurnError"]


class TurnError(Exception):
    """Base of every error raised by :mod:`zerogate.proto.turn`."""


class RemoteProtocolError(TurnError):
    """The remote side sent bytes that break the protocol."""


class LocalProtocolError(TurnError):
    """We called the core in a way it does not allow (a bug, or a bad configuration)."""
