"""The client's resources: longest-prefix match, routes, access state."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from zerogate.client.state import BUFFER_PACKETS, REQUEST_INTERVAL, Access, Resources
from zerogate.common.messages.api import ResourceView


def _r(rid: str, address: str, kind: str = "cidr") -> ResourceView:
    return ResourceView(id=rid, type=kind, address=address, name=rid, site_id="s")  # type: ignore[arg-type]


def _packet(dst: str) -> bytes:
    ip = ipaddress.ip_address(dst)
    if ip.version == 4:
        return bytes([0x45]) + bytes(15) + ip.packed
    return bytes([0x60]) + bytes(23) + ip.packed


def test_the_most_specific_resource_wins() -> None:
    res = Resources()
    res.replace(
        [_r("wide", "10.0.0.0/8"), _r("narrow", "10.1.0.0/16"), _r("host", "10.1.2.3", "ip")]
    )
    assert res.match(_packet("10.1.2.3")).resource.id == "host"
    assert res.match(_packet("10.1.9.9")).resource.id == "narrow"
    assert res.match(_packet("10.200.0.1")).resource.id == "wide"
    assert res.match(_packet("192.0.2.1")) is None
    assert res.match(b"\x45") is None


def test_routes_follow_the_resources() -> None:
    res = Resources()
    add, remove = res.replace([_r("a", "10.1.0.0/16"), _r("d", "app.corp.example", "dns")])
    assert add == [ipaddress.ip_network("10.1.0.0/16")]
    assert remove == []
    add, remove = res.replace([_r("b", "fd00:5::/64")])
    assert add == [ipaddress.ip_network("fd00:5::/64")]
    assert remove == [ipaddress.ip_network("10.1.0.0/16")]


def test_a_moved_resource_loses_its_old_access() -> None:
    res = Resources()
    res.replace([_r("a", "10.1.0.0/16")])
    state = res.states["a"]
    state.access, state.gateway_id = Access.AUTHORIZED, "g"
    assert res.allowed_ips("g") == [ipaddress.ip_network("10.1.0.0/16")]
    res.upsert(_r("a", "10.2.0.0/16"))
    assert state.access is Access.NONE
    assert res.allowed_ips("g") == []


def test_requests_are_throttled_per_resource() -> None:
    res = Resources()
    res.replace([_r("a", "10.1.0.0/16")])
    state = res.states["a"]
    assert res.due(state, 100.0)
    state.requested_at = 100.0
    assert not res.due(state, 100.0 + REQUEST_INTERVAL - 0.01)
    assert res.due(state, 100.0 + REQUEST_INTERVAL)


def test_the_buffer_is_bounded() -> None:
    res = Resources()
    res.replace([_r("a", "10.1.0.0/16")])
    state = res.states["a"]
    for i in range(BUFFER_PACKETS + 10):
        state.buffer.append(bytes([i % 256]))
    assert len(state.buffer) == BUFFER_PACKETS == 128  # Firezone's bound, restated


@given(st.binary(max_size=60))
def test_garbage_never_raises(data: bytes) -> None:
    res = Resources()
    res.replace([_r("a", "0.0.0.0/1"), _r("b", "::/1")])
    res.match(data)
