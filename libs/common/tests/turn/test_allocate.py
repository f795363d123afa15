"""Allocate and Refresh (RFC 8656 §7), dual stack, quotas and the retransmission cache."""

import pytest

from zerogate.proto import stun
from zerogate.proto.stun import Attr, Method
from zerogate.proto.turn import CloseRelaySocket, OpenRelaySocket

RELAY_V4 = "198.51.100.10"
RELAY_V6 = "2001:db8:100::10"
UDP = 17  # RFC 8656 §18.11 / IANA protocol number
TCP = 6
IPV4 = 0x01  # RFC 8656 §18.12 address family values
IPV6 = 0x02
DEFAULT_LIFETIME = 600  # RFC 8656 §7.2
MAX_LIFETIME = 3600


def test_allocate_opens_a_relay_before_answering(harness):
    client = harness.client(address=("192.0.2.200", 40000))
    response = client.allocate()
    assert harness.code(response) == 200
    relay = response.get_address(Attr.XOR_RELAYED_ADDRESS)
    assert relay is not None
    assert relay[0] == RELAY_V4
    assert 50000 <= relay[1] <= 50999
    assert response.get_address(Attr.XOR_MAPPED_ADDRESS) == ("192.0.2.200", 40000)
    assert response.get_int(Attr.LIFETIME) == DEFAULT_LIFETIME
    assert [type(c) for c in harness.commands] == [OpenRelaySocket]
    assert harness.commands[0].relay == relay
    assert harness.server.stats().allocations == 1


def test_requested_transport_tcp_gets_442(harness):
    response = harness.client().allocate({Attr.REQUESTED_TRANSPORT: TCP})
    assert harness.code(response) == 442
    assert stun.check_integrity(response, harness.client().key)  # signed after auth
    assert harness.server.stats().allocations == 0


def test_missing_requested_transport_gets_400(harness):
    client = harness.client()
    response = client.call(Method.ALLOCATE, {})
    assert harness.code(response) == 400


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        (None, DEFAULT_LIFETIME),
        (1, DEFAULT_LIFETIME),  # below the default: the default
        (1200, 1200),
        (MAX_LIFETIME, MAX_LIFETIME),
        (100_000, MAX_LIFETIME),  # capped
    ],
)
def test_lifetime_rules(harness, requested, granted):
    attributes = {} if requested is None else {Attr.LIFETIME: requested}
    response = harness.client().allocate(attributes)
    assert response.get_int(Attr.LIFETIME) == granted


def test_second_allocate_on_the_same_five_tuple_gets_437(harness):
    client = harness.client()
    assert harness.code(client.allocate()) == 200
    assert harness.code(client.allocate()) == 437
    assert harness.server.stats().allocations == 1


def test_retransmitted_allocate_gets_the_same_success(harness):
    client = harness.client()
    client.allocate()  # learns the nonce, creates allocation #1
    client.refresh(0)
    harness.commands.clear()
    tid = b"retransmit!!"
    first, raw_first = client.request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: UDP}, tid=tid)
    _, raw_second = client.request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: UDP}, tid=tid)
    assert harness.code(first) == 200
    assert raw_second == raw_first
    assert len([c for c in harness.commands if isinstance(c, OpenRelaySocket)]) == 1
    assert harness.server.stats().allocations == 1
    # After the cache time (RFC 8489 Ti = 39.5 s) the same id is a new request: 437.
    harness.advance(41)
    third, _ = client.request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: UDP}, tid=tid)
    assert harness.code(third) == 437


def test_dual_stack_allocation_with_additional_address_family(harness):
    client = harness.client()
    response = client.allocate({Attr.ADDITIONAL_ADDRESS_FAMILY: IPV6})
    assert harness.code(response) == 200
    relays = response.get_all_addresses(Attr.XOR_RELAYED_ADDRESS)
    assert [ip for ip, _ in relays] == [RELAY_V4, RELAY_V6]
    assert relays[0][1] == relays[1][1]  # one port number for both families
    assert Attr.ADDRESS_ERROR_CODE not in response.attributes
    assert sorted(c.relay for c in harness.commands) == sorted(relays)


