"""RFC 5769 test vectors, restated as golden bytes."""

import hashlib

import pytest

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


TRANSACTION_ID = hexbytes("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")
SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"

# RFC 5769 §2.1 Sample Request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
# MESSAGE-INTEGRITY, FINGERPRINT); padding is spaces, which the RFC allows.
SAMPLE_REQUEST = hexbytes("""
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
""")

# §2.2 Sample IPv4 Response: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
SAMPLE_IPV4_RESPONSE = hexbytes("""
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
""")

# §2.3 Sample IPv6 Response: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853.
SAMPLE_IPV6_RESPONSE = hexbytes("""
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
""")

# §2.4 Sample Request with Long-Term Authentication.
LONG_TERM_TRANSACTION_ID = hexbytes("78 ad 34 33 c6 ad 72 c0 29 da 41 2e")
LONG_TERM_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"  # "マトリックス"
LONG_TERM_PASSWORD_SASLPREP = "TheMatrIX"  # SASLprep("The\u00adM\u00aatr\u2168")
LONG_TERM_NONCE = "f//499k954d6OL34oL9FSTvy64sA"
LONG_TERM_REALM = "example.org"
SAMPLE_LONG_TERM_REQUEST = hexbytes("""
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46
                53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
""")


def test_sample_request_decodes_and_authenticates():
    message = stun.decode(SAMPLE_REQUEST)
    assert message.method == Method.BINDING == 0x001
    assert message.message_class == MessageClass.REQUEST
    assert message.transaction_id == TRANSACTION_ID
    assert message.get_str(Attr.SOFTWARE) == "STUN test client"
    assert message.get_int(Attr.PRIORITY) == 0x6E0001FF
    assert message.get_int(Attr.ICE_CONTROLLED) == 0x932FF9B151263B36
    assert message.get_str(Attr.USERNAME) == "evtj:h6vY"
    assert message.fingerprint_at is not None
    assert stun.check_integrity(message, SHORT_TERM_PASSWORD)
    assert not stun.check_integrity(message, b"wrong password")


@pytest.mark.parametrize(
    ("vector", "address"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
)
def test_sample_responses_decode_and_authenticate(vector, address):
    message = stun.decode(vector)
    assert message.method == Method.BINDING
    assert message.message_class == MessageClass.SUCCESS
    assert message.get_str(Attr.SOFTWARE) == "test vector"
    assert message.get_address(Attr.XOR_MAPPED_ADDRESS) == address
    assert stun.check_integrity(message, SHORT_TERM_PASSWORD)


@pytest.mark.parametrize(
    ("vector", "address", "value"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853), "00 01 a1 47 e1 12 a6 43"),
        (
            SAMPLE_IPV6_RESPONSE,
            ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
            "00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9",
        ),
    ],
)
def test_xor_mapped_address_encodes_like_the_rfc(vector, address, value):
    message = stun.Message(
        Method.BINDING,
        MessageClass.SUCCESS,
        TRANSACTION_ID,
        {Attr.XOR_MAPPED_ADDRESS: address},
    )
    encoded = stun.encode(message)
    attribute = hexbytes(value)
    assert encoded[20:24] == bytes((0x00, 0x20, 0x00, len(attribute)))
    assert encoded[24:] == attribute
    assert attribute in vector


def test_long_term_vector_authenticates_with_md5_key():
    message = stun.decode(SAMPLE_LONG_TERM_REQUEST)
    assert message.get_str(Attr.USERNAME) == LONG_TERM_USERNAME
    assert message.get_str(Attr.NONCE) == LONG_TERM_NONCE
    assert message.get_str(Attr.REALM) == LONG_TERM_REALM
    key = hashlib.md5(
        f"{LONG_TERM_USERNAME}:{LONG_TERM_REALM}:{LONG_TERM_PASSWORD_SASLPREP}".encode()
    ).digest()
    assert stun.check_integrity(message, key)
    assert message.fingerprint_at is None


def test_long_term_vector_reencodes_byte_for_byte():
    # §2.4 pads with zeroes, like our encoder, so it must come out identical.
    from zerogate.proto.turn import long_term_key

    key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD_SASLPREP)
    message = stun.Message(
        Method.BINDING,
        MessageClass.REQUEST,
        LONG_TERM_TRANSACTION_ID,
        {
            Attr.USERNAME: LONG_TERM_USERNAME,
            Attr.NONCE: LONG_TERM_NONCE,
            Attr.REALM: LONG_TERM_REALM,
        },
    )
    assert stun.encode(message, key=key) == SAMPLE_LONG_TERM_REQUEST


def test_sample_request_fingerprint_is_checked():
    corrupted = bytearray(SAMPLE_REQUEST)
    corrupted[-1] ^= 0x01
    with pytest.raises(stun.RemoteProtocolError, match="FINGERPRINT"):
        stun.decode(bytes(corrupted))


def test_tampered_sample_fails_integrity_but_keeps_fingerprint_check_order():
    # Flip one byte of the PRIORITY value and fix nothing: the fingerprint catches it.
    tampered = bytearray(SAMPLE_REQUEST)
    tampered[44] ^= 0xFF
    with pytest.raises(stun.RemoteProtocolError):
        stun.decode(bytes(tampered))
