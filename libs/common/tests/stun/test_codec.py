"""The STUN codec: message types, every attribute in the table, trailers, bad input."""

import hashlib
import hmac
import struct
import zlib

import pytest

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method

TID = bytes(range(12))
COOKIE = 0x2112A442  # RFC 8489 §5


# RFC 8489 §5 / RFC 8656 §17: (method, class) -> the 16-bit message type on the wire.
MESSAGE_TYPES = [
    (0x001, MessageClass.REQUEST, 0x0001),  # Binding request
    (0x001, MessageClass.SUCCESS, 0x0101),  # Binding success response
    (0x001, MessageClass.ERROR, 0x0111),  # Binding error response
    (0x001, MessageClass.INDICATION, 0x0011),  # Binding indication
    (0x003, MessageClass.REQUEST, 0x0003),  # Allocate
    (0x003, MessageClass.SUCCESS, 0x0103),
    (0x003, MessageClass.ERROR, 0x0113),
    (0x004, MessageClass.REQUEST, 0x0004),  # Refresh
    (0x006, MessageClass.INDICATION, 0x0016),  # Send indication
    (0x007, MessageClass.INDICATION, 0x0017),  # Data indication
    (0x008, MessageClass.REQUEST, 0x0008),  # CreatePermission
    (0x009, MessageClass.REQUEST, 0x0009),  # ChannelBind
    (0x009, MessageClass.SUCCESS, 0x0109),
    (0xFFF, MessageClass.ERROR, 0x3FFF),  # every method bit and both class bits
]


@pytest.mark.parametrize(("method", "klass", "wire"), MESSAGE_TYPES)
def test_message_type_bits_interleave_like_rfc_8489(method, klass, wire):
    assert stun.message_type(method, klass) == wire
    assert stun.split_message_type(wire) == (method, klass)
    encoded = stun.encode(stun.Message(method, klass, TID))
    assert encoded == struct.pack("!HHI", wire, 0, COOKIE) + TID
    decoded = stun.decode(encoded)
    assert (decoded.method, decoded.message_class) == (method, klass)


