"""ChannelData framing (RFC 8656 §12.4).

::

     0                   1                   2                   3
    |         Channel Number        |            Length             |
    /                       Application Data                        /

Over UDP the padding to a multiple of four is optional (§12.5): we accept it on
receive and never add it on send.
"""

from __future__ import annotations

import struct

from zerogate.proto.turn.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CHANNEL_DATA_HEADER_SIZE",
    "CHANNEL_NUMBER_MAX",
    "CHANNEL_NUMBER_MIN",
    "LEGACY_CHANNEL_NUMBER_MAX",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
]

CHANNEL_NUMBER_MIN = 0x4000  # RFC 8656 §12: channel numbers 0x4000 through 0x4FFF
CHANNEL_NUMBER_MAX = 0x4FFF
LEGACY_CHANNEL_NUMBER_MAX = 0x7FFF  # RFC 5766 §11 allowed 0x4000-0x7FFF
CHANNEL_DATA_HEADER_SIZE = 4  # RFC 8656 §12.4

_HEADER = struct.Struct("!HH")


def is_channel_data(data: bytes | bytearray | memoryview) -> bool:
    """True when the first two bits are 0b01 (RFC 8656 §12: 0x4000-0x7FFF)."""
    return len(data) >= 1 and data[0] & 0xC0 == 0x40


def encode_channel_data(channel: int, payload: bytes | bytearray | memoryview) -> bytes:
    """Frame ``payload`` for ``channel`` (0x4000-0x7FFF) without padding (UDP)."""
    if not CHANNEL_NUMBER_MIN <= channel <= LEGACY_CHANNEL_NUMBER_MAX:
        raise LocalProtocolError(f"channel number {channel:#x} outside 0x4000-0x7FFF")
    if len(payload) > 0xFFFF:
        raise LocalProtocolError("ChannelData payload longer than 65535 bytes")
    return _HEADER.pack(channel, len(payload)) + bytes(payload)


def decode_channel_data(
    data: bytes | bytearray | memoryview, *, legacy: bool = False
) -> tuple[int, memoryview]:
    """Return ``(channel, payload)``; trailing bytes beyond Length (padding) are ignored.

    Raises :class:`RemoteProtocolError` when the header is short, the channel is
    outside 0x4000-0x4FFF (0x7FFF with ``legacy``), or the Length field points past
    the datagram.
    """
    if len(data) < CHANNEL_DATA_HEADER_SIZE:
        raise RemoteProtocolError("ChannelData shorter than its 4-byte header")
    channel, length = _HEADER.unpack_from(data)
    highest = LEGACY_CHANNEL_NUMBER_MAX if legacy else CHANNEL_NUMBER_MAX
    if not CHANNEL_NUMBER_MIN <= channel <= highest:
        raise RemoteProtocolError(f"channel number {channel:#x} outside 0x4000-0x4FFF")
    if CHANNEL_DATA_HEADER_SIZE + length > len(data):
        raise RemoteProtocolError("ChannelData Length exceeds the datagram")
    # Over UDP the datagram may carry up to 3 bytes of padding (§12.5); more is garbage
    # but harmless, and RFC 8656 says only to relay Length bytes.
    return channel, memoryview(data)[CHANNEL_DATA_HEADER_SIZE : CHANNEL_DATA_HEADER_SIZE + length]
