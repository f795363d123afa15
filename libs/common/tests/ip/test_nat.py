"""The gateway's proxy ⇄ real translation (zerogate.proto.ip.nat): checksums, keys, expiry."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerogate.proto.ip.nat import (
    NatTable,
    adjust,
    flow_key,
    rewrite,
    rewrite_v4,
)
from zerogate.testing.packets import ICMP, TCP, UDP, addresses, checksums_ok, csum, packet

CLIENT4, PROXY4, REAL4 = "100.64.0.5", "100.96.1.4", "172.16.5.10"
CLIENT6, PROXY6, REAL6 = "fd00:2021:1111::5", "fd00:2021:1111:8000::104", "fd00:5::10"
#: RFC 5382 REQ-5 / Firezone's nat_table.rs: established TCP ≥ 2 h 4 min, UDP 2 min (RFC 4787).
TCP_IDLE = 2 * 3600 + 4 * 60
UDP_IDLE = 120


def _out(table: NatTable, data: bytes, real: str, now: float = 0.0) -> bytes:
    version = data[0] >> 4
    offset = 20 if version == 4 else 40
    protocol = data[9] if version == 4 else data[6]
    key = flow_key(data, version, offset, protocol)
    assert key is not None
    flow = table.find(protocol, key)
    if flow is None:
        proxy = data[16:20] if version == 4 else data[24:40]
        flow = table.add(protocol, key, proxy, ipaddress.ip_address(real).packed, now)
    else:
        flow.last = now
    generic = rewrite(data, version, offset, protocol, dst=True, address=flow.real,
                      adjustment=flow.out_adj)  # fmt: skip
    if version == 4 and protocol in (TCP, UDP):
        assert rewrite_v4(data, flow, dst=True) == generic  # the fast path agrees
    return generic


@pytest.mark.parametrize(
    ("client", "proxy", "real"), [(CLIENT4, PROXY4, REAL4), (CLIENT6, PROXY6, REAL6)]
)
@pytest.mark.parametrize("protocol", [TCP, UDP, ICMP])
def test_a_flow_goes_out_to_the_real_address_and_comes_back_from_the_proxy(
    client, proxy, real, protocol
):
    table = NatTable()
    request = packet(client, proxy, protocol, 40000, 443, b"x" * 33)
    sent = _out(table, request, real)
    assert addresses(sent) == (client, real)
    assert checksums_ok(sent)
    assert sent[-33:] == b"x" * 33
    kind = 0 if ":" not in client else 129  # echo reply
    reply = packet(real, client, protocol, 443, 40000, b"y" * 20, kind=kind)
    if protocol == ICMP:
        reply = packet(real, client, protocol, 40000, 443, b"y" * 20, kind=kind)
    back = table.back_of(reply, 1.0)
    assert back is not None
    assert addresses(back) == (proxy, client)
    assert checksums_ok(back)


def test_a_zero_udp_checksum_stays_zero_and_others_never_become_zero():
    table = NatTable()
    plain = packet(CLIENT4, PROXY4, UDP, 1, 2, b"", udp_zero=True)
    sent = _out(table, plain, REAL4)
    assert sent[26:28] == b"\0\0"
    assert checksums_ok(sent)
    # RFC 768: a computed checksum of zero goes out as 0xFFFF.
    assert adjust(0xFFFF, 0) in (0x0000, 0xFFFF)


def test_answers_of_other_clients_ports_and_hosts_are_left_alone():
    table = NatTable()
    _out(table, packet(CLIENT4, PROXY4, TCP, 40000, 443), REAL4)
    assert table.back_of(packet(REAL4, CLIENT4, TCP, 443, 40001), 1.0) is None
    assert table.back_of(packet(REAL4, CLIENT4, TCP, 444, 40000), 1.0) is None
    assert table.back_of(packet("172.16.5.11", CLIENT4, TCP, 443, 40000), 1.0) is None
    assert table.back_of(packet(REAL4, CLIENT4, UDP, 443, 40000), 1.0) is None


def test_a_flow_keeps_its_real_address_until_it_expires():
    table = NatTable()
    first = _out(table, packet(CLIENT4, PROXY4, TCP), REAL4, now=0.0)
    again = _out(table, packet(CLIENT4, PROXY4, TCP), "172.16.5.99", now=5.0)
    assert addresses(first)[1] == addresses(again)[1] == REAL4
    assert table.expire(TCP_IDLE - 1.0) == 0
    assert table.expire(5.0 + TCP_IDLE) == 1
    assert len(table) == 0
    udp = NatTable()
    _out(udp, packet(CLIENT4, PROXY4, UDP), REAL4, now=0.0)
    _out(udp, packet(CLIENT4, PROXY4, ICMP), REAL4, now=0.0)
    assert udp.expire(UDP_IDLE - 1.0) == 0
    assert udp.expire(UDP_IDLE) == 2


def test_traffic_back_keeps_a_flow_alive():
    table = NatTable()
    _out(table, packet(CLIENT4, PROXY4, UDP, 5000, 53), REAL4, now=0.0)
    assert table.back_of(packet(REAL4, CLIENT4, UDP, 53, 5000), UDP_IDLE - 10) is not None
    assert table.expire(UDP_IDLE + 5) == 0


def test_an_icmp_error_about_a_flow_is_translated_inside_and_out():
    table = NatTable()
    sent = _out(table, packet(CLIENT4, PROXY4, UDP, 5000, 9999, b"q" * 12), REAL4)
    quote = sent[:28]
    body = struct.pack("!BBHI", 3, 3, 0, 0) + quote  # port unreachable (RFC 792)
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, ICMP, 0,
                         ipaddress.IPv4Address(REAL4).packed,
                         ipaddress.IPv4Address(CLIENT4).packed)  # fmt: skip
    header = header[:10] + struct.pack("!H", csum(header)) + header[12:]
    back = table.back_of(header + body, 1.0)
    assert back is not None
    assert addresses(back) == (PROXY4, CLIENT4)
    inner = back[28:]
    assert addresses(inner) == (CLIENT4, PROXY4)
    assert csum(inner[:20]) == 0
    assert checksums_ok(back)


def test_forgetting_a_name_drops_its_flows():
    table = NatTable()
    _out(table, packet(CLIENT4, PROXY4, TCP), REAL4)
    table.drop_proxies(frozenset({ipaddress.IPv4Address(PROXY4).packed}))
    assert len(table) == 0
    assert table.back_of(packet(REAL4, CLIENT4, TCP, 443, 40000), 1.0) is None


_ports = st.integers(min_value=0, max_value=65535)


@given(
    st.sampled_from([TCP, UDP]),
    _ports,
    _ports,
    st.binary(max_size=200),
    st.sampled_from([(CLIENT4, PROXY4), (CLIENT6, PROXY6)]),
    st.integers(min_value=1, max_value=2**32 - 2),
)
def test_any_packet_keeps_valid_checksums_both_ways(protocol, sport, dport, payload, ends, real):
    client, proxy = ends
    real_ip = (
        str(ipaddress.IPv4Address(real))
        if ":" not in client
        else str(ipaddress.IPv6Address(real << 64 | 7))
    )
    table = NatTable()
    sent = _out(table, packet(client, proxy, protocol, sport, dport, payload), real_ip)
    assert checksums_ok(sent)
    answer = packet(real_ip, client, protocol, dport, sport, payload)
    back = table.back_of(answer, 0.0)
    assert back is not None
    assert checksums_ok(back)
    assert back == packet(proxy, client, protocol, dport, sport, payload)
    if ":" not in client:
        key = answer[12:24]  # the gateway's fast path: one slice
        found = (table.tcp_back if protocol == TCP else table.udp_back).get(key)
        assert found is not None
        assert rewrite_v4(answer, found, dst=False) == back


@given(
    st.sampled_from([TCP, UDP]),
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=4, max_size=4),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.booleans(),
)
def test_the_fast_rewrite_is_the_generic_one_for_any_checksums_and_addresses(
    protocol: int, proxy: bytes, real: bytes, ip_sum: int, l4_sum: int, dst: bool
) -> None:
    """Checksums of any value (0xFFFF, a UDP 0, ...) and any pair of addresses, the
    adjustment 0 included: rewrite_v4 writes the very bytes rewrite writes."""
    data = bytearray(packet(CLIENT4, PROXY4, protocol, 40000, 443, b"y" * 21))
    data[10:12] = ip_sum.to_bytes(2, "big")
    at = 36 if protocol == TCP else 26
    data[at : at + 2] = l4_sum.to_bytes(2, "big")
    data[12:16], data[16:20] = (data[12:16], proxy) if dst else (real, data[16:20])
    key = flow_key(bytes(data), 4, 20, protocol)
    assert key is not None
    flow = NatTable().add(protocol, key, proxy, real, 0.0)
    address, adjustment = (flow.real, flow.out_adj) if dst else (flow.proxy, flow.back_adj)
    generic = rewrite(bytes(data), 4, 20, protocol, dst=dst, address=address, adjustment=adjustment)
    fast = rewrite_v4(bytes(data), flow, dst=dst)
    assert bytes(fast) == generic
