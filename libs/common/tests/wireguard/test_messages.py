"""Message codecs: exact lengths (whitepaper §5.4.2-§5.4.7), round trips, and
nothing but RemoteProtocolError for bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.proto.wireguard import RemoteProtocolError
from zerogate.proto.wireguard.messages import (
    CookieReply,
    Initiation,
    Response,
    TransportHeader,
    decode,
)

# Restated from the whitepaper: message types and sizes.
TYPE_INITIATION, TYPE_RESPONSE, TYPE_COOKIE, TYPE_TRANSPORT = 1, 2, 3, 4
SIZE_INITIATION = 1 + 3 + 4 + 32 + (32 + 16) + (12 + 16) + 16 + 16  # 148
SIZE_RESPONSE = 1 + 3 + 4 + 4 + 32 + (0 + 16) + 16 + 16  # 92
SIZE_COOKIE = 1 + 3 + 4 + 24 + (16 + 16)  # 64
SIZE_TRANSPORT_MIN = 1 + 3 + 4 + 8 + 16  # 32: an empty (keepalive) packet

EXAMPLES = [
    (Initiation(0x01020304, b"E" * 32, b"S" * 48, b"T" * 28, b"1" * 16, b"2" * 16), 148),
    (Response(7, 0xFFFFFFFF, b"E" * 32, b"N" * 16, b"1" * 16, b"2" * 16), 92),
    (CookieReply(9, b"n" * 24, b"c" * 32), 64),
]


def test_sizes_restated() -> None:
    assert (SIZE_INITIATION, SIZE_RESPONSE, SIZE_COOKIE, SIZE_TRANSPORT_MIN) == (148, 92, 64, 32)


@pytest.mark.parametrize(("msg", "size"), EXAMPLES)
def test_round_trip_and_layout(msg: Initiation | Response | CookieReply, size: int) -> None:
    data = msg.encode()
    assert len(data) == size
    assert data[0] == msg.TYPE
    assert data[1:4] == b"\0\0\0"
    assert struct.unpack_from("<I", data, 4)[0] in (0x01020304, 7, 9)  # little-endian index
    assert type(msg).decode(data) == msg
    assert decode(data) == msg


@pytest.mark.parametrize(("msg", "size"), EXAMPLES)
@pytest.mark.parametrize("delta", [-1, 1, -4, 16])
def test_wrong_length_is_refused(
    msg: Initiation | Response | CookieReply, size: int, delta: int
) -> None:
    data = msg.encode()
    bad = data[: size + delta] if delta < 0 else data + b"\0" * delta
    with pytest.raises(RemoteProtocolError):
        type(msg).decode(bad)
    with pytest.raises(RemoteProtocolError):
        decode(bad)


@pytest.mark.parametrize(("msg", "size"), EXAMPLES)
def test_wrong_type_or_reserved_is_refused(
    msg: Initiation | Response | CookieReply, size: int
) -> None:
    data = bytearray(msg.encode())
    assert len(data) == size
    for i, v in ((0, 0), (0, 5), (1, 1), (3, 0x80)):
        bad = bytearray(data)
        bad[i] = v
        with pytest.raises(RemoteProtocolError):
            type(msg).decode(bytes(bad))


def test_transport_header() -> None:
    data = struct.pack("<IIQ", TYPE_TRANSPORT, 5, 2**64 - 1) + bytes(16)
    assert len(data) == SIZE_TRANSPORT_MIN
    hdr = TransportHeader.decode(data)
    assert (hdr.receiver, hdr.counter) == (5, 2**64 - 1)
    assert TransportHeader.decode(data + b"more").counter == 2**64 - 1
    with pytest.raises(RemoteProtocolError):
        TransportHeader.decode(data[:-1])  # 31 bytes: shorter than a keepalive
    assert hdr.encode() == data[:16]


def test_unknown_type_and_runts() -> None:
    for data in (b"", b"\x01", b"\x01\0\0", struct.pack("<I", 5) + bytes(200)):
        with pytest.raises(RemoteProtocolError):
            decode(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_random_bytes(data: bytes) -> None:
    try:
        msg = decode(data)
    except RemoteProtocolError:
        return
    # whatever decodes re-encodes to the same bytes (transport: its header)
    assert data.startswith(msg.encode())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(Initiation, 148), (Response, 92), (CookieReply, 64)]),
    st.data(),
)
def test_any_body_of_the_right_size_round_trips(
    cls_size: tuple[type[Initiation | Response | CookieReply], int], data: st.DataObject
) -> None:
    cls, size = cls_size
    body = data.draw(st.binary(min_size=size - 4, max_size=size - 4))
    raw = struct.pack("<I", cls.TYPE) + body
    msg = cls.decode(raw)
    assert msg.encode() == raw
