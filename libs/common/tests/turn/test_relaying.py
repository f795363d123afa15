"""Permissions, channels, Send/Data indications and ChannelData (RFC 8656 §9-§12)."""

import struct

import pytest

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method
from zerogate.proto.turn import decode_channel_data, encode_channel_data

PEER = ("8.8.8.8", 5000)  # public: permitted
PEER_SAME_IP = ("8.8.8.8", 6000)
OTHER_PEER = ("1.1.1.1", 7000)
PEER_V6 = ("2606:4700::1111", 443)
PERMISSION_LIFETIME = 300  # RFC 8656 §9
CHANNEL_LIFETIME = 600  # RFC 8656 §12
CHANNEL_MIN, CHANNEL_MAX = 0x4000, 0x4FFF  # RFC 8656 §12


@pytest.fixture
def allocated(harness):
    client = harness.client()
    response = client.allocate({Attr.LIFETIME: 3600, Attr.ADDITIONAL_ADDRESS_FAMILY: 0x02})
    v4, v6 = response.get_all_addresses(Attr.XOR_RELAYED_ADDRESS)
    return harness, client, v4, v6


def channel_data(channel: int, payload: bytes) -> bytes:
    return struct.pack("!HH", channel, len(payload)) + payload


def test_send_indication_needs_a_permission(allocated):
    harness, client, v4, _ = allocated
    assert client.send_indication(PEER, b"hello") == []
    assert harness.server.stats().dropped >= 1
    assert harness.code(client.permit(PEER)) == 200
    sent = client.send_indication(PEER, b"hello")
    assert [(t.source, t.destination, t.data) for t in sent] == [(v4, PEER, b"hello")]
    # Permissions are keyed by IP only (RFC 8656 §9): another port of that IP is fine.
    sent = client.send_indication(PEER_SAME_IP, b"x")
    assert [t.destination for t in sent] == [PEER_SAME_IP]


def test_peer_data_becomes_a_data_indication_only_with_permission(allocated):
    harness, client, v4, _ = allocated
    assert harness.peer_datagram(v4, b"early", PEER) == []
    client.permit(PEER)
    sent = harness.peer_datagram(v4, b"reply", PEER)
    assert len(sent) == 1
    assert sent[0].source is None
    assert sent[0].destination == client.address
    message = stun.decode(sent[0].data)
    assert (message.method, message.message_class) == (Method.DATA, MessageClass.INDICATION)
    assert message.get_address(Attr.XOR_PEER_ADDRESS) == PEER
    assert message.get_bytes(Attr.DATA) == b"reply"
    assert harness.peer_datagram(v4, b"stranger", OTHER_PEER) == []


def test_create_permission_with_several_peers(allocated):
    harness, client, _, v6 = allocated
    assert harness.code(client.permit(PEER, OTHER_PEER, PEER_V6)) == 200
    assert harness.server.stats().permissions == 3
    assert [t.source for t in client.send_indication(PEER_V6, b"6")] == [v6]


def test_create_permission_without_peer_gets_400(allocated):
    harness, client, _, _ = allocated
    assert harness.code(client.call(Method.CREATE_PERMISSION, {})) == 400


def test_permission_request_is_all_or_nothing(allocated):
    harness, client, _, _ = allocated
    assert harness.code(client.permit(PEER, ("10.0.0.1", 1))) == 403
    assert harness.server.stats().permissions == 0


def test_permission_without_allocation_gets_437(harness):
    assert harness.code(harness.client().permit(PEER)) == 437


def test_permission_expires_after_300_seconds(allocated):
    harness, client, v4, _ = allocated
    client.permit(PEER)
    harness.advance(PERMISSION_LIFETIME - 1)
    assert len(harness.peer_datagram(v4, b"a", PEER)) == 1
    harness.advance(2)
    assert harness.server.stats().permissions == 0
    assert harness.peer_datagram(v4, b"b", PEER) == []
    assert client.send_indication(PEER, b"c") == []


def test_permission_refresh_extends(allocated):
    harness, client, v4, _ = allocated
    client.permit(PEER)
    harness.advance(200)
    client.permit(PEER)
    harness.advance(200)
    assert len(harness.peer_datagram(v4, b"a", PEER)) == 1