# (attribute type restated from RFC 8489 §18.3 / RFC 8656 §18 / RFC 8445 §16.1, value,
#  expected value bytes before padding; None when the bytes depend on the XOR mask)
ATTRIBUTE_CASES = [
    (0x0001, ("192.0.2.1", 3478), bytes.fromhex("00010d96c0000201")),  # MAPPED-ADDRESS
    (0x0006, "user:name", b"user:name"),  # USERNAME
    (0x0009, stun.ErrorCode(438, "Stale Nonce"), b"\x00\x00\x04\x26Stale Nonce"),
    (0x000A, (0x0012, 0x7F00), bytes.fromhex("00127f00")),  # UNKNOWN-ATTRIBUTES
    (0x000C, 0x4001, bytes.fromhex("40010000")),  # CHANNEL-NUMBER + RFFU
    (0x000D, 600, bytes.fromhex("00000258")),  # LIFETIME
    (0x0012, ("203.0.113.9", 40000), None),  # XOR-PEER-ADDRESS
    (0x0013, b"\x00\x01\x02", b"\x00\x01\x02"),  # DATA (padded to 4)
    (0x0014, "example.org", b"example.org"),  # REALM
    (0x0015, "nonce-value", b"nonce-value"),  # NONCE
    (0x0016, ("2001:db8::1", 49152), None),  # XOR-RELAYED-ADDRESS
    (0x0017, 0x02, bytes.fromhex("02000000")),  # REQUESTED-ADDRESS-FAMILY IPv6
    (0x0018, True, b"\x80"),  # EVEN-PORT with R bit
    (0x0019, 17, bytes.fromhex("11000000")),  # REQUESTED-TRANSPORT UDP
    (0x001A, True, b""),  # DONT-FRAGMENT
    (0x001D, (0x0002, b""), bytes.fromhex("00020000")),  # PASSWORD-ALGORITHM SHA-256
    (0x001E, bytes(range(32)), bytes(range(32))),  # USERHASH
    (0x0020, ("192.0.2.1", 32853), None),  # XOR-MAPPED-ADDRESS
    (0x0022, b"\x01" * 8, b"\x01" * 8),  # RESERVATION-TOKEN
    (0x0024, 0x6E0001FF, bytes.fromhex("6e0001ff")),  # PRIORITY
    (0x0025, True, b""),  # USE-CANDIDATE
    (0x8000, 0x02, bytes.fromhex("02000000")),  # ADDITIONAL-ADDRESS-FAMILY
    (0x8001, stun.AddressErrorCode(2, 440, "x"), b"\x02\x00\x04\x28x"),  # ADDRESS-ERROR-CODE
    (
        0x8002,
        ((0x0001, b""), (0x0002, b"")),
        bytes.fromhex("0001000000020000"),
    ),  # PASSWORD-ALGORITHMS MD5, SHA-256
    (0x8003, "turn.example.org", b"turn.example.org"),  # ALTERNATE-DOMAIN
    (0x8004, (3, 1, 0), bytes.fromhex("0000030100000000")),  # ICMP
    (0x8022, "zerogate", b"zerogate"),  # SOFTWARE
    (0x8023, ("2001:db8::2", 3478), None),  # ALTERNATE-SERVER
    (0x8029, 0x932FF9B151263B36, bytes.fromhex("932ff9b151263b36")),  # ICE-CONTROLLED
    (0x802A, 1, bytes.fromhex("0000000000000001")),  # ICE-CONTROLLING
    (0x802B, ("192.0.2.7", 1), None),  # RESPONSE-ORIGIN
    (0x802C, ("192.0.2.8", 2), None),  # OTHER-ADDRESS
]


@pytest.mark.parametrize(("attr_type", "value", "wire"), ATTRIBUTE_CASES)
def test_every_attribute_round_trips_with_padding(attr_type, value, wire):
    message = stun.Message(Method.ALLOCATE, MessageClass.REQUEST, TID, {attr_type: value})
    encoded = stun.encode(message)
    got_type, length = struct.unpack_from("!HH", encoded, 20)
    assert got_type == attr_type
    assert len(encoded) == 20 + 4 + length + (-length % 4)
    assert encoded[24 + length :] == b"\x00" * (-length % 4)  # padding is zero
    if wire is not None:
        assert encoded[24 : 24 + length] == wire
    decoded = stun.decode(encoded)
    assert decoded.attributes == {attr_type: value}
    assert decoded.unknown_required == ()


def test_every_table_entry_is_tested():
    tested = {case[0] for case in ATTRIBUTE_CASES}
    trailers = {0x0008, 0x001C, 0x8028}  # MESSAGE-INTEGRITY(-SHA256), FINGERPRINT
    assert set(stun.ATTRIBUTES) - trailers == tested


def test_xor_peer_address_masks_port_and_ipv6_with_transaction_id():
    message = stun.Message(
        Method.SEND, MessageClass.INDICATION, TID, {Attr.XOR_PEER_ADDRESS: ("2001:db8::1", 4660)}
    )
    encoded = stun.encode(message)
    value = encoded[24:44]
    assert value[:2] == b"\x00\x02"
    assert struct.unpack("!H", value[2:4])[0] == 4660 ^ (COOKIE >> 16)
    mask = struct.pack("!I", COOKIE) + TID
    plain = bytes(a ^ b for a, b in zip(value[4:], mask, strict=True))
    assert plain == bytes.fromhex("20010db8000000000000000000000001")


