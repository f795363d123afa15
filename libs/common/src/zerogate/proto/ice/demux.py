"""Cheap peeks that let a shell route a datagram to one of many agents on one socket.

A node hosting several agents (one per peer) on its WireGuard socket sends:

* Binding **requests** to the agent whose local ufrag is :func:`target_ufrag`
  (the USERNAME is ``<recipient ufrag>:<sender ufrag>``, RFC 8445 §7.2.2);
* Binding **responses** to the agent for which
  :meth:`IceAgent.owns_transaction` is true for :func:`transaction_id` (or
  remember the transaction ids of the requests it sent: every
  :class:`Transmit` whose data :func:`is_binding_request` carries one).

None of these functions verifies anything; the agent does that.
"""

from __future__ import annotations

from zerogate.proto.stun import HEADER_SIZE, MAGIC_COOKIE, Attr

__all__ = [
    "BINDING_ERROR",
    "BINDING_REQUEST",
    "BINDING_SUCCESS",
    "is_binding_request",
    "is_binding_response",
    "is_ice_message",
    "peek_username",
    "target_ufrag",
    "transaction_id",
]

BINDING_REQUEST = 0x0001  # RFC 8489 §5: method 0x001, class request
BINDING_SUCCESS = 0x0101  # class success response
BINDING_ERROR = 0x0111  # class error response
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")

Buffer = bytes | bytearray | memoryview


def _type(data: Buffer) -> int | None:
    """The message type of something framed like STUN (cookie, length = datagram), else None."""
    if (
        len(data) < HEADER_SIZE
        or data[4:8] != _COOKIE
        or HEADER_SIZE + ((data[2] << 8) | data[3]) != len(data)
        or data[3] & 0x03
    ):
        return None
    return (data[0] << 8) | data[1]


def is_ice_message(data: Buffer) -> bool:
    """A STUN Binding request or response (magic cookie at bytes 4-8, a length that
    fills the datagram): an ICE check or its answer."""
    return _type(data) in (BINDING_REQUEST, BINDING_SUCCESS, BINDING_ERROR)


def is_binding_request(data: Buffer) -> bool:
    return _type(data) == BINDING_REQUEST


def is_binding_response(data: Buffer) -> bool:
    return _type(data) in (BINDING_SUCCESS, BINDING_ERROR)


def transaction_id(data: Buffer) -> bytes | None:
    """The 12-byte transaction id of a STUN message, or ``None`` if it is not STUN."""
    if _type(data) is None:
        return None
    return bytes(data[8:20])


def peek_username(data: Buffer) -> str | None:
    """The USERNAME of a STUN message without decoding the rest, or ``None``."""
    if _type(data) is None:
        return None
    end = len(data)
    pos = HEADER_SIZE
    while pos + 4 <= end:
        attr_type = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        if pos + 4 + length > end:
            return None
        if attr_type == Attr.USERNAME:
            try:
                return bytes(data[pos + 4 : pos + 4 + length]).decode("utf-8")
            except UnicodeDecodeError:
                return None
        if attr_type in (Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT):
            return None  # RFC 8489 §14.5: nothing before them counts after them
        pos += 4 + length + (-length % 4)
    return None


def target_ufrag(data: Buffer) -> str | None:
    """The local ufrag of the agent a Binding request is addressed to, or ``None``."""
    if not is_binding_request(data):
        return None
    username = peek_username(data)
    if username is None:
        return None
    ufrag, colon, _ = username.partition(":")
    return ufrag if colon and ufrag else None