def test_channel_bind_relays_both_ways_on_the_fast_path(allocated):
    harness, client, v4, _ = allocated
    assert harness.code(client.bind(0x4001, PEER)) == 200
    server = harness.server
    assert server.stats().channels == 1
    assert server.stats().permissions == 1  # ChannelBind installs the permission
    routed = server.channel_to_peer(channel_data(0x4001, b"ping"), client.address)
    assert routed is not None
    relay, peer, payload = routed
    assert (relay, peer, bytes(payload)) == (v4, PEER, b"ping")
    back = server.peer_to_client(v4, b"pong", PEER)
    assert back == (client.address, b"\x40\x01\x00\x04pong")


def test_channel_data_through_handle_client_datagram(allocated):
    harness, client, v4, _ = allocated
    client.bind(0x4001, PEER)
    sent = client.send_raw(channel_data(0x4001, b"abc") + b"\x00")  # padded to 4
    assert [(t.source, t.destination, t.data) for t in sent] == [(v4, PEER, b"abc")]
    sent = harness.peer_datagram(v4, b"xyz", PEER)
    assert [(t.source, t.destination, t.data) for t in sent] == [
        (None, client.address, b"\x40\x01\x00\x03xyz")
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"\x40\x01\x00\x10abc",  # Length beyond the datagram
        b"\x40\x02\x00\x03abc",  # channel not bound
        b"\x40\x01\x00",  # short header
    ],
)
def test_bad_or_unbound_channel_data_is_dropped(allocated, data):
    harness, client, _, _ = allocated
    client.bind(0x4001, PEER)
    assert harness.server.channel_to_peer(data, client.address) is None
    assert client.send_raw(data) == []


def test_channel_data_from_another_client_address_is_dropped(allocated):
    harness, client, _, _ = allocated
    client.bind(0x4001, PEER)
    assert harness.server.channel_to_peer(channel_data(0x4001, b"x"), ("192.0.2.66", 1)) is None


@pytest.mark.parametrize("channel", [0x0000, 0x3FFF, 0x5000, 0x7FFF, 0xFFFF])
def test_channel_number_out_of_range_gets_400(allocated, channel):
    harness, client, _, _ = allocated
    assert harness.code(client.bind(channel, PEER)) == 400


@pytest.mark.parametrize("channel", [CHANNEL_MIN, CHANNEL_MAX])
def test_channel_number_range_edges_are_accepted(allocated, channel):
    harness, client, _, _ = allocated
    assert harness.code(client.bind(channel, PEER)) == 200


def test_channel_rebind_rules(allocated):
    harness, client, _, _ = allocated
    assert harness.code(client.bind(0x4001, PEER)) == 200
    # Refreshing the same binding is fine.
    assert harness.code(client.bind(0x4001, PEER)) == 200
    # The channel is bound to another peer: 400.
    assert harness.code(client.bind(0x4001, OTHER_PEER)) == 400
    # The peer (IP and port) is bound to another channel: 400.
    assert harness.code(client.bind(0x4002, PEER)) == 400
    # Another port of the same IP is another peer transport address: allowed.
    assert harness.code(client.bind(0x4002, PEER_SAME_IP)) == 200
    assert harness.server.stats().channels == 2


def test_channel_bind_missing_attributes_gets_400(allocated):
    harness, client, _, _ = allocated
    assert harness.code(client.call(Method.CHANNEL_BIND, {Attr.CHANNEL_NUMBER: 0x4000})) == 400
    assert harness.code(client.call(Method.CHANNEL_BIND, {Attr.XOR_PEER_ADDRESS: PEER})) == 400


def test_channel_bind_without_allocation_gets_437(harness):
    assert harness.code(harness.client().bind(0x4000, PEER)) == 437


def test_channel_needs_its_permission_which_expires_before_the_channel(allocated):
    harness, client, v4, _ = allocated
    client.bind(0x4001, PEER)
    harness.advance(PERMISSION_LIFETIME + 1)
    # The permission is gone, so the channel stops forwarding (RFC 8656 §9).
    assert harness.server.channel_to_peer(channel_data(0x4001, b"x"), client.address) is None
    assert harness.server.peer_to_client(v4, b"x", PEER) is None
    # A new permission brings the still-bound channel back.
    client.permit(PEER)
    assert harness.server.peer_to_client(v4, b"y", PEER) == (client.address, b"\x40\x01\x00\x01y")


