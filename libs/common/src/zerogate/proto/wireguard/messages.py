"""Codecs of the four WireGuard messages (whitepaper §5.4.2-§5.4.7).

One table per message drives both encoding and decoding: a field is a name
and a width (``int`` fields are little-endian ``uint32``/``uint64``, the
others raw bytes). Every message starts with a 4-byte little-endian type
whose upper three bytes are the zero "reserved" field, so a decoder checks
``type`` as one ``uint32``, like wireguard-go does.

``decode`` checks the exact length (transport: at least 32 bytes) and the
type, and raises :class:`RemoteProtocolError` otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import ClassVar, Final, Self

from zerogate.proto.wireguard.constants import (
    AEAD_TAG_LEN,
    COOKIE_LEN,
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    KEY_LEN,
    MAC_LEN,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    RESPONSE_SIZE,
    TAI64N_LEN,
    TRANSPORT_HEADER_SIZE,
    TRANSPORT_MIN_SIZE,
    XNONCE_LEN,
)
from zerogate.proto.wireguard.errors import RemoteProtocolError

# Field kinds: "u32"/"u64" little-endian integers, an int width = raw bytes.
_Field = tuple[str, str | int]

_FORMATS: Final = {"u32": "I", "u64": "Q"}


def _struct(table: tuple[_Field, ...]) -> struct.Struct:
    parts = ["<I"]  # message type (+ 3 reserved zero bytes)
    for _, kind in table:
        parts.append(_FORMATS[kind] if isinstance(kind, str) else f"{kind}s")
    return struct.Struct("".join(parts))


class _Message:
    TYPE: ClassVar[int]
    TABLE: ClassVar[tuple[_Field, ...]]
    STRUCT: ClassVar[struct.Struct]

    def encode(self) -> bytes:
        return self.STRUCT.pack(self.TYPE, *(getattr(self, name) for name, _ in self.TABLE))

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Self:
        return cls._decode_exact(data)

    @classmethod
    def _decode_exact(cls, data: bytes | bytearray | memoryview) -> Self:
        if len(data) != cls.STRUCT.size:
            raise RemoteProtocolError(
                f"{cls.__name__} must be {cls.STRUCT.size} bytes, got {len(data)}"
            )
        values = cls.STRUCT.unpack(data)
        if values[0] != cls.TYPE:
            raise RemoteProtocolError(f"{cls.__name__}: wrong message type {values[0]:#x}")
        return cls(*values[1:])

    def __init_subclass__(cls) -> None:
        cls.STRUCT = _struct(cls.TABLE)


@dataclass(frozen=True, slots=True)
class Initiation(_Message):
    """Handshake initiation, 148 bytes (§5.4.2)."""

    TYPE: ClassVar[int] = MESSAGE_INITIATION
    TABLE: ClassVar[tuple[_Field, ...]] = (
        ("sender", "u32"),
        ("ephemeral", KEY_LEN),
        ("encrypted_static", KEY_LEN + AEAD_TAG_LEN),
        ("encrypted_timestamp", TAI64N_LEN + AEAD_TAG_LEN),
        ("mac1", MAC_LEN),
        ("mac2", MAC_LEN),
    )
    sender: int
    ephemeral: bytes
    encrypted_static: bytes
    encrypted_timestamp: bytes
    mac1: bytes
    mac2: bytes


@dataclass(frozen=True, slots=True)
class Response(_Message):
    """Handshake response, 92 bytes (§5.4.3)."""

    TYPE: ClassVar[int] = MESSAGE_RESPONSE
    TABLE: ClassVar[tuple[_Field, ...]] = (
        ("sender", "u32"),
        ("receiver", "u32"),
        ("ephemeral", KEY_LEN),
        ("encrypted_nothing", AEAD_TAG_LEN),
        ("mac1", MAC_LEN),
        ("mac2", MAC_LEN),
    )
    sender: int
    receiver: int
    ephemeral: bytes
    encrypted_nothing: bytes
    mac1: bytes
    mac2: bytes


@dataclass(frozen=True, slots=True)
class CookieReply(_Message):
    """Cookie reply, 64 bytes (§5.4.7)."""

    TYPE: ClassVar[int] = MESSAGE_COOKIE_REPLY
    TABLE: ClassVar[tuple[_Field, ...]] = (
        ("receiver", "u32"),
        ("nonce", XNONCE_LEN),
        ("encrypted_cookie", COOKIE_LEN + AEAD_TAG_LEN),
    )
    receiver: int
    nonce: bytes
    encrypted_cookie: bytes


@dataclass(frozen=True, slots=True)
class TransportHeader(_Message):
    """The 16-byte header of a transport data message (§5.4.6); the encrypted
    packet (at least the 16-byte tag) follows it."""

    TYPE: ClassVar[int] = MESSAGE_TRANSPORT
    TABLE: ClassVar[tuple[_Field, ...]] = (("receiver", "u32"), ("counter", "u64"))
    receiver: int
    counter: int

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Self:
        """Decode the header of a whole transport message (>= 32 bytes)."""
        if len(data) < TRANSPORT_MIN_SIZE:
            raise RemoteProtocolError(
                f"TransportData must be at least {TRANSPORT_MIN_SIZE} bytes, got {len(data)}"
            )
        return cls._decode_exact(memoryview(data)[:TRANSPORT_HEADER_SIZE])


TRANSPORT_HEADER: Final = TransportHeader.STRUCT
"""Precompiled ``<IIQ`` (type, receiver, counter) for the fast paths."""

TRANSPORT_NONCE: Final = struct.Struct("<4xQ")
"""The AEAD nonce of a transport message: 32 zero bits, then the 64-bit counter (§5.4.6)."""

# Byte offsets of the MACs, for computing them over the preceding bytes (§5.4.4).
INITIATION_MAC1_OFFSET: Final = INITIATION_SIZE - 2 * MAC_LEN  # 116
INITIATION_MAC2_OFFSET: Final = INITIATION_SIZE - MAC_LEN  # 132
RESPONSE_MAC1_OFFSET: Final = RESPONSE_SIZE - 2 * MAC_LEN  # 60
RESPONSE_MAC2_OFFSET: Final = RESPONSE_SIZE - MAC_LEN  # 76

MESSAGE_CLASSES: Final[dict[int, type[_Message]]] = {
    MESSAGE_INITIATION: Initiation,
    MESSAGE_RESPONSE: Response,
    MESSAGE_COOKIE_REPLY: CookieReply,
    MESSAGE_TRANSPORT: TransportHeader,
}


def decode(data: bytes | bytearray | memoryview) -> _Message:
    """Decode any WireGuard message by its type (transport: the header only)."""
    if len(data) < 4:
        raise RemoteProtocolError("datagram shorter than a message type")
    (msg_type,) = struct.unpack_from("<I", data)
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {msg_type:#x}")
    return cls.decode(data)


def _check_sizes() -> None:
    for cls, size in (
        (Initiation, INITIATION_SIZE),
        (Response, RESPONSE_SIZE),
        (CookieReply, COOKIE_REPLY_SIZE),
        (TransportHeader, TRANSPORT_HEADER_SIZE),
    ):
        if cls.STRUCT.size != size or len(fields(cls)) != len(cls.TABLE):
            raise RuntimeError(f"{cls.__name__} table does not match its size")


_check_sizes()
