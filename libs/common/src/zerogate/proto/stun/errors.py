"""Errors of the STUN codec.

::

    StunError
    ├── RemoteProtocolError   the bytes are not a valid STUN message (drop or answer 400)
    └── LocalProtocolError    we asked the encoder for something invalid (a bug)
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "StunError"]


class StunError(Exception):
    """Base of every error raised by :mod:`zerogate.proto.stun`."""


class RemoteProtocolError(StunError):
    """Received bytes break RFC 8489.

    ``header`` is ``(method, message_class, transaction_id)`` when the 20-byte
    header itself was valid, so a server can still answer a request with 400.
    """

    def __init__(self, message: str, header: tuple[int, int, bytes] | None = None) -> None:
        super().__init__(message)
        self.header = header


class LocalProtocolError(StunError):
    """The encoder was asked to produce something RFC 8489 does not allow."""
