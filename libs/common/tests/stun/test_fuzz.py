"""Hypothesis on the codec: only our error escapes decode; encode/decode round-trip."""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

COOKIE = struct.pack("!I", 0x2112A442)


def _decode_or_our_error(data: bytes) -> None:
    try:
        message = stun.decode(data)
    except stun.RemoteProtocolError:
        return
    # Whatever decodes must survive verification and re-encoding of its known attributes.
    stun.check_integrity(message, b"key")
    stun.encode(message)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data):
    _decode_or_our_error(data)


@FUZZ
@given(
    method_type=st.integers(0, 0x3FFF),
    body=st.lists(
        st.tuples(
            st.sampled_from([*list(stun.ATTRIBUTES), 0x7777, 0xC0DE]),
            st.binary(max_size=40),
            st.integers(-3, 3),
        ),
        max_size=6,
    ),
    tid=st.binary(min_size=12, max_size=12),
)
def test_structured_garbage(method_type, body, tid):
    """Valid framing with random attribute values and wrong lengths."""
    payload = b""
    for attr_type, value, skew in body:
        length = max(0, min(0xFFFF, len(value) + skew))
        payload += struct.pack("!HH", attr_type, length) + value + b"\x00" * (-len(value) % 4)
    data = struct.pack("!HH", method_type, len(payload)) + COOKIE + tid + payload
    _decode_or_our_error(data)


VALID = stun.encode(
    stun.Message(
        0x003,
        MessageClass.REQUEST,
        bytes(12),
        {
            Attr.REQUESTED_TRANSPORT: 17,
            Attr.USERNAME: "u",
            Attr.REALM: "r",
            Attr.NONCE: "n",
            Attr.XOR_PEER_ADDRESS: ("2001:db8::1", 1),
            Attr.ERROR_CODE: stun.ErrorCode(400, "x"),
        },
    ),
    key=b"k",
    fingerprint=True,
)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_mutated_valid_message(mutations):
    data = bytearray(VALID)
    for index, value in mutations:
        data[index] = value
    _decode_or_our_error(bytes(data))


addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
    st.tuples(st.ip_addresses(v=6).map(lambda ip: ip.compressed), st.integers(0, 65535)),
)
texts = st.text(max_size=40)
VALUE_STRATEGIES = {
    Attr.USERNAME: texts,
    Attr.REALM: texts,
    Attr.NONCE: texts,
    Attr.SOFTWARE: texts,
    Attr.LIFETIME: st.integers(0, 2**32 - 1),
    Attr.PRIORITY: st.integers(0, 2**32 - 1),
    Attr.ICE_CONTROLLING: st.integers(0, 2**64 - 1),
    Attr.XOR_PEER_ADDRESS: addresses,
    Attr.XOR_MAPPED_ADDRESS: addresses,
    Attr.XOR_RELAYED_ADDRESS: addresses,
    Attr.MAPPED_ADDRESS: addresses,
    Attr.DATA: st.binary(max_size=64),
    Attr.CHANNEL_NUMBER: st.integers(0, 0xFFFF),
    Attr.REQUESTED_TRANSPORT: st.integers(0, 255),
    Attr.ERROR_CODE: st.builds(stun.ErrorCode, st.integers(300, 699), texts),
    Attr.USE_CANDIDATE: st.just(True),
    Attr.EVEN_PORT: st.booleans(),
}


@FUZZ
@given(
    method=st.integers(0, 0xFFF),
    klass=st.sampled_from(list(MessageClass)),
    tid=st.binary(min_size=12, max_size=12),
    attributes=st.fixed_dictionaries({}, optional=dict(VALUE_STRATEGIES)),
    key=st.one_of(st.none(), st.binary(min_size=1, max_size=32)),
    sha256=st.booleans(),
    fingerprint=st.booleans(),
)
def test_round_trip(method, klass, tid, attributes, key, sha256, fingerprint):
    message = stun.Message(method, klass, tid, dict(attributes))
    encoded = stun.encode(message, key=key, sha256=sha256, fingerprint=fingerprint)
    decoded = stun.decode(encoded)
    assert (decoded.method, decoded.message_class, decoded.transaction_id) == (method, klass, tid)
    assert decoded.attributes == attributes
    assert (decoded.fingerprint_at is not None) == fingerprint
    if key is not None:
        assert stun.check_integrity(decoded, key)
