"""The client's names of DNS resources, and the Internet resource: what a packet is for."""

from __future__ import annotations

import ipaddress
from typing import Any

from zerogate.client.state import Access, Resources
from zerogate.common.messages.api import ResourceView


def _r(rid: str, address: str | None, kind: str = "dns", **extra: Any) -> ResourceView:
    return ResourceView(id=rid, type=kind, address=address, name=rid, site_id="s", **extra)  # type: ignore[arg-type]


def _packet(dst: str) -> bytes:
    ip = ipaddress.ip_address(dst)
    if ip.version == 4:
        return bytes([0x45]) + bytes(15) + ip.packed
    return bytes([0x60]) + bytes(23) + ip.packed


def _resources(**kwargs: Any) -> Resources:
    res = Resources(**kwargs)
    res.replace([
        _r("exact", "app.corp.test"), _r("star", "*.corp.test"), _r("net", "10.0.0.0/8", "cidr"),
        _r("world", None, "internet"),
    ])  # fmt: skip
    return res


def test_a_packet_to_a_proxy_address_is_for_its_names_resource():
    res = _resources()
    ns = res.name("web.corp.test")
    assert ns.resource_id == "star"
    for address in (*ns.v4, *ns.v6):
        state, name = res.target(_packet(str(address)))
        assert name is ns
        assert state is res.states["star"]
    # a proxy address no name was given: nothing of ours to ask for
    assert res.target(_packet("100.127.255.250")) == (None, None)
    assert res.target(_packet("10.1.2.3"))[0] is res.states["net"]


def test_names_follow_resource_changes():
    res = _resources()
    ns = res.name("app.corp.test")
    assert ns.resource_id == "exact"
    ns.gateway_id = "g1"
    res.remove("exact")
    assert ns.resource_id == "star"  # the wildcard takes it
    assert ns.gateway_id is None  # and the gateway must learn it again
    res.remove("star")
    assert ns.resource_id is None
    state, name = res.target(_packet(str(ns.v4[0])))
    assert state is None
    assert name is ns


def test_a_gateway_carries_the_names_it_learned_and_the_internet_only_when_turned_on():
    for internet in (False, True):
        res = _resources(internet=internet)
        star = res.states["star"]
        star.access, star.gateway_id = Access.AUTHORIZED, "g1"
        world = res.states["world"]
        world.access, world.gateway_id = Access.AUTHORIZED, "g1"
        learned, other = res.name("a.corp.test"), res.name("b.corp.test")
        learned.gateway_id = "g1"
        allowed = {str(n) for n in res.allowed_ips("g1")}
        assert {f"{a}/{a.max_prefixlen}" for a in (*learned.v4, *learned.v6)} <= allowed
        assert not {f"{a}/{a.max_prefixlen}" for a in other.v4} & allowed
        assert ("0.0.0.0/0" in allowed) is internet
        assert ("::/0" in allowed) is internet
        assert (res.target(_packet("192.0.2.1"))[0] is world) is internet


def test_losing_a_resource_forgets_what_its_gateway_learned():
    res = _resources()
    star = res.states["star"]
    star.access, star.gateway_id = Access.AUTHORIZED, "g1"
    ns = res.name("a.corp.test")
    ns.gateway_id = "g1"
    ns.requested_at = 5.0
    res.lose(star)
    assert star.access is Access.NONE
    assert ns.gateway_id is None
    assert ns.requested_at is None
    assert res.names_via("g1") == []


def test_a_flood_of_names_forgets_the_oldest_unused(monkeypatch):
    from zerogate.client import state as state_module

    monkeypatch.setattr(state_module, "MAX_NAMES", 3)
    res = _resources()
    forgotten: list[str] = []
    res.on_forget = forgotten.append
    first = res.name("a.corp.test")
    first.gateway_id = "g1"  # in use: kept
    res.name("b.corp.test")
    res.name("c.corp.test")
    res.name("d.corp.test")
    assert set(res.names) == {"a.corp.test", "c.corp.test", "d.corp.test"}
    assert res.proxies.known("b.corp.test") is None
    assert forgotten == ["b.corp.test"]  # the stub drops answers naming its addresses
