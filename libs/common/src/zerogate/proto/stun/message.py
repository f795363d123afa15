"""STUN messages (RFC 8489) with the TURN (RFC 8656) and ICE (RFC 8445) attributes.

One table, :data:`ATTRIBUTES`, maps each attribute type to its name and to the
pair of functions that decode and encode its value; :func:`decode` and
:func:`encode` are driven by it and nothing else knows an attribute's layout.

Values in :attr:`Message.attributes` are plain Python values:

========================  =========================================
address attributes        ``(ip literal, port)``
text attributes           ``str``
32/64-bit numbers         ``int``
flags (empty value)       ``True``
ERROR-CODE                :class:`ErrorCode`
ADDRESS-ERROR-CODE        :class:`AddressErrorCode`
UNKNOWN-ATTRIBUTES        ``tuple[int, ...]``
EVEN-PORT                 ``bool`` (the R bit)
ICMP                      ``(type, code, error_data)``
PASSWORD-ALGORITHM(S)     ``(algorithm, params)`` / a tuple of those
opaque attributes         ``bytes``
========================  =========================================

MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are never in
:attr:`Message.attributes`: :func:`encode` adds them on request and
:func:`decode` records where they were so :func:`check_integrity` can verify.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from zerogate.proto.stun.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ATTRIBUTES",
    "FINGERPRINT_XOR",
    "HEADER_SIZE",
    "MAGIC_COOKIE",
    "AddressErrorCode",
    "Attr",
    "AttributeSpec",
    "ErrorCode",
    "Message",
    "MessageClass",
    "Method",
    "check_fingerprint",
    "check_integrity",
    "decode",
    "encode",
    "is_stun",
    "message_type",
    "split_message_type",
]

HEADER_SIZE = 20  # RFC 8489 §5
MAGIC_COOKIE = 0x2112A442  # RFC 8489 §5
FINGERPRINT_XOR = 0x5354554E  # RFC 8489 §14.7: CRC-32 XOR "STUN"
MESSAGE_INTEGRITY_SIZE = 20  # RFC 8489 §14.5: HMAC-SHA1
MESSAGE_INTEGRITY_SHA256_MIN = 16  # RFC 8489 §14.6: truncated to at least 16 bytes
MESSAGE_INTEGRITY_SHA256_MAX = 32
MAX_USERNAME_BYTES = 513  # RFC 8489 §14.3: "less than 509 bytes" (513 in RFC 5389)
MAX_TEXT_BYTES = 763  # RFC 8489 §14.9/§14.10/§14.14: 128 characters, up to 763 bytes
MAX_REASON_BYTES = 763  # RFC 8489 §14.8

_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)


class MessageClass(IntEnum):
    """RFC 8489 §5: the two class bits C1 C0."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class Method(IntEnum):
    """STUN/TURN methods (RFC 8489 §18.2, RFC 8656 §17)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class Attr(IntEnum):
    """Attribute types (RFC 8489 §18.3, RFC 8656 §18, RFC 8445 §16.1)."""

    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    ICMP = 0x8004
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


class ErrorCode(NamedTuple):
    """ERROR-CODE value (RFC 8489 §14.8)."""

    code: int
    reason: str


class AddressErrorCode(NamedTuple):
    """ADDRESS-ERROR-CODE value (RFC 8656 §18.13)."""

    family: int
    code: int
    reason: str


AttrValue = object
Decoder = Callable[[bytes, bytes], AttrValue]
Encoder = Callable[[AttrValue, bytes], bytes]


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """How one attribute type is named, decoded and encoded."""

    name: str
    decode: Decoder
    encode: Encoder


# -- value codecs -------------------------------------------------------------------------

_FAMILY_V4 = 0x01  # RFC 8489 §14.1
_FAMILY_V6 = 0x02


def _bad(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(what)


def _dec_address(value: bytes, _tid: bytes) -> AttrValue:
    if len(value) < 4:
        raise _bad("address attribute shorter than 4 bytes")
    family, port = value[1], int.from_bytes(value[2:4], "big")
    if family == _FAMILY_V4 and len(value) == 8:
        return (str(ipaddress.IPv4Address(value[4:8])), port)
    if family == _FAMILY_V6 and len(value) == 20:
        return (ipaddress.IPv6Address(value[4:20]).compressed, port)
    raise _bad("address attribute with a bad family or length")


def _enc_address(value: AttrValue, _tid: bytes) -> bytes:
    ip, port = _as_address(value)
    if ip.version == 4:
        return struct.pack("!BBH", 0, _FAMILY_V4, port) + ip.packed
    return struct.pack("!BBH", 0, _FAMILY_V6, port) + ip.packed


def _xor_mask(tid: bytes, length: int) -> bytes:
    return (_COOKIE_BYTES + tid)[:length]


def _xor(data: bytes, mask: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, mask, strict=True))


def _dec_xor_address(value: bytes, tid: bytes) -> AttrValue:
    if len(value) < 4:
        raise _bad("XOR address attribute shorter than 4 bytes")
    family = value[1]
    port = int.from_bytes(value[2:4], "big") ^ (MAGIC_COOKIE >> 16)
    if family == _FAMILY_V4 and len(value) == 8:
        return (str(ipaddress.IPv4Address(_xor(value[4:8], _xor_mask(tid, 4)))), port)
    if family == _FAMILY_V6 and len(value) == 20:
        return (ipaddress.IPv6Address(_xor(value[4:20], _xor_mask(tid, 16))).compressed, port)
    raise _bad("XOR address attribute with a bad family or length")


def _enc_xor_address(value: AttrValue, tid: bytes) -> bytes:
    ip, port = _as_address(value)
    xport = port ^ (MAGIC_COOKIE >> 16)
    packed = ip.packed
    family = _FAMILY_V4 if ip.version == 4 else _FAMILY_V6
    return struct.pack("!BBH", 0, family, xport) + _xor(packed, _xor_mask(tid, len(packed)))


def _as_address(value: AttrValue) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise LocalProtocolError(f"address attribute needs (ip, port), got {value!r}")
    host, port = value
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"bad port {port!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise LocalProtocolError(f"bad IP literal {host!r}") from exc
    return ip, port


def _text_codec(limit: int) -> tuple[Decoder, Encoder]:
    def dec(value: bytes, _tid: bytes) -> AttrValue:
        if len(value) > limit:
            raise _bad(f"text attribute longer than {limit} bytes")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("text attribute is not UTF-8") from exc

    def enc(value: AttrValue, _tid: bytes) -> bytes:
        if not isinstance(value, str):
            raise LocalProtocolError(f"text attribute needs str, got {value!r}")
        raw = value.encode("utf-8")
        if len(raw) > limit:
            raise LocalProtocolError(f"text attribute longer than {limit} bytes")
        return raw

    return dec, enc


def _uint_codec(size: int) -> tuple[Decoder, Encoder]:
    def dec(value: bytes, _tid: bytes) -> AttrValue:
        if len(value) != size:
            raise _bad(f"integer attribute must be {size} bytes")
        return int.from_bytes(value, "big")

    def enc(value: AttrValue, _tid: bytes) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise LocalProtocolError(f"integer attribute needs an int >= 0, got {value!r}")
        try:
            return value.to_bytes(size, "big")
        except OverflowError as exc:
            raise LocalProtocolError(f"{value} does not fit {size} bytes") from exc

    return dec, enc


def _byte_then_rffu_codec() -> tuple[Decoder, Encoder]:
    """One byte followed by three reserved bytes (REQUESTED-TRANSPORT, *-ADDRESS-FAMILY)."""

    def dec(value: bytes, _tid: bytes) -> AttrValue:
        if len(value) != 4:
            raise _bad("attribute must be 4 bytes")
        return value[0]

    def enc(value: AttrValue, _tid: bytes) -> bytes:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise LocalProtocolError(f"needs an int 0..255, got {value!r}")
        return bytes((value, 0, 0, 0))

    return dec, enc


def _dec_channel_number(value: bytes, _tid: bytes) -> AttrValue:
    if len(value) != 4:
        raise _bad("CHANNEL-NUMBER must be 4 bytes")
    return int.from_bytes(value[0:2], "big")


def _enc_channel_number(value: AttrValue, _tid: bytes) -> bytes:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise LocalProtocolError(f"CHANNEL-NUMBER needs an int 0..65535, got {value!r}")
    return struct.pack("!HH", value, 0)


def _dec_flag(value: bytes, _tid: bytes) -> AttrValue:
    if value:
        raise _bad("flag attribute must be empty")
    return True


def _enc_flag(_value: AttrValue, _tid: bytes) -> bytes:
    return b""


def _opaque_codec(min_len: int = 0, max_len: int = 0xFFFF) -> tuple[Decoder, Encoder]:
    def dec(value: bytes, _tid: bytes) -> AttrValue:
        if not min_len <= len(value) <= max_len:
            raise _bad(f"opaque attribute must be {min_len}..{max_len} bytes")
        return bytes(value)

    def enc(value: AttrValue, _tid: bytes) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"opaque attribute needs bytes, got {type(value)!r}")
        raw = bytes(value)
        if not min_len <= len(raw) <= max_len:
            raise LocalProtocolError(f"opaque attribute must be {min_len}..{max_len} bytes")
        return raw

    return dec, enc


def _dec_error_code(value: bytes, _tid: bytes) -> AttrValue:
    if len(value) < 4 or len(value) - 4 > MAX_REASON_BYTES:
        raise _bad("ERROR-CODE has a bad length")
    klass, number = value[2] & 0x07, value[3]
    if not 3 <= klass <= 6 or number > 99:
        raise _bad("ERROR-CODE outside 300..699")
    try:
        reason = value[4:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("ERROR-CODE reason is not UTF-8") from exc
    return ErrorCode(klass * 100 + number, reason)


def _enc_error_code(value: AttrValue, _tid: bytes) -> bytes:
    if not isinstance(value, tuple) or len(value) != 2:
        raise LocalProtocolError(f"ERROR-CODE needs (code, reason), got {value!r}")
    code, reason = value
    if not isinstance(code, int) or not 300 <= code <= 699 or not isinstance(reason, str):
        raise LocalProtocolError(f"bad ERROR-CODE {value!r}")
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")


def _dec_address_error_code(value: bytes, _tid: bytes) -> AttrValue:
    if len(value) < 4 or len(value) - 4 > MAX_REASON_BYTES:
        raise _bad("ADDRESS-ERROR-CODE has a bad length")
    klass, number = value[2] & 0x07, value[3]
    if not 3 <= klass <= 6 or number > 99:
        raise _bad("ADDRESS-ERROR-CODE outside 300..699")
    try:
        reason = value[4:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("ADDRESS-ERROR-CODE reason is not UTF-8") from exc
    return AddressErrorCode(value[0], klass * 100 + number, reason)


def _enc_address_error_code(value: AttrValue, _tid: bytes) -> bytes:
    if not isinstance(value, tuple) or len(value) != 3:
        raise LocalProtocolError(f"ADDRESS-ERROR-CODE needs (family, code, reason), got {value!r}")
    family, code, reason = value
    if (
        not isinstance(family, int)
        or not 0 <= family <= 0xFF
        or not isinstance(code, int)
        or not 300 <= code <= 699
        or not isinstance(reason, str)
    ):
        raise LocalProtocolError(f"bad ADDRESS-ERROR-CODE {value!r}")
    return struct.pack("!BBBB", family, 0, code // 100, code % 100) + reason.encode("utf-8")


def _dec_unknown_attributes(value: bytes, _tid: bytes) -> AttrValue:
    if len(value) % 2:
        raise _bad("UNKNOWN-ATTRIBUTES has an odd length")
    return tuple(int.from_bytes(value[i : i + 2], "big") for i in range(0, len(value), 2))


def _enc_unknown_attributes(value: AttrValue, _tid: bytes) -> bytes:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and 0 <= v <= 0xFFFF for v in value
    ):
        raise LocalProtocolError(f"UNKNOWN-ATTRIBUTES needs a tuple of ints, got {value!r}")
    return b"".join(v.to_bytes(2, "big") for v in value)


def _dec_even_port(value: bytes, _tid: bytes) -> AttrValue:
    if len(value) != 1:
        raise _bad("EVEN-PORT must be 1 byte")
    return bool(value[0] & 0x80)


def _enc_even_port(value: AttrValue, _tid: bytes) -> bytes:
    return b"\x80" if value else b"\x00"


def _dec_icmp(value: bytes, _tid: bytes) -> AttrValue:
    if len(value) != 8:
        raise _bad("ICMP must be 8 bytes")
    return (value[2], value[3], int.from_bytes(value[4:8], "big"))


def _enc_icmp(value: AttrValue, _tid: bytes) -> bytes:
    if not isinstance(value, tuple) or len(value) != 3:
        raise LocalProtocolError(f"ICMP needs (type, code, data), got {value!r}")
    icmp_type, icmp_code, data = value
    try:
        return struct.pack("!HBBI", 0, icmp_type, icmp_code, data)
    except struct.error as exc:
        raise LocalProtocolError(f"bad ICMP {value!r}") from exc


def _dec_algorithm_list(value: bytes) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(value):
        if pos + 4 > len(value):
            raise _bad("truncated password algorithm")
        alg, length = struct.unpack_from("!HH", value, pos)
        end = pos + 4 + length
        if end > len(value):
            raise _bad("password algorithm parameters overrun")
        out.append((alg, bytes(value[pos + 4 : end])))
        pos = end + (-length % 4)
    return tuple(out)


def _enc_algorithm(value: AttrValue) -> bytes:
    if not isinstance(value, tuple) or len(value) != 2:
        raise LocalProtocolError(f"password algorithm needs (alg, params), got {value!r}")
    alg, params = value
    if not isinstance(alg, int) or not isinstance(params, bytes) or not 0 <= alg <= 0xFFFF:
        raise LocalProtocolError(f"bad password algorithm {value!r}")
    return struct.pack("!HH", alg, len(params)) + params + b"\x00" * (-len(params) % 4)


def _dec_password_algorithms(value: bytes, _tid: bytes) -> AttrValue:
    return _dec_algorithm_list(value)


def _enc_password_algorithms(value: AttrValue, _tid: bytes) -> bytes:
    if not isinstance(value, tuple | list):
        raise LocalProtocolError(f"PASSWORD-ALGORITHMS needs a tuple, got {value!r}")
    return b"".join(_enc_algorithm(v) for v in value)


def _dec_password_algorithm(value: bytes, _tid: bytes) -> AttrValue:
    algs = _dec_algorithm_list(value)
    if len(algs) != 1:
        raise _bad("PASSWORD-ALGORITHM must hold exactly one algorithm")
    return algs[0]


def _enc_password_algorithm(value: AttrValue, _tid: bytes) -> bytes:
    return _enc_algorithm(value)


def _spec(name: str, codec: tuple[Decoder, Encoder]) -> AttributeSpec:
    return AttributeSpec(name, codec[0], codec[1])


_ADDRESS = (_dec_address, _enc_address)
_XOR_ADDRESS = (_dec_xor_address, _enc_xor_address)
_FLAG = (_dec_flag, _enc_flag)

#: The attribute table: type -> (name, decoder, encoder). Drives decode and encode.
ATTRIBUTES: dict[int, AttributeSpec] = {
    Attr.MAPPED_ADDRESS: _spec("MAPPED-ADDRESS", _ADDRESS),
    Attr.USERNAME: _spec("USERNAME", _text_codec(MAX_USERNAME_BYTES)),
    Attr.MESSAGE_INTEGRITY: _spec("MESSAGE-INTEGRITY", _opaque_codec(20, 20)),
    Attr.ERROR_CODE: _spec("ERROR-CODE", (_dec_error_code, _enc_error_code)),
    Attr.UNKNOWN_ATTRIBUTES: _spec(
        "UNKNOWN-ATTRIBUTES", (_dec_unknown_attributes, _enc_unknown_attributes)
    ),
    Attr.CHANNEL_NUMBER: _spec("CHANNEL-NUMBER", (_dec_channel_number, _enc_channel_number)),
    Attr.LIFETIME: _spec("LIFETIME", _uint_codec(4)),
    Attr.XOR_PEER_ADDRESS: _spec("XOR-PEER-ADDRESS", _XOR_ADDRESS),
    Attr.DATA: _spec("DATA", _opaque_codec()),
    Attr.REALM: _spec("REALM", _text_codec(MAX_TEXT_BYTES)),
    Attr.NONCE: _spec("NONCE", _text_codec(MAX_TEXT_BYTES)),
    Attr.XOR_RELAYED_ADDRESS: _spec("XOR-RELAYED-ADDRESS", _XOR_ADDRESS),
    Attr.REQUESTED_ADDRESS_FAMILY: _spec("REQUESTED-ADDRESS-FAMILY", _byte_then_rffu_codec()),
    Attr.EVEN_PORT: _spec("EVEN-PORT", (_dec_even_port, _enc_even_port)),
    Attr.REQUESTED_TRANSPORT: _spec("REQUESTED-TRANSPORT", _byte_then_rffu_codec()),
    Attr.DONT_FRAGMENT: _spec("DONT-FRAGMENT", _FLAG),
    Attr.MESSAGE_INTEGRITY_SHA256: _spec(
        "MESSAGE-INTEGRITY-SHA256",
        _opaque_codec(MESSAGE_INTEGRITY_SHA256_MIN, MESSAGE_INTEGRITY_SHA256_MAX),
    ),
    Attr.PASSWORD_ALGORITHM: _spec(
        "PASSWORD-ALGORITHM", (_dec_password_algorithm, _enc_password_algorithm)
    ),
    Attr.USERHASH: _spec("USERHASH", _opaque_codec(32, 32)),
    Attr.XOR_MAPPED_ADDRESS: _spec("XOR-MAPPED-ADDRESS", _XOR_ADDRESS),
    Attr.RESERVATION_TOKEN: _spec("RESERVATION-TOKEN", _opaque_codec(8, 8)),
    Attr.PRIORITY: _spec("PRIORITY", _uint_codec(4)),
    Attr.USE_CANDIDATE: _spec("USE-CANDIDATE", _FLAG),
    Attr.ADDITIONAL_ADDRESS_FAMILY: _spec("ADDITIONAL-ADDRESS-FAMILY", _byte_then_rffu_codec()),
    Attr.ADDRESS_ERROR_CODE: _spec(
        "ADDRESS-ERROR-CODE", (_dec_address_error_code, _enc_address_error_code)
    ),
    Attr.PASSWORD_ALGORITHMS: _spec(
        "PASSWORD-ALGORITHMS", (_dec_password_algorithms, _enc_password_algorithms)
    ),
    Attr.ALTERNATE_DOMAIN: _spec("ALTERNATE-DOMAIN", _text_codec(MAX_TEXT_BYTES)),
    Attr.ICMP: _spec("ICMP", (_dec_icmp, _enc_icmp)),
    Attr.SOFTWARE: _spec("SOFTWARE", _text_codec(MAX_TEXT_BYTES)),
    Attr.ALTERNATE_SERVER: _spec("ALTERNATE-SERVER", _ADDRESS),
    Attr.FINGERPRINT: _spec("FINGERPRINT", _uint_codec(4)),
    Attr.ICE_CONTROLLED: _spec("ICE-CONTROLLED", _uint_codec(8)),
    Attr.ICE_CONTROLLING: _spec("ICE-CONTROLLING", _uint_codec(8)),
    Attr.RESPONSE_ORIGIN: _spec("RESPONSE-ORIGIN", _ADDRESS),
    Attr.OTHER_ADDRESS: _spec("OTHER-ADDRESS", _ADDRESS),
}

_MAX_REPEATED = 16  # bound the work a hostile message can cause

_TRAILERS = frozenset(
    {Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT}
)  # added by encode(), located by decode()


# -- message ------------------------------------------------------------------------------


def message_type(method: int, klass: int) -> int:
    """Interleave method bits M0-M11 and class bits C0-C1 (RFC 8489 §5, figure 3)."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((klass & 0b01) << 4)
        | ((klass & 0b10) << 7)
    )


