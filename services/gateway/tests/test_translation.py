"""The gateway's per-packet checks beyond CIDR: filters, DNS names, the Internet resource."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerogate.common.messages.api import ResourceView
from zerogate.common.messages.signaling import AuthorizationRef, ClientInfo
from zerogate.gateway.state import DNS_PORT, AccessTable
from zerogate.proto.dns.proxy import slot_addresses
from zerogate.testing.packets import ICMP, TCP, UDP, addresses, checksums_ok, packet

CLIENT = ClientInfo(id="c1", public_key="k" * 44, ipv4="100.64.0.5", ipv6="fd00:2021:1111::5")
OTHER = ClientInfo(id="c2", public_key="j" * 44, ipv4="100.64.0.6", ipv6="fd00:2021:1111::6")
GATEWAY = ("100.64.0.1", "fd00:2021:1111::1")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
V4, V6 = slot_addresses(4242)
PROXIES = [str(a) for a in (*V4, *V6)]
#: ICMP answers (RFC 792 with RFC 1812 §5.2.7.1; RFC 4443 §3.1).
ADMIN_PROHIBITED_V4 = (3, 13)
ADMIN_PROHIBITED_V6 = (1, 1)
HOST_UNREACHABLE_V4 = (3, 1)
ADDRESS_UNREACHABLE_V6 = (1, 3)


def _resource(rid: str, address: str | None, kind: str = "cidr", **extra: Any) -> ResourceView:
    return ResourceView(id=rid, type=kind, address=address, name=rid, site_id="s", **extra)  # type: ignore[arg-type]


def _ref(client: ClientInfo, rid: str) -> AuthorizationRef:
    return AuthorizationRef(
        id=f"{client.id}-{rid}", account_id="a", client_id=client.id, resource_id=rid, token_id="t"
    )


class Table:
    """An AccessTable with its answers and lookups collected."""

    def __init__(self) -> None:
        self.table = AccessTable()
        self.answers: list[bytes] = []
        self.wanted: list[str] = []
        self.table.on_answer = self.answers.append
        self.table.on_resolve = self.wanted.append
        self.table.set_own(GATEWAY)

    def grant(self, client: ClientInfo, resource: ResourceView, **extra: Any) -> None:
        self.table.grant(client, resource, _ref(client, resource.id), None, **extra)

    def answer_kind(self) -> tuple[int, int]:
        answer = self.answers.pop()
        assert checksums_ok(answer)
        offset = 20 if answer[0] >> 4 == 4 else 40
        return answer[offset], answer[offset + 1]


FILTERED = [{"protocol": "tcp", "ports": ["443", "8000-8100"]}, {"protocol": "icmp"}]


def test_filters_let_through_the_listed_ports_and_icmp_and_answer_the_rest_at_once():
    t = Table()
    t.grant(CLIENT, _resource("r", "10.1.0.0/16", filters=FILTERED))
    src = CLIENT.ipv4
    for dport in (443, 8000, 8050, 8100):
        assert t.table.inbound(packet(src, "10.1.2.3", TCP, 40000, dport)) is not None
    assert t.table.inbound(packet(src, "10.1.2.3", ICMP)) is not None
    assert not t.answers
    for dport in (22, 442, 444, 7999, 8101):
        assert t.table.inbound(packet(src, "10.1.2.3", TCP, 40000, dport)) is None
        assert t.answer_kind() == ADMIN_PROHIBITED_V4
    assert t.table.inbound(packet(src, "10.1.2.3", UDP, 40000, 443)) is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V4


def test_an_ipv6_refusal_is_icmpv6_administratively_prohibited():
    t = Table()
    t.grant(CLIENT, _resource("r", "fd00:5::/64", filters=[{"protocol": "udp"}]))
    assert t.table.inbound(packet(CLIENT.ipv6, "fd00:5::10", UDP, 1, 53)) is not None
    assert t.table.inbound(packet(CLIENT.ipv6, "fd00:5::10", TCP, 1, 80)) is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V6
    refused = t.table.inbound(packet(CLIENT.ipv6, "fd00:6::10", TCP, 1, 80))
    assert refused is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V6


def test_a_filter_change_applies_to_packets_of_flows_already_running():
    t = Table()
    t.grant(CLIENT, _resource("r", "10.1.0.0/16"))
    flow = packet(CLIENT.ipv4, "10.1.2.3", TCP, 40000, 22)
    assert t.table.inbound(flow) is not None
    t.table.update_resource(_resource("r", "10.1.0.0/16", filters=FILTERED))
    assert t.table.inbound(flow) is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V4
    t.table.update_resource(_resource("r", "10.1.0.0/16"))
    assert t.table.inbound(flow) is not None


def test_overlapping_grants_let_through_what_either_allows():
    t = Table()
    t.grant(CLIENT, _resource("wide", "10.0.0.0/8"))
    t.grant(CLIENT, _resource("narrow", "10.1.0.0/16", filters=FILTERED))
    assert t.table.inbound(packet(CLIENT.ipv4, "10.1.2.3", TCP, 1, 22)) is not None


def test_a_dns_name_is_translated_once_resolved():
    t = Table()
    resource = _resource("d", "*.corp.test", "dns")
    t.grant(CLIENT, resource, domain="app.corp.test", proxy_ips=PROXIES)
    assert t.wanted == ["app.corp.test"]
    first = packet(CLIENT.ipv4, str(V4[1]), TCP, 40000, 80)
    assert t.table.inbound(first) is None  # held while the name is looked up
    assert not t.answers
    waiting = t.table.set_addresses("app.corp.test", ["172.16.5.10", "172.16.5.11"], [])
    assert waiting == [first]
    out = t.table.inbound(first)
    assert out is not None
    assert addresses(out) == (CLIENT.ipv4, "172.16.5.11")  # proxy index 1 → record 1
    assert checksums_ok(out)
    assert t.table.has_nat
    back = bytes(t.table.outbound(packet("172.16.5.11", CLIENT.ipv4, TCP, 80, 40000)))
    assert addresses(back) == (str(V4[1]), CLIENT.ipv4)
    assert checksums_ok(back)
    # index 2 of 2 records wraps around to the first
    other = t.table.inbound(packet(CLIENT.ipv4, str(V4[2]), TCP, 40001, 80))
    assert other is not None
    assert addresses(other)[1] == "172.16.5.10"


def test_a_name_without_records_of_a_family_answers_unreachable():
    t = Table()
    t.grant(CLIENT, _resource("d", "v4only.corp.test", "dns"), domain="v4only.corp.test",
            proxy_ips=PROXIES)  # fmt: skip
    t.table.set_addresses("v4only.corp.test", ["172.16.5.10"], [])
    assert t.table.inbound(packet(CLIENT.ipv6, str(V6[0]), TCP, 40000, 80)) is None
    answer = t.answers[-1]
    assert addresses(answer) == (str(V6[0]), CLIENT.ipv6)  # from the proxy address
    assert t.answer_kind() == ADDRESS_UNREACHABLE_V6
    t.grant(CLIENT, _resource("e", "v6only.corp.test", "dns"), domain="v6only.corp.test",
            proxy_ips=[str(a) for a in slot_addresses(7)[0]])  # fmt: skip
    t.table.set_addresses("v6only.corp.test", [], ["fd00:5::10"])
    assert t.table.inbound(packet(CLIENT.ipv4, str(slot_addresses(7)[0][0]), UDP, 1, 53)) is None
    assert t.answer_kind() == HOST_UNREACHABLE_V4


def test_a_name_is_only_granted_for_its_own_resource_and_proxy_addresses():
    t = Table()
    exact = _resource("d", "app.corp.test", "dns")
    with pytest.raises(ValueError, match="does not match"):
        t.grant(CLIENT, exact, domain="secret.corp.test", proxy_ips=PROXIES)
    with pytest.raises(ValueError, match="proxy"):
        t.grant(CLIENT, exact, domain="app.corp.test", proxy_ips=["10.1.2.3"])
    with pytest.raises(ValueError, match="only a dns"):
        t.grant(CLIENT, _resource("c", "10.1.0.0/16"), domain="app.corp.test", proxy_ips=[])
    assert CLIENT.id not in t.table.clients


def test_proxy_addresses_of_names_not_granted_are_refused():
    t = Table()
    t.grant(CLIENT, _resource("d", "app.corp.test", "dns"), domain="app.corp.test",
            proxy_ips=PROXIES)  # fmt: skip
    t.table.set_addresses("app.corp.test", ["172.16.5.10"], ["fd00:5::10"])
    elsewhere = str(slot_addresses(99)[0][0])
    assert t.table.inbound(packet(CLIENT.ipv4, elsewhere, TCP)) is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V4
    # and another client may not use this client's proxy addresses
    t.grant(OTHER, _resource("x", "10.9.0.0/16"))
    assert t.table.inbound(packet(OTHER.ipv4, str(V4[0]), TCP)) is None


def test_filters_of_a_dns_resource_apply_to_its_names():
    t = Table()
    resource = _resource("d", "**.corp.test", "dns", filters=[{"protocol": "tcp", "ports": ["80"]}])
    t.grant(CLIENT, resource, domain="a.b.corp.test", proxy_ips=PROXIES)
    t.table.set_addresses("a.b.corp.test", ["172.16.5.10"], [])
    assert t.table.inbound(packet(CLIENT.ipv4, str(V4[0]), TCP, 1, 80)) is not None
    assert t.table.inbound(packet(CLIENT.ipv4, str(V4[0]), TCP, 1, 81)) is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V4


def test_revoking_a_dns_resource_forgets_its_names_and_flows():
    t = Table()
    t.grant(CLIENT, _resource("d", "app.corp.test", "dns"), domain="app.corp.test",
            proxy_ips=PROXIES)  # fmt: skip
    t.grant(CLIENT, _resource("c", "10.1.0.0/16"))
    t.table.set_addresses("app.corp.test", ["172.16.5.10"], [])
    assert t.table.inbound(packet(CLIENT.ipv4, str(V4[0]), TCP)) is not None
    assert not t.table.revoke(CLIENT.id, "d")
    assert t.table.inbound(packet(CLIENT.ipv4, str(V4[0]), TCP)) is None
    assert not t.table.has_nat
    back = packet("172.16.5.10", CLIENT.ipv4, TCP, 443, 40000)
    assert t.table.outbound(back) is back


def test_the_internet_resource_reaches_anything_but_other_peers():
    t = Table()
    t.grant(CLIENT, _resource("i", None, "internet"))
    for dst in ("198.18.0.80", "8.8.8.8", "172.16.5.10"):
        assert t.table.inbound(packet(CLIENT.ipv4, dst, TCP)) is not None
    assert t.table.inbound(packet(CLIENT.ipv6, "2001:db8::1", UDP)) is not None
    assert t.table.inbound(packet(CLIENT.ipv4, OTHER.ipv4, TCP)) is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V4
    assert t.table.inbound(packet(CLIENT.ipv4, str(V4[0]), TCP)) is None  # no such name


def test_only_the_dns_server_and_echo_are_open_on_the_gateway_itself():
    t = Table()
    t.grant(CLIENT, _resource("d", "app.corp.test", "dns"))
    assert t.table.inbound(packet(CLIENT.ipv4, GATEWAY[0], UDP, 5353, DNS_PORT)) is not None
    assert t.table.inbound(packet(CLIENT.ipv6, GATEWAY[1], TCP, 5353, DNS_PORT)) is not None
    assert t.table.inbound(packet(CLIENT.ipv4, GATEWAY[0], ICMP)) is not None
    assert t.table.inbound(packet(CLIENT.ipv4, GATEWAY[0], TCP, 1, 22)) is None
    assert t.table.dns_allowed(CLIENT.ipv4, "app.corp.test")
    assert not t.table.dns_allowed(CLIENT.ipv4, "secret.corp.test")
    assert not t.table.dns_allowed(OTHER.ipv4, "app.corp.test")


def test_a_proxy_address_claimed_by_another_name_moves_to_it():
    t = Table()
    resource = _resource("d", "*.corp.test", "dns")
    t.grant(CLIENT, resource, domain="a.corp.test", proxy_ips=PROXIES)
    t.grant(CLIENT, resource, domain="b.corp.test", proxy_ips=PROXIES)
    t.table.set_addresses("a.corp.test", ["172.16.5.1"], [])
    t.table.set_addresses("b.corp.test", ["172.16.5.2"], [])
    out = t.table.inbound(packet(CLIENT.ipv4, str(V4[0]), TCP))
    assert out is not None
    assert addresses(out)[1] == "172.16.5.2"
    assert t.table.names_in_use() == {"b.corp.test"}


@given(st.binary(max_size=120))
def test_garbage_never_raises(data: bytes) -> None:
    t = Table()
    t.grant(CLIENT, _resource("d", "*.corp.test", "dns", filters=FILTERED),
            domain="a.corp.test", proxy_ips=PROXIES)  # fmt: skip
    t.grant(CLIENT, _resource("i", None, "internet", filters=FILTERED))
    t.table.set_addresses("a.corp.test", ["172.16.5.1"], ["fd00:5::1"])
    for prefix in (b"", bytes([0x45]) + bytes(11) + ipaddress.IPv4Address(CLIENT.ipv4).packed):
        result = t.table.inbound(prefix + data)
        assert result is None or isinstance(result, bytes)
        if len(prefix + data) >= 1:
            t.table.outbound(prefix + data if prefix else (data or b"\x45"))


def test_a_filter_change_reaches_translated_flows_already_running():
    t = Table()
    resource = _resource("d", "app.corp.test", "dns")
    t.grant(CLIENT, resource, domain="app.corp.test", proxy_ips=PROXIES)
    t.table.set_addresses("app.corp.test", ["172.16.5.10"], [])
    flow = packet(CLIENT.ipv4, str(V4[0]), TCP, 40000, 9100)
    assert t.table.inbound(flow) is not None  # the flow is set up
    assert t.table.inbound(flow) is not None  # and now takes the fast path
    narrowed = _resource(
        "d", "app.corp.test", "dns", filters=[{"protocol": "tcp", "ports": ["80"]}]
    )
    t.table.update_resource(narrowed)
    assert t.table.inbound(flow) is None
    assert t.answer_kind() == ADMIN_PROHIBITED_V4
    t.table.update_resource(resource)
    assert t.table.inbound(flow) is not None


@given(
    st.sampled_from([TCP, UDP]),
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.binary(max_size=64),
)
def test_a_flows_later_packets_take_the_fast_paths_and_match_the_first(
    protocol: int, sport: int, dport: int, payload: bytes
) -> None:
    """The first packet of a flow is translated by the general code; the later ones by the
    inlined fast paths (both ways): the same bytes, valid checksums."""
    t = Table()
    t.grant(CLIENT, _resource("d", "*.corp.test", "dns"), domain="app.corp.test", proxy_ips=PROXIES)
    t.table.set_addresses("app.corp.test", ["172.16.5.10"], [])
    request = packet(CLIENT.ipv4, str(V4[0]), protocol, sport, dport, payload)
    first = t.table.inbound(request)
    assert first is not None
    assert addresses(first) == (CLIENT.ipv4, "172.16.5.10")
    again = t.table.inbound(request)
    assert again is not None
    assert bytes(again) == bytes(first)
    assert checksums_ok(bytes(again))
    reply = packet("172.16.5.10", CLIENT.ipv4, protocol, dport, sport, payload)
    back = bytes(t.table.outbound(reply))
    assert addresses(back) == (str(V4[0]), CLIENT.ipv4)
    assert checksums_ok(back)
    assert back == bytes(t.table.outbound(reply))
