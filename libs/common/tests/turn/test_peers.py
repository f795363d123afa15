"""Refused peers (RFC 8656 §21, CVE-2018-4058, CVE-2020-26262): every encoding gets 403."""

import ipaddress

import pytest

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method
from zerogate.proto.turn import PeerFilter, normalise_ip

OWN = "198.51.100.1"  # the relay's own listen address in the harness (see conftest)
RELAY_V4 = "198.51.100.10"

# Restated ranges, one or more addresses each (IANA special-purpose registries).
REFUSED_V4 = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network 0/8"),
    ("10.0.0.1", "RFC 1918 10/8"),
    ("10.255.255.255", "RFC 1918 10/8 top"),
    ("100.64.0.1", "CGNAT 100.64/10"),
    ("100.127.255.254", "CGNAT top"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.1", "loopback /8"),
    ("169.254.169.254", "link-local / cloud metadata"),
    ("172.16.0.1", "RFC 1918 172.16/12"),
    ("172.31.255.1", "RFC 1918 172.16/12 top"),
    ("192.0.0.1", "IETF protocol assignments 192.0.0/24"),
    ("192.0.2.1", "TEST-NET-1"),
    ("192.88.99.1", "6to4 anycast"),
    ("192.168.1.1", "RFC 1918 192.168/16"),
    ("198.18.0.1", "benchmarking 198.18/15"),
    ("198.19.255.1", "benchmarking top"),
    ("198.51.100.77", "TEST-NET-2"),
    ("203.0.113.5", "TEST-NET-3"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast SSDP"),
    ("240.0.0.1", "reserved 240/4"),
    ("255.255.255.255", "limited broadcast"),
    (OWN, "the relay's own address"),
    (RELAY_V4, "the relay address"),
]

REFUSED_V6 = [
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fc00::1", "ULA fc00::/7"),
    ("fd12:3456::1", "ULA fd00::/8"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local top"),
    ("fec0::1", "site-local (deprecated)"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast global scope"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation RFC 9637"),
    ("100::1", "discard-only 100::/64"),
    ("64:ff9b:1::a00:1", "local-use NAT64 64:ff9b:1::/48"),
    ("2001:2::1", "benchmarking 2001:2::/48"),
    ("2001:10::1", "ORCHID"),
    ("5f00::1", "SRv6 SIDs, outside global unicast 2000::/3"),
    ("2001:db8:100::10", "the relay's IPv6 relay address"),
]

# IPv4-in-IPv6 encodings of forbidden IPv4 addresses.
EMBEDDED = [
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.1.2.3", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
    ("::127.0.0.1", "IPv4-compatible loopback"),
    ("::10.0.0.1", "IPv4-compatible private"),
    ("::ffff:0:127.0.0.1", "SIIT translated loopback"),
    ("2002:7f00:1::1", "6to4 of 127.0.0.1"),
    ("2002:c0a8:101::", "6to4 of 192.168.1.1"),
    ("2002:a00:1:1234::1", "6to4 of 10.0.0.1"),
    ("64:ff9b::127.0.0.1", "NAT64 well-known prefix loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"),
    ("64:ff9b::c0a8:101", "NAT64 of 192.168.1.1"),
    ("64:ff9b:1::7f00:1", "local-use NAT64 /48"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo with client 127.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo with client 10.0.0.1"),
    ("::ffff:198.51.100.1", "IPv4-mapped own address"),
]

ALLOWED = [
    ("8.8.8.8", "public IPv4"),
    ("1.1.1.1", "public IPv4"),
    ("100.128.0.1", "just above CGNAT"),
    ("172.32.0.1", "just above 172.16/12"),
    ("2606:4700:4700::1111", "public IPv6"),
    ("2a00:1450:4001::1", "public IPv6"),
    ("::ffff:8.8.8.8", "IPv4-mapped public"),
    ("2002:808:808::1", "6to4 of 8.8.8.8"),
    ("64:ff9b::808:808", "NAT64 of 8.8.8.8"),
]


def _ids(cases):
    return [f"{address} ({why})" for address, why in cases]


@pytest.fixture
def peer_filter():
    return PeerFilter(own_addresses=[OWN, RELAY_V4, "2001:db8:100::10"])


@pytest.mark.parametrize(
    ("address", "why"),
    REFUSED_V4 + REFUSED_V6 + EMBEDDED,
    ids=_ids(REFUSED_V4 + REFUSED_V6 + EMBEDDED),
)
def test_filter_refuses(peer_filter, address, why):
    assert not peer_filter.is_allowed(address), why


@pytest.mark.parametrize(("address", "why"), ALLOWED, ids=_ids(ALLOWED))
def test_filter_allows_public(peer_filter, address, why):
    assert peer_filter.is_allowed(address), why


@pytest.mark.parametrize(
    ("address", "ipv4"),
    [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::1.2.3.4", "1.2.3.4"),
        ("::ffff:0:1.2.3.4", "1.2.3.4"),
        ("2002:0102:0304::5", "1.2.3.4"),
        ("64:ff9b::102:304", "1.2.3.4"),
        # Teredo: the client address is stored inverted in the last 32 bits (RFC 4380 §4).
        ("2001:0:4136:e378:8000:63bf:fefd:fcfb", "1.2.3.4"),
    ],
)
def test_normalise_ip_extracts_embedded_ipv4(address, ipv4):
    assert normalise_ip(address) == ipaddress.IPv4Address(ipv4)


def test_normalise_ip_leaves_native_addresses():
    assert normalise_ip("2606:4700::1") == ipaddress.IPv6Address("2606:4700::1")
    assert normalise_ip("8.8.4.4") == ipaddress.IPv4Address("8.8.4.4")


def test_allow_list_overrides_and_is_checked_after_normalising():
    peer_filter = PeerFilter(
        own_addresses=[OWN],
        allow=[ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")],
    )
    assert peer_filter.is_allowed("10.1.2.3")
    assert peer_filter.is_allowed("::ffff:10.1.2.3")
    assert peer_filter.is_allowed("64:ff9b::a01:203")
    assert peer_filter.is_allowed("fd00::5")
    assert not peer_filter.is_allowed("192.168.0.1")
    assert not peer_filter.is_allowed("fc00::1")


def test_garbage_is_refused_not_raised(peer_filter):
    assert not peer_filter.is_allowed("not an address")


@pytest.mark.parametrize(
    ("address", "why"),
    REFUSED_V4 + REFUSED_V6 + EMBEDDED,
    ids=_ids(REFUSED_V4 + REFUSED_V6 + EMBEDDED),
)
def test_server_answers_403_to_permission_and_channel_bind(harness, address, why):
    client = harness.client()
    response = client.allocate({0x8000: 0x02})  # ADDITIONAL-ADDRESS-FAMILY IPv6: dual stack
    assert harness.code(response) == 200
    peer = (address, 9)
    assert harness.code(client.permit(peer)) == 403, why
    assert harness.code(client.bind(0x4000, peer)) == 403, why
    stats = harness.server.stats()
    assert (stats.permissions, stats.channels) == (0, 0)
    assert client.send_indication(peer, b"x") == []


def test_server_allow_list_lets_a_lab_peer_through(make_harness):
    harness = make_harness(allow_peers=[ipaddress.ip_network("10.20.0.0/16")])
    client = harness.client()
    client.allocate()
    assert harness.code(client.permit(("10.20.1.2", 5000))) == 200
    assert harness.code(client.permit(("10.21.1.2", 5000))) == 403


def test_ipv6_loopback_and_unspecified_stay_ipv6():
    # RFC 4291 §2.5.2/§2.5.3: :: and ::1 are not IPv4-compatible addresses.
    assert normalise_ip("::1") == ipaddress.IPv6Address("::1")
    assert normalise_ip("::") == ipaddress.IPv6Address("::")
    assert normalise_ip("::2") == ipaddress.IPv4Address("0.0.0.2")
    lab = PeerFilter(allow=[ipaddress.ip_network("::1/128")])
    assert lab.is_allowed("::1")
    assert not lab.is_allowed("127.0.0.1")
    assert not PeerFilter().is_allowed("::1")


def test_allow_list_also_matches_the_address_as_given():
    mapped = PeerFilter(allow=[ipaddress.ip_network("::ffff:10.0.0.0/104")])
    assert mapped.is_allowed("::ffff:10.1.2.3")
    assert not mapped.is_allowed("::ffff:192.168.0.1")


# -- the relay is never its own peer (issue 8 item 5) ------------------------------
LISTEN_PORT = 3478  # RFC 8489 §18.6: STUN/TURN over UDP
RELAY_RANGE = (50000, 50999)  # the harness's relay port range (conftest)


@pytest.fixture
def lab(make_harness):
    """An operator allow-list that covers the relay's own addresses, as a lab or a
    test on loopback has: that alone must not let the relay relay to itself."""
    harness = make_harness(allow_peers=[ipaddress.ip_network("198.51.100.0/24")])
    harness.server.listening_on([(OWN, LISTEN_PORT)])
    return harness


@pytest.mark.parametrize(
    "peer",
    [
        (OWN, LISTEN_PORT),  # the listen socket
        (RELAY_V4, LISTEN_PORT),
        (OWN, RELAY_RANGE[0]),  # any port of the relay range, on any own address
        (RELAY_V4, RELAY_RANGE[1]),
        ("::ffff:198.51.100.1", LISTEN_PORT),  # the same, IPv4-mapped
    ],
)
def test_own_sockets_are_refused_even_under_an_allow_list(lab, peer):
    client = lab.client()
    assert lab.code(client.allocate({Attr.ADDITIONAL_ADDRESS_FAMILY: 0x02})) == 200
    assert lab.code(client.bind(0x4000, peer)) == 403
    assert lab.code(client.permit(peer)) == 403


def test_other_ports_of_an_allowed_own_address_stay_usable(lab):
    client = lab.client()
    client.allocate()
    assert lab.code(client.permit((OWN, 5000))) == 200
    assert lab.code(client.bind(0x4000, (OWN, 5001))) == 200


def test_send_to_the_listen_port_is_not_relayed(lab):
    """The reported bug: with the relay's address allowed, a Send to its own listen port
    came back as a Data indication carrying the relay's own Binding success."""
    client = lab.client()
    client.allocate()
    assert lab.code(client.permit((OWN, 5000))) == 200  # permissions are per IP (§9)
    binding = stun.encode(stun.Message(Method.BINDING, MessageClass.REQUEST, b"b" * 12, {}))
    assert client.send_indication((OWN, LISTEN_PORT), binding) == []
    assert client.send_indication((OWN, RELAY_RANGE[0] + 7), binding) == []
    assert client.send_indication((OWN, 5000), b"fine")[0].destination == (OWN, 5000)


def test_datagrams_from_own_sockets_are_dropped(lab):
    client = lab.client()
    relay = client.allocate().get_address(Attr.XOR_RELAYED_ADDRESS)
    client.permit((OWN, 5000))
    assert lab.peer_datagram(relay, b"loop", (OWN, LISTEN_PORT)) == []
    assert lab.peer_datagram(relay, b"loop", (OWN, RELAY_RANGE[0])) == []
    assert len(lab.peer_datagram(relay, b"fine", (OWN, 5000))) == 1
    # and the listen socket does not serve STUN coming from one of our relay sockets
    binding = stun.encode(stun.Message(Method.BINDING, MessageClass.REQUEST, b"c" * 12, {}))
    assert lab.client(address=(RELAY_V4, relay[1])).send_raw(binding) == []
    assert lab.client(address=(OWN, LISTEN_PORT)).send_raw(binding) == []
    # a local client whose ephemeral port lies in the range, unused by the relay, is served
    unused = RELAY_RANGE[0] if relay[1] != RELAY_RANGE[0] else RELAY_RANGE[1]
    assert len(lab.client(address=(OWN, unused)).send_raw(binding)) == 1


def test_listening_on_a_wildcard_makes_every_local_address_own(make_harness):
    harness = make_harness(allow_peers=[ipaddress.ip_network("127.0.0.0/8")])
    harness.server.listening_on([("0.0.0.0", LISTEN_PORT)])
    client = harness.client()
    client.allocate()
    for peer in [("127.0.0.1", LISTEN_PORT), ("127.0.0.9", RELAY_RANGE[0] + 1)]:
        assert harness.code(client.bind(0x4000, peer)) == 403, peer
    assert harness.code(client.bind(0x4001, ("127.0.0.1", 5000))) == 200


def test_peer_filter_own_endpoints():
    peer_filter = PeerFilter(
        own_addresses=["192.0.2.7"],
        own_ports=[range(49152, 65536)],
        allow=[ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")],
    )
    peer_filter.add_listen_endpoint("192.0.2.8", LISTEN_PORT)
    assert peer_filter.is_own_endpoint("192.0.2.7", LISTEN_PORT)
    assert peer_filter.is_own_endpoint("192.0.2.8", 60000)
    assert peer_filter.is_own_endpoint("0.0.0.0", LISTEN_PORT)  # reaches the local host
    assert peer_filter.is_own_endpoint("::", 50000)
    assert not peer_filter.is_own_endpoint("192.0.2.7", 5000)
    assert not peer_filter.is_own_endpoint("127.0.0.1", LISTEN_PORT)  # not a wildcard
    assert not peer_filter.is_own_endpoint("not an address", LISTEN_PORT)
    assert peer_filter.permits("192.0.2.7", 5000)
    assert not peer_filter.permits("192.0.2.7", LISTEN_PORT)
    peer_filter.add_listen_endpoint("::", LISTEN_PORT)
    assert peer_filter.is_own_endpoint("::1", LISTEN_PORT)
    assert not peer_filter.is_own_endpoint("127.0.0.1", LISTEN_PORT)  # IPv6 wildcard only


@pytest.mark.parametrize(
    "address",
    ["0.0.0.0", "224.0.0.1", "239.1.2.3", "255.255.255.255", "::", "ff02::1", "::ffff:224.0.0.1"],
)
def test_no_allow_list_opens_multicast_broadcast_or_unspecified(address):
    everything = PeerFilter(allow=[ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")])
    assert not everything.is_allowed(address)
    assert everything.is_allowed("10.0.0.1")  # the allow-list still opens private space