def test_additional_family_unavailable_gives_ipv4_and_address_error_440(make_harness):
    harness = make_harness(relay_addresses_v6=[])
    response = harness.client().allocate({Attr.ADDITIONAL_ADDRESS_FAMILY: IPV6})
    assert harness.code(response) == 200
    assert [ip for ip, _ in response.get_all_addresses(Attr.XOR_RELAYED_ADDRESS)] == [RELAY_V4]
    error = response.attributes[Attr.ADDRESS_ERROR_CODE]
    assert (error.family, error.code) == (IPV6, 440)


def test_requested_ipv6_only(harness):
    response = harness.client().allocate({Attr.REQUESTED_ADDRESS_FAMILY: IPV6})
    assert [ip for ip, _ in response.get_all_addresses(Attr.XOR_RELAYED_ADDRESS)] == [RELAY_V6]


@pytest.mark.parametrize(
    ("overrides", "attributes", "code"),
    [
        ({"relay_addresses_v6": []}, {Attr.REQUESTED_ADDRESS_FAMILY: IPV6}, 440),
        ({"relay_addresses_v4": []}, {}, 440),  # IPv4 is the default family
        ({}, {Attr.REQUESTED_ADDRESS_FAMILY: 0x03}, 440),
        ({}, {Attr.REQUESTED_ADDRESS_FAMILY: IPV4, Attr.ADDITIONAL_ADDRESS_FAMILY: IPV6}, 400),
        ({}, {Attr.ADDITIONAL_ADDRESS_FAMILY: IPV4}, 400),
        ({}, {Attr.RESERVATION_TOKEN: b"12345678", Attr.EVEN_PORT: False}, 400),
        ({}, {Attr.RESERVATION_TOKEN: b"12345678"}, 508),  # no reservations are kept
    ],
)
def test_address_family_and_reservation_errors(make_harness, overrides, attributes, code):
    harness = make_harness(**overrides)
    assert harness.code(harness.client().allocate(attributes)) == code
    assert harness.server.stats().allocations == 0


def test_even_port_gives_an_even_port(harness):
    for index in range(20):
        response = harness.client(address=("192.0.2.1", 1000 + index)).allocate(
            {Attr.EVEN_PORT: False}
        )
        assert response.get_address(Attr.XOR_RELAYED_ADDRESS)[1] % 2 == 0


def test_unknown_comprehension_required_attribute_gets_420(harness):
    client = harness.client()
    client.allocate()
    client.refresh(0)
    response, _ = client.request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: UDP, 0x7ABC: b"????"})
    assert harness.code(response) == 420
    assert response.attributes[Attr.UNKNOWN_ATTRIBUTES] == (0x7ABC,)
    assert harness.server.stats().allocations == 0


def test_per_user_quota_gets_486(make_harness):
    harness = make_harness(max_allocations_per_user=2)
    codes = [
        harness.code(harness.client(address=("192.0.2.1", port)).allocate()) for port in (1, 2, 3)
    ]
    assert codes == [200, 200, 486]
    other_user = harness.client(address=("192.0.2.1", 4), username="bob")
    assert harness.code(other_user.allocate()) == 200


def test_total_quota_gets_508(make_harness):
    harness = make_harness(max_allocations_total=2)
    assert harness.code(harness.client(address=("192.0.2.1", 1)).allocate()) == 200
    assert harness.code(harness.client(address=("192.0.2.1", 2), username="bob").allocate()) == 200
    assert harness.code(harness.client(address=("192.0.2.1", 3), username="bob").allocate()) == 508


