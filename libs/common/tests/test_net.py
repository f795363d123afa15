"""The one IPv4-in-IPv6 normalisation (``zerogate.proto.net``), checked against the
RFCs' own examples and, for prefixes, against every address they hold: whatever
a prefix check of :func:`embedded_ipv4_networks` passes, no address inside the
prefix may reach an IPv4 address outside the networks it names."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.proto.net import embedded_ipv4_networks, normalise_ip

V4 = ipaddress.IPv4Address
V4Net = ipaddress.IPv4Network
V6Net = ipaddress.IPv6Network


@pytest.mark.parametrize(
    ("address", "ipv4"),
    [
        ("::ffff:192.0.2.33", "192.0.2.33"),  # RFC 4291 §2.5.5.2, IPv4-mapped
        ("::192.0.2.33", "192.0.2.33"),  # RFC 4291 §2.5.5.1, IPv4-compatible
        ("::ffff:0:192.0.2.33", "192.0.2.33"),  # RFC 2765 §2.1, IPv4-translated (SIIT)
        ("64:ff9b::192.0.2.33", "192.0.2.33"),  # RFC 6052 §2.4, well-known prefix
        ("64:ff9b::c000:221", "192.0.2.33"),  # the same, hex
        ("2002:c000:221::1", "192.0.2.33"),  # RFC 3056 §2, 6to4 (2002:V4ADDR::/48)
        # RFC 4380 §4 (Teredo): server 65.54.227.120, client 192.0.2.45 stored inverted
        ("2001:0000:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
        ("64:ff9b::7f00:1", "127.0.0.1"),
        ("2002:7f00:1::", "127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),
    ],
)
def test_normalise_ip_finds_the_rfcs_embedded_ipv4(address, ipv4):
    assert normalise_ip(address) == V4(ipv4)
    assert normalise_ip(ipaddress.IPv6Address(address)) == V4(ipv4)


@pytest.mark.parametrize(
    "address", ["::", "::1", "2606:4700::1111", "fe80::1", "64:ff9b:1::7f00:1", "2003::1"]
)
def test_normalise_ip_leaves_other_ipv6_alone(address):
    # :: and ::1 are the unspecified and loopback addresses (RFC 4291 §2.5.2-3), not
    # IPv4-compatible ones; RFC 8215's local-use prefix embeds IPv4 where its operator
    # chooses, so no position can be assumed.
    assert normalise_ip(address) == ipaddress.IPv6Address(address)


def test_normalise_ip_drops_a_zone_and_refuses_garbage():
    assert normalise_ip("::ffff:7f00:1%eth0") == V4("127.0.0.1")
    with pytest.raises(ValueError, match="does not appear to be"):
        normalise_ip("not-an-address")


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("64:ff9b::7f00:1/128", ["127.0.0.1/32"]),
        ("64:ff9b::/96", ["0.0.0.0/0"]),
        ("64:ff9b::7f00:0/104", ["127.0.0.0/8"]),
        ("2002:7f00:1::/48", ["127.0.0.1/32"]),
        ("2002:7f00::/24", ["127.0.0.0/8"]),
        ("2002::/16", ["0.0.0.0/0"]),
        ("::ffff:0:7f00:1/128", ["127.0.0.1/32"]),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe/128", ["127.0.0.1/32"]),
        ("2001:0:4136:e378::/64", ["0.0.0.0/0"]),
        ("64:ff9b:1::/48", ["0.0.0.0/0"]),
        ("2606:4700::/32", []),
        ("::1/128", []),
        ("::/128", []),
    ],
)
def test_embedded_ipv4_networks_of_known_prefixes(network, expected):
    assert embedded_ipv4_networks(V6Net(network)) == [V4Net(n) for n in expected]


def test_a_prefix_holding_several_forms_names_them_all():
    # 2000::/3 holds 6to4 and Teredo; ::/64 the mapped, compatible and SIIT forms.
    assert V4Net("0.0.0.0/0") in embedded_ipv4_networks(V6Net("2000::/3"))
    assert embedded_ipv4_networks(V6Net("::/64")).count(V4Net("0.0.0.0/0")) == 3


_FORMS = [
    V6Net(n)
    for n in (
        "::ffff:0:0/96",
        "::/96",
        "::ffff:0:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
        "::/0",
    )
]


@st.composite
def prefix_and_member(draw):
    """A prefix near a translation form, and an address inside it."""
    form = draw(st.sampled_from(_FORMS))
    host_bits = 128 - form.prefixlen
    base = int(form.network_address) | draw(st.integers(0, (1 << host_bits) - 1))
    prefixlen = draw(st.integers(max(0, form.prefixlen - 8), 128))
    network = V6Net((base, prefixlen), strict=False)
    free = 128 - prefixlen
    member = int(network.network_address) | draw(st.integers(0, (1 << free) - 1))
    return network, ipaddress.IPv6Address(member)


@settings(max_examples=2000, deadline=None)
@given(prefix_and_member())
def test_a_prefix_check_never_misses_an_address_inside(case):
    network, member = case
    reached = normalise_ip(member)
    if reached.version == 4:
        assert any(reached in net for net in embedded_ipv4_networks(network)), case