def test_unknown_comprehension_required_attributes_are_listed_optional_ignored():
    body = struct.pack("!HH", 0x7F01, 2) + b"ab\x00\x00"  # unknown, comprehension-required
    body += struct.pack("!HH", 0xC001, 1) + b"z\x00\x00\x00"  # unknown, optional
    body += struct.pack("!HH", 0x7F01, 0)  # the same unknown type again
    data = struct.pack("!HHI", 0x0003, len(body), COOKIE) + TID + body
    message = stun.decode(data)
    assert message.unknown_required == (0x7F01,)
    assert message.attributes == {}


def test_duplicate_attribute_first_counts_rest_kept_in_order():
    message = stun.Message(
        Method.ALLOCATE,
        MessageClass.SUCCESS,
        TID,
        {Attr.XOR_RELAYED_ADDRESS: ("192.0.2.1", 50000)},
    )
    message.repeated.append((Attr.XOR_RELAYED_ADDRESS, ("2001:db8::1", 50000)))
    decoded = stun.decode(stun.encode(message))
    assert decoded.get_address(Attr.XOR_RELAYED_ADDRESS) == ("192.0.2.1", 50000)
    assert decoded.get_all_addresses(Attr.XOR_RELAYED_ADDRESS) == [
        ("192.0.2.1", 50000),
        ("2001:db8::1", 50000),
    ]


def test_message_integrity_and_fingerprint_are_computed_per_rfc_8489():
    key = b"secret-key"
    message = stun.Message(Method.BINDING, MessageClass.REQUEST, TID, {Attr.USERNAME: "ab"})
    encoded = stun.encode(message, key=key, fingerprint=True)
    # USERNAME (4+4) | MESSAGE-INTEGRITY (4+20) | FINGERPRINT (4+4)
    assert struct.unpack_from("!H", encoded, 2)[0] == 8 + 24 + 8
    mi_at = 20 + 8
    covered = encoded[:2] + struct.pack("!H", 8 + 24) + encoded[4:mi_at]
    assert encoded[mi_at : mi_at + 4] == b"\x00\x08\x00\x14"
    assert encoded[mi_at + 4 : mi_at + 24] == hmac.new(key, covered, hashlib.sha1).digest()
    fp_at = mi_at + 24
    assert encoded[fp_at : fp_at + 4] == b"\x80\x28\x00\x04"
    crc = (zlib.crc32(encoded[:fp_at]) ^ 0x5354554E) & 0xFFFFFFFF
    assert struct.unpack_from("!I", encoded, fp_at + 4)[0] == crc
    decoded = stun.decode(encoded)
    assert stun.check_integrity(decoded, key)
    assert not stun.check_integrity(decoded, b"other")


def test_message_integrity_sha256():
    key = b"k" * 16
    message = stun.Message(Method.ALLOCATE, MessageClass.REQUEST, TID, {Attr.LIFETIME: 1})
    encoded = stun.encode(message, key=key, sha256=True, fingerprint=True)
    mi_at = 20 + 8
    assert encoded[mi_at : mi_at + 4] == b"\x00\x1c\x00\x20"
    covered = encoded[:2] + struct.pack("!H", 8 + 36) + encoded[4:mi_at]
    assert encoded[mi_at + 4 : mi_at + 36] == hmac.new(key, covered, hashlib.sha256).digest()
    decoded = stun.decode(encoded)
    assert decoded.integrity_sha256_at == mi_at
    assert stun.check_integrity(decoded, key)
    assert not stun.check_integrity(decoded, b"x" * 16)


def test_attributes_after_message_integrity_are_ignored():
    key = b"key"
    signed = stun.encode(
        stun.Message(Method.BINDING, MessageClass.REQUEST, TID, {Attr.USERNAME: "a"}), key=key
    )
    extra = struct.pack("!HH", Attr.LIFETIME, 4) + b"\x00\x00\x00\x05"
    data = bytearray(signed + extra)
    struct.pack_into("!H", data, 2, len(data) - 20)
    decoded = stun.decode(bytes(data))
    assert Attr.LIFETIME not in decoded.attributes
    assert stun.check_integrity(decoded, key)