def split_message_type(value: int) -> tuple[int, int]:
    """Inverse of :func:`message_type`: ``(method, class)``."""
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    klass = ((value >> 4) & 0b01) | ((value >> 7) & 0b10)
    return method, klass


@dataclass(slots=True)
class Message:
    """A STUN message. ``attributes`` maps type to value, in wire order."""

    method: int
    message_class: MessageClass
    transaction_id: bytes
    attributes: dict[int, AttrValue] = field(default_factory=dict)
    #: Further occurrences of a type already in ``attributes`` (e.g. the second
    #: XOR-RELAYED-ADDRESS of a dual-stack allocation, RFC 8656 §7.2), in wire order.
    repeated: list[tuple[int, AttrValue]] = field(default_factory=list)
    #: Comprehension-required (type < 0x8000) attribute types we do not know.
    unknown_required: tuple[int, ...] = ()
    #: Set by decode: the received bytes and the offsets of the trailers.
    raw: bytes = b""
    integrity_at: int | None = None
    integrity_sha256_at: int | None = None
    fingerprint_at: int | None = None

    # typed accessors; each returns None when absent or of another shape
    def get_str(self, attr: int) -> str | None:
        value = self.attributes.get(attr)
        return value if isinstance(value, str) else None

    def get_int(self, attr: int) -> int | None:
        value = self.attributes.get(attr)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def get_bytes(self, attr: int) -> bytes | None:
        value = self.attributes.get(attr)
        return value if isinstance(value, bytes) else None

    def get_address(self, attr: int) -> tuple[str, int] | None:
        value = self.attributes.get(attr)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            host, port = value
            if isinstance(port, int):
                return host, port
        return None

    def get_all_addresses(self, attr: int) -> list[tuple[str, int]]:
        """Every occurrence of an address attribute, first one first."""
        out: list[tuple[str, int]] = []
        first = self.get_address(attr)
        if first is not None:
            out.append(first)
        for attr_type, value in self.repeated:
            if attr_type == attr and isinstance(value, tuple) and len(value) == 2:
                host, port = value
                if isinstance(host, str) and isinstance(port, int):
                    out.append((host, port))
        return out

    def error_code(self) -> ErrorCode | None:
        value = self.attributes.get(Attr.ERROR_CODE)
        return value if isinstance(value, ErrorCode) else None


