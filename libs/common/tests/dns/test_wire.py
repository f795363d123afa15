"""Wire reads and patches of the stub's fast path, and proxy addresses (RFC 1035 §4.1)."""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.message
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerogate.proto.dns.proxy import (
    PROXY_V4,
    PROXY_V6,
    SENTINEL_V4,
    SLOTS,
    ProxyAddresses,
    is_proxy,
    slot_addresses,
    slot_of,
)
from zerogate.proto.dns.wire import read_query, reply_to, truncated, ttl_offsets, with_ttls


def _wire(name: str, rdtype: str = "A", **kwargs: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


def test_a_plain_query_is_read_and_its_key_ignores_case_and_id():
    a = read_query(_wire("App.Corp.Test"))
    b = read_query(_wire("app.corp.test"))
    assert a is not None
    assert b is not None
    assert a.key == b.key
    assert a.udp_size == 512  # no EDNS: RFC 1035 §4.2.1
    edns = read_query(_wire("app.corp.test", use_edns=0, payload=1232))
    do = read_query(_wire("app.corp.test", use_edns=0, want_dnssec=True))
    assert edns is not None
    assert do is not None
    assert edns.udp_size == 1232
    assert len({a.key, edns.key, do.key}) == 3
    assert read_query(_wire("app.corp.test", "AAAA")).key != a.key  # type: ignore[union-attr]
    # qtype 0x41 (HTTPS) must not be lower-cased into another type
    assert read_query(_wire("x.test", "HTTPS")).qtype == 65  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(12),
        _wire("a.test")[:-1],  # cut short
        _wire("a.test") + b"\x00",  # trailing bytes
        b"\x00\x01\x80\x00" + _wire("a.test")[4:],  # a response (QR)
        b"\x00\x01\x28\x00" + _wire("a.test")[4:],  # an UPDATE (opcode 5)
        _wire("a.test")[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01",  # compression in the question
    ],
)
def test_anything_else_is_left_to_the_codec(data: bytes):
    assert read_query(data) is None


def test_a_reply_takes_the_queries_id_flags_and_question():
    query = dns.message.make_query("app.corp.test", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("app.corp.test.", 1, "IN", "A", "100.96.0.4"))
    template = response.to_wire()
    other = dns.message.make_query("APP.corp.TEST", "A")
    other.flags = dns.flags.CD
    got = read_query(other.to_wire())
    assert got is not None
    answer = dns.message.from_wire(reply_to(template, other.to_wire(), got.end))
    assert answer.id == other.id
    assert str(answer.question[0].name) == "APP.corp.TEST."
    assert answer.flags & dns.flags.CD
    assert not answer.flags & dns.flags.RD
    assert [r.address for r in answer.answer[0]] == ["100.96.0.4"]


def test_ttls_are_found_through_compression_and_counted_down():
    query = dns.message.make_query("www.example.test", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("www.example.test.", 300, "IN", "CNAME", "b.example.test.")
    )
    response.answer.append(
        dns.rrset.from_text("b.example.test.", 60, "IN", "A", "192.0.2.1", "192.0.2.2")
    )
    wire = response.to_wire()
    ttls = ttl_offsets(wire)
    assert ttls is not None
    assert ttls.min_ttl == 60
    assert len(ttls.offsets) == 3  # the OPT record's "TTL" is flags, left alone
    later = dns.message.from_wire(with_ttls(wire, ttls, 45))
    assert [rrset.ttl for rrset in later.answer] == [255, 15]
    gone = dns.message.from_wire(with_ttls(wire, ttls, 600))
    assert [rrset.ttl for rrset in gone.answer] == [0, 0]


def test_a_negative_answer_lives_for_the_soa_minimum():
    query = dns.message.make_query("nope.example.test", "A")
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.NXDOMAIN)
    soa = "ns.example.test. host.example.test. 1 7200 900 1209600 30"
    response.authority.append(dns.rrset.from_text("example.test.", 3600, "IN", "SOA", soa))
    ttls = ttl_offsets(response.to_wire())
    assert ttls is not None
    assert ttls.answers == 0
    assert ttls.negative_ttl == 30  # RFC 2308 §5: min(SOA TTL, MINIMUM)


def test_truncation_keeps_only_the_question():
    query = dns.message.make_query("big.example.test", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("big.example.test.", 5, "IN", "A", "192.0.2.9"))
    wire = response.to_wire()
    got = read_query(query.to_wire())
    assert got is not None
    cut = dns.message.from_wire(truncated(wire, got.end))
    assert cut.flags & dns.flags.TC
    assert cut.answer == []
    assert str(cut.question[0].name) == "big.example.test."


@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes):
    read_query(data)
    ttl_offsets(data)


# --------------------------------------------------------------------------- proxy addresses


def test_a_name_gets_4_addresses_of_each_family_in_the_proxy_ranges():
    proxies = ProxyAddresses()
    v4, v6 = proxies.addresses("app.corp.test")
    assert len(v4) == len(v6) == 4
    assert all(a in PROXY_V4 for a in v4)
    assert all(a in PROXY_V6 for a in v6)
    assert all(a not in SENTINEL_V4 for a in v4)
    for index, address in enumerate((*v4, *v6)):
        assert proxies.name_at(address) == "app.corp.test"
        assert slot_of(address)[1] == index % 4  # type: ignore[index]
        assert is_proxy(address.version, int(address))
    assert proxies.name_at(ipaddress.ip_address("100.95.255.255")) is None


def test_the_same_name_gets_the_same_addresses_in_another_run():
    first, second = ProxyAddresses(), ProxyAddresses()
    second.addresses("something.else.test")
    assert first.addresses("app.corp.test") == second.addresses("app.corp.test")


def test_a_taken_slot_moves_the_next_name_and_a_saved_map_restores_it():
    proxies = ProxyAddresses()
    names = [f"n{i}.corp.test" for i in range(2000)]
    slots = {proxies.slot(n) for n in names}
    assert len(slots) == len(names)  # never shared
    saved = proxies.saved()
    again = ProxyAddresses()
    again.load(saved)
    assert all(again.slot(n) == proxies.slot(n) for n in names)
    again.load({"bad": SLOTS + 5, "worse": "x"})  # type: ignore[dict-item]
    assert again.known("bad") is None


def test_the_stub_range_is_never_given_out():
    sentinel_slots = {slot_of(a)[0] for a in SENTINEL_V4}  # type: ignore[index]
    for slot in sentinel_slots:
        v4, _ = slot_addresses(slot)
        assert any(a in SENTINEL_V4 for a in v4)
    proxies = ProxyAddresses()
    proxies.load({f"x{s}": s for s in sentinel_slots})
    assert all(proxies.known(f"x{s}") is None for s in sentinel_slots)