def test_message_without_integrity_never_verifies():
    decoded = stun.decode(stun.encode(stun.Message(Method.BINDING, MessageClass.REQUEST, TID)))
    assert not stun.check_integrity(decoded, b"")


BAD_MESSAGES = [
    b"",
    b"\x00\x01\x00\x00" + struct.pack("!I", COOKIE) + TID[:11],  # short header
    b"\xc0\x01\x00\x00" + struct.pack("!I", COOKIE) + TID,  # top bits set
    b"\x00\x01\x00\x00" + b"\x00\x00\x00\x00" + TID,  # no magic cookie
    b"\x00\x01\x00\x04" + struct.pack("!I", COOKIE) + TID,  # length beyond the datagram
    b"\x00\x01\x00\x02" + struct.pack("!I", COOKIE) + TID + b"\x00\x00",  # length not /4
    b"\x00\x01\x00\x04" + struct.pack("!I", COOKIE) + TID + b"\x00\x06\x00\x08",  # overrun
    b"\x00\x01\x00\x08" + struct.pack("!I", COOKIE) + TID + b"\x00\x0d\x00\x02\x00\x00\x00\x00",
    b"\x00\x01\x00\x0c" + struct.pack("!I", COOKIE) + TID + b"\x00\x20\x00\x08\x00\x03" + b"\0" * 6,
    b"\x00\x01\x00\x08" + struct.pack("!I", COOKIE) + TID + b"\x00\x06\x00\x02\xff\xfe\x00\x00",
    b"\x00\x01\x00\x08" + struct.pack("!I", COOKIE) + TID + b"\x00\x09\x00\x04\x00\x00\x07\x00",
    b"\x00\x01\x00\x08" + struct.pack("!I", COOKIE) + TID + b"\x80\x28\x00\x04\x00\x00\x00\x00",
    b"\x00\x01\x00\x08" + struct.pack("!I", COOKIE) + TID + b"\x00\x08\x00\x04\x00\x00\x00\x00",
]


@pytest.mark.parametrize("data", BAD_MESSAGES)
def test_bad_input_raises_our_error_only(data):
    with pytest.raises(stun.RemoteProtocolError):
        stun.decode(data)


def test_bad_attribute_keeps_the_header_so_a_server_can_answer_400():
    data = (
        b"\x00\x03\x00\x08" + struct.pack("!I", COOKIE) + TID + b"\x00\x0d\x00\x02\x00\x01\x00\x00"
    )
    with pytest.raises(stun.RemoteProtocolError) as info:
        stun.decode(data)
    assert info.value.header == (Method.ALLOCATE, MessageClass.REQUEST, TID)


@pytest.mark.parametrize(
    ("attributes", "kwargs"),
    [
        ({Attr.LIFETIME: -1}, {}),
        ({Attr.LIFETIME: 2**32}, {}),
        ({Attr.XOR_PEER_ADDRESS: ("not an ip", 1)}, {}),
        ({Attr.XOR_PEER_ADDRESS: ("192.0.2.1", 70000)}, {}),
        ({Attr.USERNAME: 5}, {}),
        ({Attr.ERROR_CODE: (200, "OK")}, {}),
        ({Attr.FINGERPRINT: 1}, {}),
        ({Attr.USERNAME: "x" * 600}, {}),
    ],
)
def test_encoder_refuses_bad_values_with_local_error(attributes, kwargs):
    with pytest.raises(stun.LocalProtocolError):
        stun.encode(stun.Message(Method.BINDING, MessageClass.REQUEST, TID, attributes), **kwargs)


def test_is_stun_tells_stun_from_channel_data():
    assert stun.is_stun(stun.encode(stun.Message(Method.BINDING, MessageClass.REQUEST, TID)))
    assert not stun.is_stun(b"\x40\x00\x00\x10" + bytes(16))
    assert not stun.is_stun(b"\x00\x01")