def is_stun(data: bytes | bytearray | memoryview) -> bool:
    """Cheap test: top two bits zero, length multiple of 4, magic cookie present."""
    return (
        len(data) >= HEADER_SIZE
        and data[0] & 0xC0 == 0
        and data[3] & 0x03 == 0
        and bytes(data[4:8]) == _COOKIE_BYTES
    )


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one STUN message that fills the whole datagram.

    Raises :class:`RemoteProtocolError` (and nothing else) for anything that is not
    a valid RFC 8489 message, including a FINGERPRINT that does not match.
    Integrity is *not* checked here: call :func:`check_integrity` with the key.
    """
    raw = bytes(data)
    if len(raw) < HEADER_SIZE:
        raise RemoteProtocolError("shorter than a STUN header")
    msg_type, length = struct.unpack_from("!HH", raw, 0)
    if msg_type & 0xC000:
        raise RemoteProtocolError("top two bits of a STUN message must be zero")
    if raw[4:8] != _COOKIE_BYTES:
        raise RemoteProtocolError("no magic cookie (RFC 3489 messages are not supported)")
    method, klass = split_message_type(msg_type)
    tid = raw[8:20]
    header = (method, klass, tid)
    if length % 4 or HEADER_SIZE + length != len(raw):
        raise RemoteProtocolError("message length does not match the datagram", header)
    message = Message(method, MessageClass(klass), tid, raw=raw)
    unknown: list[int] = []
    pos = HEADER_SIZE
    end = len(raw)
    while pos < end:
        if pos + 4 > end:
            raise RemoteProtocolError("truncated attribute header", header)
        attr_type, attr_len = struct.unpack_from("!HH", raw, pos)
        value_end = pos + 4 + attr_len
        padded_end = value_end + (-attr_len % 4)
        if padded_end > end:
            raise RemoteProtocolError("attribute overruns the message", header)
        value = raw[pos + 4 : value_end]
        if message.fingerprint_at is not None:
            raise RemoteProtocolError("attribute after FINGERPRINT", header)
        if attr_type == Attr.FINGERPRINT:
            message.fingerprint_at = pos
            if attr_len != 4:
                raise RemoteProtocolError("FINGERPRINT must be 4 bytes", header)
            if not _fingerprint_matches(raw, pos, value):
                raise RemoteProtocolError("FINGERPRINT mismatch", header)
        elif attr_type == Attr.MESSAGE_INTEGRITY_SHA256:
            if message.integrity_sha256_at is None:
                if not (
                    MESSAGE_INTEGRITY_SHA256_MIN <= attr_len <= MESSAGE_INTEGRITY_SHA256_MAX
                    and attr_len % 4 == 0
                ):
                    raise RemoteProtocolError("MESSAGE-INTEGRITY-SHA256 bad length", header)
                message.integrity_sha256_at = pos
        elif message.integrity_sha256_at is not None:
            pass  # RFC 8489 §14.6: ignore everything after it but FINGERPRINT
        elif attr_type == Attr.MESSAGE_INTEGRITY:
            if message.integrity_at is None:
                if attr_len != MESSAGE_INTEGRITY_SIZE:
                    raise RemoteProtocolError("MESSAGE-INTEGRITY must be 20 bytes", header)
                message.integrity_at = pos
        elif message.integrity_at is not None:
            pass  # RFC 8489 §14.5: ignore everything after it but the two above
        else:
            spec = ATTRIBUTES.get(attr_type)
            if spec is None:
                if attr_type < 0x8000 and attr_type not in unknown:
                    unknown.append(attr_type)
            else:
                try:
                    decoded = spec.decode(value, tid)
                except RemoteProtocolError as exc:
                    raise RemoteProtocolError(f"{spec.name}: {exc}", header) from None
                if attr_type in message.attributes:
                    # RFC 8489 §14: the first occurrence is the one that counts.
                    if len(message.repeated) < _MAX_REPEATED:
                        message.repeated.append((attr_type, decoded))
                else:
                    message.attributes[attr_type] = decoded
        pos = padded_end
    message.unknown_required = tuple(unknown)
    return message


def _fingerprint_matches(raw: bytes, pos: int, value: bytes) -> bool:
    # The length in the header covers up to and including FINGERPRINT (RFC 8489 §14.7).
    covered = raw[:2] + struct.pack("!H", pos + 8 - HEADER_SIZE) + raw[4:pos]
    expected = (binascii.crc32(covered) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
    return int.from_bytes(value, "big") == expected


def check_fingerprint(message: Message) -> bool:
    """True when the decoded message carried a FINGERPRINT (decode already verified it)."""
    return message.fingerprint_at is not None


def check_integrity(message: Message, key: bytes) -> bool:
    """Verify MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY, with ``key``.

    Returns False when neither is present. Constant-time comparison.
    """
    raw = message.raw
    if message.integrity_sha256_at is not None:
        pos = message.integrity_sha256_at
        length = int.from_bytes(raw[pos + 2 : pos + 4], "big")
        received = raw[pos + 4 : pos + 4 + length]
        covered = raw[:2] + struct.pack("!H", pos + 4 + length - HEADER_SIZE) + raw[4:pos]
        mac = hmac.new(key, covered, hashlib.sha256).digest()[:length]
        return hmac.compare_digest(mac, received)
    if message.integrity_at is not None:
        pos = message.integrity_at
        received = raw[pos + 4 : pos + 4 + MESSAGE_INTEGRITY_SIZE]
        covered = (
            raw[:2] + struct.pack("!H", pos + 4 + MESSAGE_INTEGRITY_SIZE - HEADER_SIZE) + raw[4:pos]
        )
        mac = hmac.new(key, covered, hashlib.sha1).digest()
        return hmac.compare_digest(mac, received)
    return False


def encode(
    message: Message,
    *,
    key: bytes | None = None,
    sha256: bool = False,
    fingerprint: bool = False,
) -> bytes:
    """Serialise ``message``; with ``key`` append MESSAGE-INTEGRITY (or -SHA256 when
    ``sha256``), then FINGERPRINT when asked. Raises :class:`LocalProtocolError` for
    values the table cannot encode."""
    if len(message.transaction_id) != 12:
        raise LocalProtocolError("transaction id must be 12 bytes")
    if not 0 <= message.method <= 0xFFF:
        raise LocalProtocolError("method must fit 12 bits")
    tid = message.transaction_id
    parts: list[bytes] = []
    for attr_type, value in [*message.attributes.items(), *message.repeated]:
        if attr_type in _TRAILERS:
            raise LocalProtocolError(f"{attr_type:#06x} is added by encode(), not by hand")
        spec = ATTRIBUTES.get(attr_type)
        if spec is None:
            if not isinstance(value, bytes):
                raise LocalProtocolError(f"unknown attribute {attr_type:#06x} needs bytes")
            body = value
        else:
            body = spec.encode(value, tid)
        if len(body) > 0xFFFF:
            raise LocalProtocolError(f"attribute {attr_type:#06x} too long")
        parts.append(struct.pack("!HH", attr_type, len(body)) + body + b"\x00" * (-len(body) % 4))
    body = b"".join(parts)
    msg_type = message_type(message.method, message.message_class)
    if key is not None:
        mi_type, mi_len = (
            (Attr.MESSAGE_INTEGRITY_SHA256, 32) if sha256 else (Attr.MESSAGE_INTEGRITY, 20)
        )
        head = struct.pack("!HHI", msg_type, len(body) + 4 + mi_len, MAGIC_COOKIE) + tid
        digest = hashlib.sha256 if sha256 else hashlib.sha1
        mac = hmac.new(key, head + body, digest).digest()
        body += struct.pack("!HH", mi_type, mi_len) + mac
    if fingerprint:
        head = struct.pack("!HHI", msg_type, len(body) + 8, MAGIC_COOKIE) + tid
        crc = (binascii.crc32(head + body) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        body += struct.pack("!HHI", Attr.FINGERPRINT, 4, crc)
    if len(body) > 0xFFFF:
        raise LocalProtocolError("message too long")
    return struct.pack("!HHI", msg_type, len(body), MAGIC_COOKIE) + tid + body
