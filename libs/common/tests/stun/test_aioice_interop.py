"""Our codec against aioice's STUN codec (a real peer's implementation), both ways."""

from aioice import stun as aio

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method

TID = bytes.fromhex("0102030405060708090a0b0c")


def test_aioice_parses_our_signed_allocate_response():
    key = b"0123456789abcdef"
    ours = stun.Message(
        Method.ALLOCATE,
        MessageClass.SUCCESS,
        TID,
        {
            Attr.XOR_RELAYED_ADDRESS: ("198.51.100.1", 50001),
            Attr.LIFETIME: 600,
            Attr.XOR_MAPPED_ADDRESS: ("2001:db8::5", 40000),
            Attr.SOFTWARE: "zerogate-relay",
        },
    )
    parsed = aio.parse_message(stun.encode(ours, key=key, fingerprint=True))
    assert parsed.message_method == aio.Method.ALLOCATE
    assert parsed.message_class == aio.Class.RESPONSE
    assert parsed.transaction_id == TID
    assert parsed.attributes["XOR-RELAYED-ADDRESS"] == ("198.51.100.1", 50001)
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::5", 40000)
    assert parsed.attributes["LIFETIME"] == 600
    assert parsed.check_message_integrity(key)
    assert not parsed.check_message_integrity(b"other key")


def test_aioice_parses_our_error_with_realm_and_nonce():
    ours = stun.Message(
        Method.ALLOCATE,
        MessageClass.ERROR,
        TID,
        {
            Attr.ERROR_CODE: stun.ErrorCode(401, "Unauthenticated"),
            Attr.REALM: "zerogate",
            Attr.NONCE: "abc-def",
        },
    )
    parsed = aio.parse_message(stun.encode(ours, fingerprint=True))
    assert parsed.message_class == aio.Class.ERROR
    assert parsed.error_code == 401
    assert parsed.attributes["REALM"] == "zerogate"
    assert parsed.attributes["NONCE"] == b"abc-def"


def test_we_parse_aioice_signed_requests():
    key = aio_key = b"fedcba9876543210"
    request = aio.Message(
        message_method=aio.Method.CHANNEL_BIND,
        message_class=aio.Class.REQUEST,
        transaction_id=TID,
    )
    request.attributes["CHANNEL-NUMBER"] = 0x4000
    request.attributes["XOR-PEER-ADDRESS"] = ("2001:db8::9", 4242)
    request.attributes["USERNAME"] = "alice"
    request.attributes["REALM"] = "zerogate"
    request.attributes["NONCE"] = b"n-1"
    request.add_message_integrity(aio_key)
    ours = stun.decode(bytes(request))
    assert ours.method == Method.CHANNEL_BIND
    assert ours.message_class == MessageClass.REQUEST
    assert ours.get_int(Attr.CHANNEL_NUMBER) == 0x4000
    assert ours.get_address(Attr.XOR_PEER_ADDRESS) == ("2001:db8::9", 4242)
    assert ours.get_str(Attr.USERNAME) == "alice"
    assert ours.fingerprint_at is not None
    assert stun.check_integrity(ours, key)


def test_we_parse_aioice_allocate_with_requested_transport():
    request = aio.Message(
        message_method=aio.Method.ALLOCATE, message_class=aio.Class.REQUEST, transaction_id=TID
    )
    # aioice packs REQUESTED-TRANSPORT as a 32-bit number with UDP (17) in the top byte.
    request.attributes["REQUESTED-TRANSPORT"] = 0x11000000
    request.attributes["LIFETIME"] = 1200
    ours = stun.decode(bytes(request))
    assert ours.get_int(Attr.REQUESTED_TRANSPORT) == 17
    assert ours.get_int(Attr.LIFETIME) == 1200


def test_aioice_parses_our_data_indication():
    ours = stun.Message(
        Method.DATA,
        MessageClass.INDICATION,
        TID,
        {Attr.XOR_PEER_ADDRESS: ("192.0.2.44", 9), Attr.DATA: b"\x00payload\xff"},
    )
    parsed = aio.parse_message(stun.encode(ours))
    assert parsed.message_method == aio.Method.DATA
    assert parsed.message_class == aio.Class.INDICATION
    assert parsed.attributes["XOR-PEER-ADDRESS"] == ("192.0.2.44", 9)
    assert parsed.attributes["DATA"] == b"\x00payload\xff"
