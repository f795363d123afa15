"""Events and datagrams the device hands to its shell.

Events are facts (frozen dataclasses); peers are named by their public key
(32 bytes) so a shell can keep per-peer paths (an ICE pair, a TURN channel).
"""

from __future__ import annotations

from dataclasses import dataclass

from zerogate.proto.net import Endpoint


@dataclass(frozen=True, slots=True)
class Transmit:
    """A datagram to send.

    ``peer`` is the public key of the peer the datagram belongs to. It is empty
    (``b""``) only for a cookie reply, which answers a source whose identity we
    have deliberately not computed (that is the point of a cookie under load).
    """

    destination: Endpoint
    data: bytes
    peer: bytes


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """A handshake finished and a fresh session exists with ``peer``."""

    peer: bytes


@dataclass(frozen=True, slots=True)
class HandshakeTimedOut:
    """No handshake answer for REKEY_ATTEMPT_TIME (90 s): we stopped trying and
    dropped the packets queued for ``peer``."""

    peer: bytes


@dataclass(frozen=True, slots=True)
class PeerEndpointChanged:
    """An authenticated packet from ``peer`` arrived from a new ``endpoint``
    (roaming, whitepaper §2.1)."""

    peer: bytes
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class SessionExpired:
    """All key material of ``peer`` was dropped (REJECT_AFTER_TIME * 3 without a
    new handshake, or the keys were replaced by configuration)."""

    peer: bytes


Event = HandshakeCompleted | HandshakeTimedOut | PeerEndpointChanged | SessionExpired