def test_port_exhaustion_gets_508_and_ports_are_reused(make_harness):
    harness = make_harness(relay_port_min=50000, relay_port_max=50001)
    first = harness.client(address=("192.0.2.1", 1))
    assert harness.code(first.allocate()) == 200
    assert harness.code(harness.client(address=("192.0.2.1", 2)).allocate()) == 200
    assert harness.code(harness.client(address=("192.0.2.1", 3)).allocate()) == 508
    assert harness.code(first.refresh(0)) == 200
    assert harness.code(harness.client(address=("192.0.2.1", 3)).allocate()) == 200


def test_refresh_extends_and_zero_deletes(harness):
    client = harness.client()
    relay = client.allocate().get_address(Attr.XOR_RELAYED_ADDRESS)
    harness.advance(500)
    assert client.refresh(1200).get_int(Attr.LIFETIME) == 1200
    harness.advance(1100)  # 1600 s after the Allocate: alive thanks to the refresh
    assert harness.server.stats().allocations == 1
    response = client.refresh(0)
    assert harness.code(response) == 200
    assert response.get_int(Attr.LIFETIME) == 0
    assert harness.server.stats().allocations == 0
    assert CloseRelaySocket(relay, harness.commands[0].allocation) in harness.commands
    assert harness.server.state_size() <= 2  # only the cached response and its timer
    assert harness.code(client.refresh()) == 437


def test_refresh_without_allocation_gets_437(harness):
    client = harness.client()
    assert harness.code(client.refresh()) == 437


def test_refresh_with_a_family_the_allocation_lacks_gets_443(harness):
    client = harness.client()
    client.allocate()  # IPv4 only
    response = client.call(Method.REFRESH, {Attr.REQUESTED_ADDRESS_FAMILY: IPV6})
    assert harness.code(response) == 443
    response = client.call(Method.REFRESH, {Attr.REQUESTED_ADDRESS_FAMILY: IPV4})
    assert harness.code(response) == 200


def test_refresh_zero_with_family_drops_one_half_of_a_dual_allocation(harness):
    client = harness.client()
    response = client.allocate({Attr.ADDITIONAL_ADDRESS_FAMILY: IPV6})
    v4, v6 = response.get_all_addresses(Attr.XOR_RELAYED_ADDRESS)
    harness.commands.clear()
    response = client.call(Method.REFRESH, {Attr.LIFETIME: 0, Attr.REQUESTED_ADDRESS_FAMILY: IPV6})
    assert harness.code(response) == 200
    assert [(type(c), c.relay) for c in harness.commands] == [(CloseRelaySocket, v6)]
    assert harness.server.stats().allocations == 1
    assert harness.server.peer_to_client(v4, b"x", ("8.8.8.8", 53)) is None
    # The IPv4 half still works: a permission for an IPv4 peer is accepted...
    assert harness.code(client.permit(("8.8.8.8", 53))) == 200
    # ... and an IPv6 peer now has no relay of its family.
    assert harness.code(client.permit(("2606:4700::1111", 53))) == 443


def test_allocation_expires_on_the_virtual_clock(harness):
    client = harness.client()
    relay = client.allocate().get_address(Attr.XOR_RELAYED_ADDRESS)
    assert harness.server.poll_timeout() is not None
    harness.advance(DEFAULT_LIFETIME - 1)
    assert harness.server.stats().allocations == 1
    harness.advance(2)
    assert harness.server.stats().allocations == 0
    assert isinstance(harness.commands[-1], CloseRelaySocket)
    assert harness.commands[-1].relay == relay


def _signed_allocate(harness, client, tid: bytes, extra=None) -> bytes:
    """An Allocate signed with the nonce the client learned earlier."""
    attributes = {
        Attr.REQUESTED_TRANSPORT: UDP,
        Attr.USERNAME: client.username,
        Attr.REALM: client.realm,
        Attr.NONCE: client.nonce,
    }
    attributes.update(extra or {})
    message = stun.Message(Method.ALLOCATE, stun.MessageClass.REQUEST, tid, attributes)
    return stun.encode(message, key=client.key)


