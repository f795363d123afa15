"""Errors of the ICE agent core.

::

    IceError
    ├── RemoteProtocolError   the peer sent something we refuse (the agent drops and counts it)
    ├── LocalProtocolError    the shell misused the API (a bug in our code or configuration)
    └── InvalidCandidate      a candidate's fields are not valid (also a ValueError)

The agent never lets a per-datagram fault escape: bad or unauthenticated STUN
is dropped and counted (:attr:`IceAgent.stats`). :class:`InvalidCandidate` is
raised by :class:`~zerogate.proto.ice.Candidate` itself; a shell that builds
remote candidates from signaling catches it and drops the candidate.
"""

from __future__ import annotations

__all__ = ["IceError", "InvalidCandidate", "LocalProtocolError", "RemoteProtocolError"]


class IceError(Exception):
    """Base of every error raised by :mod:`zerogate.proto.ice`."""


class RemoteProtocolError(IceError):
    """The remote agent sent bytes that break RFC 8445 / RFC 8489."""


class LocalProtocolError(IceError):
    """We called the agent in a way it does not allow (a bug, or a bad configuration)."""


class InvalidCandidate(IceError, ValueError):
    """A candidate with an unusable field (not an IP literal, a bad port, priority 0 ...)."""