def test_channel_expires_after_600_seconds_and_cools_down(allocated):
    harness, client, v4, _ = allocated
    client.bind(0x4001, PEER)  # t=0: channel until 600, permission until 300
    harness.advance(299)
    client.bind(0x4001, PEER)  # t=299: channel until 899, permission until 599
    harness.advance(598 - 299)
    assert harness.server.peer_to_client(v4, b"x", PEER) is not None
    harness.advance(300)  # t=898
    assert harness.server.stats().channels == 1
    harness.advance(2)  # t=900: 600 s after the refresh
    assert harness.server.stats().channels == 0
    assert harness.server.channel_to_peer(channel_data(0x4001, b"x"), client.address) is None
    # For 5 minutes neither the number nor the peer may be bound to anything else.
    assert harness.code(client.bind(0x4001, OTHER_PEER)) == 400
    assert harness.code(client.bind(0x4002, PEER)) == 400
    assert harness.code(client.bind(0x4001, PEER)) == 200  # the same pair may come back


def test_channel_cooldown_ends(allocated):
    harness, client, _, _ = allocated
    client.bind(0x4001, PEER)
    harness.advance(CHANNEL_LIFETIME + 301)
    assert harness.code(client.bind(0x4001, OTHER_PEER)) == 200


def test_everything_goes_when_the_allocation_is_deleted(allocated):
    harness, client, v4, _ = allocated
    client.bind(0x4001, PEER)
    client.permit(OTHER_PEER)
    client.refresh(0)
    server = harness.server
    assert server.channel_to_peer(channel_data(0x4001, b"x"), client.address) is None
    assert server.peer_to_client(v4, b"x", PEER) is None
    assert harness.peer_datagram(v4, b"x", OTHER_PEER) == []
    assert server.stats().channels == 0
    assert server.stats().permissions == 0


def test_poll_timeout_tracks_the_earliest_deadline(harness):
    assert harness.server.poll_timeout() is None
    client = harness.client()
    client.allocate()
    start = harness.now
    deadline = harness.server.poll_timeout()
    assert deadline is not None
    assert start < deadline <= start + 600
    client.permit(PEER)
    assert harness.server.poll_timeout() <= start + PERMISSION_LIFETIME


def test_channel_data_codec_helpers():
    assert encode_channel_data(0x4000, b"abc") == b"\x40\x00\x00\x03abc"
    channel, payload = decode_channel_data(b"\x4f\xff\x00\x02hi\x00\x00")
    assert (channel, bytes(payload)) == (0x4FFF, b"hi")
    from zerogate.proto.turn import LocalProtocolError, RemoteProtocolError

    for bad in (b"\x40", b"\x50\x00\x00\x00", b"\x40\x00\x00\x05abc"):
        with pytest.raises(RemoteProtocolError):
            decode_channel_data(bad)
    with pytest.raises(LocalProtocolError):
        encode_channel_data(0x3FFF, b"")


def test_rfc5766_channel_numbers_for_rfc_5766_clients(make_harness):
    LEGACY_MAX = 0x7FFF  # RFC 5766 §11: 0x4000 through 0x7FFF
    harness = make_harness(rfc5766_channel_numbers=True)
    client = harness.client()
    response = client.allocate()
    v4 = response.get_address(Attr.XOR_RELAYED_ADDRESS)
    assert harness.code(client.bind(LEGACY_MAX, PEER)) == 200
    assert harness.code(client.bind(0x8000, OTHER_PEER)) == 400
    routed = harness.server.channel_to_peer(channel_data(LEGACY_MAX, b"hi"), client.address)
    assert routed is not None
    assert bytes(routed[2]) == b"hi"
    assert harness.server.peer_to_client(v4, b"yo", PEER) == (client.address, b"\x7f\xff\x00\x02yo")
    assert decode_channel_data(b"\x7f\xff\x00\x00", legacy=True)[0] == LEGACY_MAX


def test_refresh_and_permission_loops_do_not_grow_state(allocated):
    harness, client, _, _ = allocated
    client.bind(0x4001, PEER)
    baseline = harness.server.state_size()
    for _ in range(300):
        harness.advance(0.5)
        client.refresh(3600)
        client.permit(PEER)
        client.bind(0x4001, PEER)
    # Only the bounded retransmission cache (40 s of answers) may have grown.
    assert harness.server.state_size() <= baseline + 3 * 81


def test_permissions_per_allocation_are_capped(make_harness):
    harness = make_harness(max_permissions_per_allocation=2)
    client = harness.client()
    client.allocate()
    assert harness.code(client.permit(PEER, OTHER_PEER)) == 200
    assert harness.code(client.permit(PEER_SAME_IP)) == 200  # same IP: no new permission
    assert harness.code(client.permit(("9.9.9.9", 1))) == 508
    assert harness.code(client.bind(0x4000, ("9.9.9.9", 1))) == 508
    assert harness.code(client.bind(0x4000, PEER)) == 200
    assert harness.server.stats().permissions == 2