def test_allocate_is_answered_only_once_its_relay_socket_is_bound(harness):
    client = harness.client()
    client.allocate()
    client.refresh(0)
    server = harness.server
    server.handle_client_datagram(
        _signed_allocate(harness, client, b"waitforbind!"), client.address, harness.now
    )
    opened = server.poll_command()
    assert isinstance(opened, OpenRelaySocket)
    assert server.poll_transmit() is None  # no answer before the socket exists
    # a retransmission meanwhile is not answered twice
    server.handle_client_datagram(
        _signed_allocate(harness, client, b"waitforbind!"), client.address, harness.now
    )
    assert server.poll_transmit() is None
    server.handle_relay_bound(opened.relay, harness.now)
    response = stun.decode(server.poll_transmit().data)
    assert harness.code(response) == 200
    assert response.get_address(Attr.XOR_RELAYED_ADDRESS) == opened.relay


def test_a_port_that_will_not_bind_is_replaced_by_another(make_harness):
    """Issue 8 item 6: another local socket holds the picked port (Linux hands out
    ephemeral ports from 32768-60999, inside the default 49152-65535): try others."""
    harness = make_harness(relay_port_min=50000, relay_port_max=50003)
    harness.unbindable = {50000, 50001, 50002}
    for index in range(10):
        client = harness.client(address=("192.0.2.1", 1000 + index))
        response = client.allocate()
        assert harness.code(response) == 200
        assert response.get_address(Attr.XOR_RELAYED_ADDRESS) == (RELAY_V4, 50003)
        assert harness.code(client.refresh(0)) == 200
    assert {c.relay[1] for c in harness.bind_failures} <= {50000, 50001, 50002}


def test_dual_stack_retry_closes_the_bound_sibling_and_moves_both(make_harness):
    harness = make_harness(relay_port_min=50000, relay_port_max=50001)
    client = harness.client()
    client.allocate()
    client.refresh(0)
    harness.commands.clear()
    server = harness.server
    server.handle_client_datagram(
        _signed_allocate(harness, client, b"dualretry!!!", {Attr.ADDITIONAL_ADDRESS_FAMILY: IPV6}),
        client.address,
        harness.now,
    )
    v4 = server.poll_command()
    v6 = server.poll_command()
    assert isinstance(v4, OpenRelaySocket)
    assert isinstance(v6, OpenRelaySocket)
    first_port = v4.relay[1]
    server.handle_relay_bound(v4.relay, harness.now)
    server.handle_relay_bind_failed(v6.relay, harness.now)
    commands = []
    while (command := server.poll_command()) is not None:
        commands.append(command)
        if isinstance(command, OpenRelaySocket):
            server.handle_relay_bound(command.relay, harness.now)
    other_port = 50001 if first_port == 50000 else 50000
    assert commands == [
        CloseRelaySocket(v4.relay, v4.allocation),
        OpenRelaySocket((RELAY_V4, other_port), v4.allocation),
        OpenRelaySocket((RELAY_V6, other_port), v4.allocation),
    ]
    response = stun.decode(server.poll_transmit().data)
    assert harness.code(response) == 200
    assert response.get_all_addresses(Attr.XOR_RELAYED_ADDRESS) == [
        (RELAY_V4, other_port),
        (RELAY_V6, other_port),
    ]


def test_508_only_once_every_port_of_the_range_was_tried(make_harness):
    harness = make_harness(relay_port_min=50000, relay_port_max=50003)
    harness.unbindable = {50000, 50001, 50002, 50003}
    client = harness.client()
    response = client.allocate()
    # RFC 8656 §7.2: 508 Insufficient Capacity, signed like any answer after auth
    assert harness.code(response) == 508
    assert client.verify(response)
    assert sorted(c.relay[1] for c in harness.bind_failures) == [50000, 50001, 50002, 50003]
    assert harness.server.stats().allocations == 0
    assert harness.server.state_size() <= 2  # the cached 508 and nothing else of it
    # the 508 is what a retransmission gets too, and the ports are free again
    harness.unbindable.clear()
    assert harness.code(harness.client(address=("192.0.2.1", 2)).allocate()) == 200


