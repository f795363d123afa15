"""Cryptokey routing (whitepaper §2): outgoing packets pick their peer by the
longest matching AllowedIPs prefix; incoming packets must come from inside the
sending peer's AllowedIPs."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wg_helpers import NOW0, UNIX0, ipv4, ipv6

from zerogate.proto.wireguard import Device, LocalProtocolError
from zerogate.proto.wireguard.allowed_ips import AllowedIPs
from zerogate.proto.wireguard.crypto import generate_private_key

net = ipaddress.ip_network


def _device_with_peers(n: int) -> tuple[Device, list[bytes]]:
    dev = Device(generate_private_key(), now=NOW0, unix_time=UNIX0)
    keys = []
    for i in range(n):
        key = Device(generate_private_key(), now=NOW0, unix_time=UNIX0).public_key
        dev.add_peer(key, endpoint=(f"192.0.2.{i + 1}", 51820), now=NOW0)
        keys.append(key)
    return dev, keys


def test_longest_prefix_wins_ipv4_and_ipv6() -> None:
    dev, (p1, p2, p3) = _device_with_peers(3)
    dev.update_peer(p1, allowed_ips=[net("0.0.0.0/0"), net("::/0")], now=NOW0)
    dev.update_peer(p2, allowed_ips=[net("10.0.0.0/8"), net("fd00::/16")], now=NOW0)
    dev.update_peer(p3, allowed_ips=[net("10.1.2.0/24"), net("fd00:1::/48")], now=NOW0)

    def owner(pkt: bytes) -> bytes | None:
        peer = dev.peer_for(pkt)
        return None if peer is None else peer.public_key

    assert owner(ipv4("1.1.1.1", "10.1.2.3")) == p3
    assert owner(ipv4("1.1.1.1", "10.1.3.3")) == p2
    assert owner(ipv4("1.1.1.1", "8.8.8.8")) == p1
    assert owner(ipv6("::1", "fd00:1::5")) == p3
    assert owner(ipv6("::1", "fd00:2::5")) == p2
    assert owner(ipv6("::1", "2001:db8::1")) == p1


def test_no_match_and_non_ip_are_dropped() -> None:
    dev, (p1,) = _device_with_peers(1)
    dev.update_peer(p1, allowed_ips=[net("10.0.0.0/8")], now=NOW0)
    assert dev.encrypt(ipv4("10.0.0.1", "192.168.1.1"), NOW0) is None
    assert dev.encrypt(b"\x45" + bytes(10), NOW0) is None  # truncated IPv4
    assert dev.encrypt(b"\x10" + bytes(40), NOW0) is None  # version 1
    assert dev.encrypt(b"", NOW0) is None
    assert dev.poll_transmit() is None


def test_a_prefix_has_one_owner_and_moves() -> None:
    dev, (p1, p2) = _device_with_peers(2)
    dev.update_peer(p1, allowed_ips=[net("10.0.0.0/24"), net("10.9.0.0/16")], now=NOW0)
    dev.update_peer(p2, allowed_ips=[net("10.0.0.0/24")], now=NOW0)
    assert dev.peers[p1].allowed_ips == [net("10.9.0.0/16")]
    assert dev.peers[p2].allowed_ips == [net("10.0.0.0/24")]
    found = dev.peer_for(ipv4("1.1.1.1", "10.0.0.7"))
    assert found is not None
    assert found.public_key == p2


def test_replace_and_remove() -> None:
    dev, (p1, p2) = _device_with_peers(2)
    dev.update_peer(p1, allowed_ips=[net("10.0.0.0/24")], now=NOW0)
    dev.update_peer(p1, allowed_ips=[net("10.0.1.0/24")], now=NOW0)
    assert dev.peers[p1].allowed_ips == [net("10.0.0.0/24"), net("10.0.1.0/24")]
    dev.update_peer(p1, allowed_ips=[net("10.0.2.0/24")], replace_allowed_ips=True, now=NOW0)
    assert dev.peers[p1].allowed_ips == [net("10.0.2.0/24")]
    assert dev.peer_for(ipv4("1.1.1.1", "10.0.0.1")) is None
    dev.update_peer(p2, allowed_ips=[net("10.0.0.0/8")], now=NOW0)
    dev.remove_peer(p1)
    found = dev.peer_for(ipv4("1.1.1.1", "10.0.2.1"))
    assert found is not None
    assert found.public_key == p2
    assert p1 not in dev.peers
    with pytest.raises(LocalProtocolError):
        dev.remove_peer(p1)


def test_configuration_errors_are_local() -> None:
    dev, (p1,) = _device_with_peers(1)
    with pytest.raises(LocalProtocolError):
        dev.add_peer(b"short", now=NOW0)
    with pytest.raises(LocalProtocolError):
        dev.add_peer(dev.public_key, now=NOW0)
    with pytest.raises(LocalProtocolError):
        dev.update_peer(p1, preshared_key=b"x", now=NOW0)
    with pytest.raises(LocalProtocolError):
        dev.update_peer(p1, endpoint=("192.0.2.1", 0), now=NOW0)
    with pytest.raises(LocalProtocolError):
        dev.update_peer(p1, allowed_ips=["10.0.0.0/8"], now=NOW0)  # type: ignore[list-item]
    with pytest.raises(LocalProtocolError):
        dev.update_peer(bytes(32), endpoint=None, now=NOW0)


prefixes4 = st.builds(
    lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(prefixes4, st.integers(0, 4)), max_size=30),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_lookup_matches_a_linear_scan(
    routes: list[tuple[ipaddress.IPv4Network, int]], addrs: list[int]
) -> None:
    table: AllowedIPs[int] = AllowedIPs()
    latest: dict[ipaddress.IPv4Network, int] = {}
    for network, owner in routes:
        table.insert(network, owner)
        latest[network] = owner
    for a in addrs:
        addr = ipaddress.IPv4Address(a)
        matching = [n for n in latest if addr in n]
        want = latest[max(matching, key=lambda n: n.prefixlen)] if matching else None
        assert table.lookup(4, a) == want


def test_add_peer_twice_updates_only_what_is_given() -> None:
    dev, (p1,) = _device_with_peers(1)
    psk = bytes(range(32))
    dev.update_peer(p1, preshared_key=psk, allowed_ips=[net("10.0.0.0/24")], now=NOW0)
    same = dev.add_peer(p1, allowed_ips=[net("10.0.1.0/24")], now=NOW0)
    assert same is dev.peers[p1]
    assert same.preshared_key == psk
    assert same.endpoint == ("192.0.2.1", 51820)
    assert same.allowed_ips == [net("10.0.0.0/24"), net("10.0.1.0/24")]
    dev.update_peer(p1, preshared_key=None, endpoint=None, now=NOW0)
    assert same.preshared_key is None
    assert same.endpoint is None
