"""Resource address validation and normalisation, filters, and the IP side of ResourceMatcher."""

from __future__ import annotations

import ipaddress

import pytest

from zerogate.api.engine.addresses import (
    ResourceMatcher,
    filter_permits,
    normalize_address,
    validate_filters,
)
from zerogate.api.engine.errors import EngineValidationError

# DESIGN.md "Addresses": Zerogate's own ranges, restated here.
TUNNEL_V4 = "100.64.0.0/11"
PROXY_V4 = "100.96.0.0/11"
TUNNEL_V6 = "fd00:2021:1111::/107"
PROXY_V6 = "fd00:2021:1111:8000::/107"


ACCEPTED = [
    # (type, input, normalised)
    ("cidr", "10.0.0.0/8", "10.0.0.0/8"),
    ("cidr", "10.0.0.5/24", "10.0.0.0/24"),
    ("cidr", " 192.168.1.77/16 ", "192.168.0.0/16"),
    ("cidr", "10.0.0.5", "10.0.0.5/32"),
    ("cidr", "2001:DB8::1/64", "2001:db8::/64"),
    ("cidr", "2001:0db8:0000::/48", "2001:db8::/48"),
    ("cidr", "100.63.255.0/24", "100.63.255.0/24"),  # just below the tunnel range
    ("cidr", "100.128.0.0/16", "100.128.0.0/16"),  # just above the proxy range
    ("cidr", "fd00:2021:1111:20::/64", "fd00:2021:1111:20::/64"),  # beyond /107 tunnel range
    ("cidr", "fd00:2021:1112::/48", "fd00:2021:1112::/48"),
    ("cidr", "172.16.0.0/12", "172.16.0.0/12"),
    ("ip", "10.0.0.5", "10.0.0.5"),
    ("ip", "10.0.0.5/32", "10.0.0.5"),
    ("ip", "2001:DB8:0::1", "2001:db8::1"),
    ("ip", "2001:db8::1/128", "2001:db8::1"),
    ("ip", "8.8.8.8", "8.8.8.8"),
    ("dns", "example.com", "example.com"),
    ("dns", "Foo.Example.COM.", "foo.example.com"),
    ("dns", "*.example.com", "*.example.com"),
    ("dns", "**.example.com", "**.example.com"),
    ("dns", "app-?.example.com", "app-?.example.com"),
    ("dns", "web*.Example.com", "web*.example.com"),
    ("dns", "a.**.example.com", "a.**.example.com"),
    ("dns", "_sip._tcp.example.com", "_sip._tcp.example.com"),
    ("dns", "bücher.de", "xn--bcher-kva.de"),
    ("dns", "straße.de", "xn--strae-oqa.de"),  # IDNA 2008 keeps the sharp s
    ("dns", "a\u200b.example.com", "a.example.com"),  # UTS #46 drops a zero-width space
    ("dns", "**.BÜCHER.de", "**.xn--bcher-kva.de"),
    ("dns", "xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("dns", "*.internal", "*.internal"),  # private TLD: not a public namespace
    ("dns", "printer.corp", "printer.corp"),
    ("dns", "*.example.co.uk", "*.example.co.uk"),
    ("dns", ("a" * 63) + ".com", ("a" * 63) + ".com"),
    ("internet", None, None),
    ("internet", "", None),
]


@pytest.mark.parametrize(("rtype", "given", "expected"), ACCEPTED)
def test_accepted_addresses_normalise(rtype, given, expected):
    assert normalize_address(rtype, given) == expected
    # Normalisation is idempotent.
    assert normalize_address(rtype, expected) == expected


def _longest_name() -> str:
    # 4 labels of 61 + 1 of 5 with dots: 61*4 + 3 + 1 + 5 = 253 characters.
    return ".".join(["a" * 61] * 4) + ".abcde"


def test_name_of_exactly_253_characters_is_accepted_and_254_refused():
    name = _longest_name()
    assert len(name) == 253
    assert normalize_address("dns", name) == name
    with pytest.raises(EngineValidationError, match="253"):
        normalize_address("dns", "b" + name)


REFUSED = [
    # (type, input, a fragment of the message)
    ("cidr", "0.0.0.0/0", "internet resource"),
    ("cidr", "::/0", "internet resource"),
    ("ip", "0.0.0.0", "unspecified"),
    ("ip", "::", "unspecified"),
    ("cidr", "0.0.0.0/8", "unspecified"),
    ("cidr", "127.0.0.0/8", "loopback"),
    ("ip", "127.0.0.1", "loopback"),
    ("cidr", "127.1.2.0/24", "loopback"),
    ("ip", "::1", "loopback"),
    ("ip", "169.254.1.1", "link-local"),
    ("cidr", "169.254.0.0/16", "link-local"),
    ("ip", "fe80::1", "link-local"),
    ("cidr", "fe80::/64", "link-local"),
    ("ip", "224.0.0.1", "multicast"),
    ("cidr", "239.0.0.0/8", "multicast"),
    ("ip", "ff02::1", "multicast"),
    ("ip", "255.255.255.255", "broadcast"),
    ("cidr", "240.0.0.0/4", "reserved"),
    ("ip", "::ffff:10.0.0.1", "IPv4-mapped"),
    ("ip", "::10.0.0.1", "IPv4-compatible"),
    # Zerogate's ranges: equal, inside, containing, straddling.
    ("cidr", TUNNEL_V4, "tunnel"),
    ("cidr", PROXY_V4, "DNS proxy"),
    ("cidr", "100.64.0.0/10", "tunnel"),  # contains both
    ("cidr", "100.70.1.0/24", "tunnel"),  # inside
    ("ip", "100.64.0.1", "tunnel"),
    ("ip", "100.100.111.1", "DNS proxy"),  # the client stub resolver
    ("cidr", "100.96.0.0/12", "DNS proxy"),
    ("cidr", "64.0.0.0/2", "tunnel"),  # contains the tunnel range
    ("cidr", TUNNEL_V6, "tunnel"),
    ("cidr", PROXY_V6, "DNS proxy"),
    ("cidr", "fd00:2021:1111::/48", "tunnel"),
    ("ip", "fd00:2021:1111::1", "tunnel"),
    ("ip", "fd00:2021:1111:8000:100:100:111:0", "stub resolver"),
    ("cidr", "fd00:2021:1111:8000:100::/80", "stub resolver"),
    ("cidr", "fd00::/8", "tunnel"),
    # Syntax.
    ("cidr", "10.0.0.0/33", "longer than 32"),
    ("cidr", "2001:db8::/129", "longer than 128"),
    ("cidr", "10.0.0.0/-1", "prefix"),
    ("cidr", "10.0.0.0/ 8", "prefix"),
    ("cidr", "10.0.0.0/255.0.0.0", "prefix"),
    ("cidr", "10.0.0.0/", "prefix"),
    ("cidr", "10.0.0", "not an IP"),
    ("cidr", "010.0.0.1/8", "not an IP"),
    ("cidr", "example.com", "not an IP"),
    ("cidr", "", "needs an address"),
    ("cidr", None, "needs an address"),
    ("ip", "10.0.0.0/24", "is a network"),
    ("ip", "2001:db8::/64", "is a network"),
    ("ip", "fe80::1%eth0", "zone id"),
    ("ip", "2001:db8::1%1", "zone id"),
    ("ip", "1.2.3.4.5", "not an IP"),
    ("internet", "0.0.0.0/0", "no address"),
    ("bogus", "x", "unknown resource type"),
    # DNS.
    ("dns", "", "needs an address"),
    ("dns", ".", "required"),
    ("dns", "com", "single label"),
    ("dns", "*", "single label"),
    ("dns", "**", "single label"),
    ("dns", "localhost", "localhost"),
    ("dns", "localhost.", "localhost"),
    ("dns", "*.localhost", "localhost"),
    ("dns", "app.LOCALHOST", "localhost"),
    ("dns", "example.*", "top-level"),
    ("dns", "example.c?m", "top-level"),
    ("dns", "example.co*", "top-level"),
    ("dns", "*.com", "too broad"),
    ("dns", "**.com", "too broad"),
    ("dns", "?.de", "too broad"),
    ("dns", "*.*.org", "too broad"),
    ("dns", "a..example.com", "empty label"),
    ("dns", ".example.com", "empty label"),
    ("dns", "example.com..", "empty label"),
    ("dns", ("a" * 64) + ".com", "longer than 63"),
    ("dns", "a." * 2000 + "com", "longer than 253"),
    ("dns", "-bad.example.com", "starts or ends"),
    ("dns", "bad-.example.com", "starts or ends"),
    ("dns", "sp ace.example.com", "not allowed"),
    ("dns", "a/b.example.com", "not allowed"),
    ("dns", "a@b.example.com", "not allowed"),
    ("dns", "a***.example.com", "whole label"),
    ("dns", "x**.example.com", "whole label"),
    ("dns", "**.**.example.com", "twice in a row"),
    ("dns", "10.0.0.1", "all digits"),
    ("dns", "*ü.example.com", "non-ASCII"),
    ("dns", "☃.example.com", "internationalised"),
    ("dns", "\u0301a.example.com", "internationalised"),
]


@pytest.mark.parametrize(("rtype", "given", "fragment"), REFUSED)
def test_refused_addresses_say_why(rtype, given, fragment):
    with pytest.raises(ValueError, match=None) as info:
        normalize_address(rtype, given)
    assert isinstance(info.value, EngineValidationError)
    assert fragment.lower() in str(info.value).lower()


# ------------------------------------------------------------------ ResourceMatcher (IP)


def test_match_ip_takes_the_longest_prefix():
    matcher = ResourceMatcher(
        [
            ("r-8", "cidr", "10.0.0.0/8"),
            ("r-16", "cidr", "10.1.0.0/16"),
            ("r-24", "cidr", "10.1.2.0/24"),
            ("r-host", "ip", "10.1.2.3"),
            ("r-v6-32", "cidr", "2001:db8::/32"),
            ("r-v6-64", "cidr", "2001:db8:0:1::/64"),
        ]
    )
    table = [
        ("10.1.2.3", "r-host"),
        ("10.1.2.4", "r-24"),
        ("10.1.3.1", "r-16"),
        ("10.200.0.1", "r-8"),
        ("11.0.0.1", None),
        ("2001:db8:0:1::5", "r-v6-64"),
        ("2001:db8:0:2::5", "r-v6-32"),
        ("2001:db9::1", None),
        ("::ffff:10.1.2.3", "r-host"),  # IPv4-mapped source matches the IPv4 resource
        ("not an address", None),
    ]
    for ip, expected in table:
        assert matcher.match_ip(ip) == expected, ip
        if expected is not None and "not" not in ip:
            assert matcher.match_ip(ipaddress.ip_address(ip)) == expected


def test_match_ip_order_of_construction_does_not_matter_and_ties_take_the_lowest_id():
    items = [
        ("b", "cidr", "10.0.0.0/24"),
        ("a", "cidr", "10.0.0.0/24"),
        ("c", "cidr", "10.0.0.7/24"),  # same network after normalisation
        ("z", "cidr", "10.0.0.0/16"),
    ]
    for ordering in (items, list(reversed(items))):
        matcher = ResourceMatcher(ordering)
        assert matcher.match_ip("10.0.0.9") == "a"
        assert matcher.match_ip("10.0.1.9") == "z"


def test_internet_resource_catches_every_address_last():
    matcher = ResourceMatcher(
        [
            ("lan", "cidr", "192.168.0.0/16"),
            ("inet", "internet", None),
            ("d", "dns", "a.example.com"),
        ]
    )
    assert matcher.match_ip("192.168.3.4") == "lan"
    assert matcher.match_ip("8.8.8.8") == "inet"
    assert matcher.match_ip("2606:4700::1111") == "inet"
    assert matcher.match_name("unknown.example.org") is None  # internet is not a DNS resource
    assert ResourceMatcher([("lan", "cidr", "192.168.0.0/16")]).match_ip("8.8.8.8") is None


def test_matcher_refuses_invalid_resources():
    with pytest.raises(ValueError, match="loopback"):
        ResourceMatcher([("x", "cidr", "127.0.0.0/8")])


# ------------------------------------------------------------------------------ filters


FILTERS_ACCEPTED = [
    ([], []),
    ([{"protocol": "tcp"}], [{"protocol": "tcp", "ports": []}]),
    ([{"protocol": "TCP", "ports": None}], [{"protocol": "tcp", "ports": []}]),
    (
        [{"protocol": "udp", "ports": ["53"]}, {"protocol": "tcp", "ports": ["8000-8100", "443"]}],
        [{"protocol": "tcp", "ports": ["443", "8000-8100"]}, {"protocol": "udp", "ports": ["53"]}],
    ),
    (
        [{"protocol": "tcp", "ports": [22, " 80 - 81 "]}],
        [{"protocol": "tcp", "ports": ["22", "80-81"]}],
    ),
    ([{"protocol": "tcp", "ports": ["1-65535"]}], [{"protocol": "tcp", "ports": ["1-65535"]}]),
    ([{"protocol": "tcp", "ports": ["7-7"]}], [{"protocol": "tcp", "ports": ["7"]}]),
    ([{"protocol": "tcp", "ports": ["80", "81"]}], [{"protocol": "tcp", "ports": ["80", "81"]}]),
    ([{"protocol": "icmp"}], [{"protocol": "icmp", "ports": []}]),
    ([{"protocol": "icmp", "ports": []}], [{"protocol": "icmp", "ports": []}]),
]


@pytest.mark.parametrize(("given", "expected"), FILTERS_ACCEPTED)
def test_filters_normalise(given, expected):
    assert validate_filters(given) == expected
    assert validate_filters(expected) == expected


FILTERS_REFUSED = [
    ({"protocol": "tcp"}, "must be a list"),
    (["tcp"], "object"),
    ([{"protocol": "sctp"}], "protocol"),
    ([{"protocol": None}], "protocol"),
    ([{"ports": ["80"]}], "protocol"),
    ([{"protocol": "tcp", "port": ["80"]}], "unknown filter fields"),
    ([{"protocol": "tcp"}, {"protocol": "tcp", "ports": ["80"]}], "more than one"),
    ([{"protocol": "icmp", "ports": ["1"]}], "no ports"),
    ([{"protocol": "tcp", "ports": "80"}], "must be a list"),
    ([{"protocol": "tcp", "ports": ["0"]}], "between 1 and 65535"),
    ([{"protocol": "tcp", "ports": [0]}], "between 1 and 65535"),
    ([{"protocol": "tcp", "ports": ["65536"]}], "between 1 and 65535"),
    ([{"protocol": "tcp", "ports": ["100-99"]}], "starts after"),
    ([{"protocol": "tcp", "ports": ["-5"]}], "not a port"),
    ([{"protocol": "tcp", "ports": ["1-2-3"]}], "not a port"),
    ([{"protocol": "tcp", "ports": ["http"]}], "not a port"),
    ([{"protocol": "tcp", "ports": ["+80"]}], "not a port"),
    ([{"protocol": "tcp", "ports": [True]}], "not a port"),
    ([{"protocol": "tcp", "ports": [80.0]}], "not a port"),
    ([{"protocol": "tcp", "ports": ["80", "80"]}], "overlap"),
    ([{"protocol": "tcp", "ports": ["70-90", "80"]}], "overlap"),
    ([{"protocol": "udp", "ports": ["1000-2000", "2000-3000"]}], "overlap"),
]


@pytest.mark.parametrize(("given", "fragment"), FILTERS_REFUSED)
def test_filters_refused(given, fragment):
    with pytest.raises(EngineValidationError) as info:
        validate_filters(given)
    assert fragment.lower() in str(info.value).lower()


def test_filter_permits():
    filters = validate_filters(
        [{"protocol": "tcp", "ports": ["443", "8000-8100"]}, {"protocol": "icmp"}]
    )
    table = [
        ("tcp", 443, True),
        ("tcp", 8000, True),
        ("tcp", 8100, True),
        ("tcp", 8101, False),
        ("tcp", 80, False),
        ("tcp", None, False),
        ("udp", 443, False),
        ("icmp", None, True),
    ]
    for protocol, port, expected in table:
        assert filter_permits(filters, protocol, port) is expected, (protocol, port)
    assert filter_permits([], "udp", 53) is True  # no filters: all traffic
    all_udp = validate_filters([{"protocol": "udp"}])
    assert filter_permits(all_udp, "udp", 1) is True
    assert filter_permits(all_udp, "tcp", 1) is False


@pytest.mark.parametrize(
    ("rtype", "given"),
    [("cidr", "x" * 5000), ("dns", "a" * 5000 + ".com"), ("ip", "1" * 5000), ("dns", "é" * 900)],
)
def test_errors_never_echo_a_whole_payload(rtype, given):
    with pytest.raises(EngineValidationError) as info:
        normalize_address(rtype, given)
    assert len(str(info.value)) < 200


def test_filter_errors_never_echo_a_whole_payload():
    with pytest.raises(EngineValidationError) as info:
        validate_filters([{"protocol": "tcp", "ports": ["9" * 5000]}])
    assert len(str(info.value)) < 200


# ------------------------------------------ IPv4 reached through IPv6 forms (issue 8)

# Each reaches a refused IPv4 range (RFC 6052 NAT64, RFC 3056 6to4, RFC 2765 SIIT,
# RFC 4380 Teredo with the client address stored inverted), or holds one.
THROUGH_IPV6 = [
    ("cidr", "64:ff9b::7f00:1/128", "127.0.0.1/32"),
    ("ip", "64:ff9b::127.0.0.1", "127.0.0.1/32"),
    ("cidr", "64:ff9b::/96", "any IPv4 address"),
    ("cidr", "64:ff9b::a9fe:0/112", "169.254.0.0/16"),
    ("cidr", "2002:7f00:1::/48", "127.0.0.1/32"),
    ("cidr", "2002:e000::/20", "224.0.0.0/4"),
    ("cidr", "::ffff:0:7f00:1/128", "127.0.0.1/32"),
    ("ip", "::ffff:0:100.64.0.1", "100.64.0.1/32"),
    ("ip", "2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1/32"),
    ("cidr", "2001:0:4136:e378::/64", "any IPv4 address"),
    ("cidr", "64:ff9b:1::/48", "any IPv4 address"),
    ("cidr", "2000::/3", "any IPv4 address"),
]


@pytest.mark.parametrize(("rtype", "given", "reached"), THROUGH_IPV6)
def test_ipv6_forms_that_reach_refused_ipv4_are_refused(rtype, given, reached):
    with pytest.raises(EngineValidationError) as info:
        normalize_address(rtype, given)
    assert reached in str(info.value)
    assert "IPv4-in-IPv6" in str(info.value)


@pytest.mark.parametrize(
    ("rtype", "given"),
    [
        ("ip", "64:ff9b::808:808"),  # NAT64 of 8.8.8.8
        ("cidr", "2002:808:808::/48"),  # 6to4 of 8.8.8.8
        ("ip", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"),  # Teredo, client 8.8.8.8
        ("cidr", "2606:4700::/32"),
        ("cidr", "2001:db8::/32"),
    ],
)
def test_ipv6_forms_of_public_ipv4_stay_accepted(rtype, given):
    assert normalize_address(rtype, given) is not None