def test_a_reserved_port_that_will_not_bind_gets_508_at_once(make_harness):
    harness = make_harness(relay_port_min=50000, relay_port_max=50003)
    response = harness.client(address=("192.0.2.1", 1)).allocate({Attr.EVEN_PORT: True})
    token = response.get_bytes(Attr.RESERVATION_TOKEN)
    reserved = response.get_address(Attr.XOR_RELAYED_ADDRESS)[1] + 1
    harness.unbindable = {reserved}
    second = harness.client(address=("192.0.2.1", 2))
    assert harness.code(second.allocate({Attr.RESERVATION_TOKEN: token})) == 508
    assert [c.relay[1] for c in harness.bind_failures] == [reserved]


def test_server_without_relay_addresses_is_refused():
    from zerogate.proto.turn import LocalProtocolError, Server, ServerConfig

    with pytest.raises(LocalProtocolError, match="relay_addresses"):
        Server(ServerConfig(realm="r", nonce_secret=b"s" * 32), now=0.0)


def test_even_port_with_r_bit_reserves_the_next_port_for_a_token(harness):
    RESERVATION_LIFETIME = 30  # RFC 8656 §7.2: "about 30 seconds"
    first = harness.client(address=("192.0.2.1", 1))
    response = first.allocate({Attr.EVEN_PORT: True})
    assert harness.code(response) == 200
    port = response.get_address(Attr.XOR_RELAYED_ADDRESS)[1]
    assert port % 2 == 0
    token = response.get_bytes(Attr.RESERVATION_TOKEN)
    assert token is not None
    assert len(token) == 8
    second = harness.client(address=("192.0.2.1", 2))
    response = second.allocate({Attr.RESERVATION_TOKEN: token})
    assert harness.code(response) == 200
    assert response.get_address(Attr.XOR_RELAYED_ADDRESS) == (RELAY_V4, port + 1)
    # A token works once.
    third = harness.client(address=("192.0.2.1", 3))
    assert harness.code(third.allocate({Attr.RESERVATION_TOKEN: token})) == 508
    # An unclaimed reservation lapses and frees its port.
    response = third.allocate({Attr.EVEN_PORT: True})
    late_token = response.get_bytes(Attr.RESERVATION_TOKEN)
    harness.advance(RESERVATION_LIFETIME + 1)
    fourth = harness.client(address=("192.0.2.1", 4))
    assert harness.code(fourth.allocate({Attr.RESERVATION_TOKEN: late_token})) == 508


def test_reserved_port_is_not_handed_out(make_harness):
    harness = make_harness(relay_port_min=50000, relay_port_max=50001)
    response = harness.client(address=("192.0.2.1", 1)).allocate({Attr.EVEN_PORT: True})
    assert response.get_address(Attr.XOR_RELAYED_ADDRESS)[1] == 50000
    assert harness.code(harness.client(address=("192.0.2.1", 2)).allocate()) == 508
    harness.advance(31)
    assert harness.code(harness.client(address=("192.0.2.1", 2)).allocate()) == 200


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"realm": ""}, "realm"),
        ({"nonce_secret": b"short"}, "nonce_secret"),
        ({"relay_addresses_v4": ["2001:db8::1"]}, "relay_addresses_v4"),
        ({"relay_addresses_v6": ["nonsense"]}, "relay_addresses_v6"),
        ({"own_addresses": ["nonsense"]}, "own_addresses"),
        ({"relay_port_min": 60000, "relay_port_max": 50000}, "relay_port"),
        ({"default_lifetime": 7200}, "default_lifetime"),
    ],
)
def test_bad_configuration_names_the_setting(overrides, setting):
    from zerogate.proto.turn import LocalProtocolError, Server, ServerConfig

    values = {
        "realm": "r",
        "nonce_secret": b"s" * 32,
        "relay_addresses_v4": ["198.51.100.10"],
    }
    values.update(overrides)
    with pytest.raises(LocalProtocolError, match=setting):
        Server(ServerConfig(**values), now=0.0)
