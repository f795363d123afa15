"""The gateway's lookups of DNS resources' names: A and AAAA apart, a TTL cache with a floor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from zerogate.gateway import resolver as resolver_module
from zerogate.gateway.resolver import DnsServer, NameResolver

#: Firezone's gateway: 10 s per lookup; the cache keeps an answer at least this long.
LOOKUP_TIMEOUT = 10.0
MIN_TTL = 30.0


class Site(asyncio.DatagramProtocol):
    """The site's resolver on loopback: per (name, type) an answer, a refusal or silence."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], tuple[list[str], int]] = {}
        self.broken: set[tuple[str, int]] = set()
        self.asked: list[tuple[str, int]] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        key = (question.name.to_text(omit_final_dot=True), question.rdtype)
        self.asked.append(key)
        response = dns.message.make_response(query)
        if key in self.broken:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif key in self.records:
            addresses, ttl = self.records[key]
            response.answer.append(
                dns.rrset.from_text_list(question.name, ttl, "IN", question.rdtype, addresses)
            )
        elif question.rdtype == dns.rdatatype.MX:  # an MX with its glue, as dnsmasq answers
            target = dns.name.from_text("mail.corp.test.")
            response.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", "MX", "10 mail.corp.test.")
            )
            response.additional.append(dns.rrset.from_text(target, 60, "IN", "A", "172.16.5.25"))
            response.additional.append(dns.rrset.from_text(target, 60, "IN", "AAAA", "fd00:5::25"))
        self.transport.sendto(response.to_wire(), addr)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def site() -> AsyncIterator[tuple[Site, int]]:
    server = Site()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: server, local_addr=("127.0.0.1", 0)
    )
    yield server, transport.get_extra_info("sockname")[1]
    transport.close()


def _resolver(port: int, clock: Clock, seen: list[Any]) -> NameResolver:
    resolver = NameResolver(
        lambda name, v4, v6: seen.append((name, v4, v6)), nameservers=["127.0.0.1"], clock=clock
    )
    resolver.resolver.port = port
    return resolver


async def _settle(resolver: NameResolver) -> None:
    for _ in range(200):
        if not resolver._inflight:
            return
        await asyncio.sleep(0.01)


def test_the_timeouts_restate_firezones():
    assert resolver_module.LOOKUP_TIMEOUT == LOOKUP_TIMEOUT
    assert resolver_module.MIN_TTL == MIN_TTL


async def test_a_and_aaaa_are_asked_apart_and_cached_for_at_least_the_floor(site):
    server, port = site
    server.records[("app.corp.test", dns.rdatatype.A)] = (["172.16.5.10", "172.16.5.11"], 5)
    server.records[("app.corp.test", dns.rdatatype.AAAA)] = (["fd00:5::10"], 600)
    clock, seen = Clock(), []
    resolver = _resolver(port, clock, seen)
    resolver.want("app.corp.test")
    resolver.want("app.corp.test")  # already on its way: one lookup
    await _settle(resolver)
    assert seen == [("app.corp.test", ["172.16.5.10", "172.16.5.11"], ["fd00:5::10"])]
    assert sorted(server.asked) == sorted(
        [("app.corp.test", dns.rdatatype.A), ("app.corp.test", dns.rdatatype.AAAA)]
    )
    clock.now += MIN_TTL - 1  # TTL 5 s, but the floor holds
    resolver.want("app.corp.test")
    await _settle(resolver)
    assert len(server.asked) == 2
    clock.now += 2
    resolver.want("app.corp.test")
    await _settle(resolver)
    assert len(server.asked) == 4


async def test_one_family_failing_keeps_what_it_had_and_the_other_is_answered(site):
    server, port = site
    server.records[("app.corp.test", dns.rdatatype.A)] = (["172.16.5.10"], 60)
    server.records[("app.corp.test", dns.rdatatype.AAAA)] = (["fd00:5::10"], 60)
    clock, seen = Clock(), []
    resolver = _resolver(port, clock, seen)
    resolver.want("app.corp.test")
    await _settle(resolver)
    server.broken.add(("app.corp.test", dns.rdatatype.AAAA))
    server.records[("app.corp.test", dns.rdatatype.A)] = (["172.16.5.99"], 60)
    clock.now += 61
    resolver.want("app.corp.test")
    await _settle(resolver)
    assert seen[-1] == ("app.corp.test", ["172.16.5.99"], ["fd00:5::10"])


async def test_a_name_without_records_is_an_answer_of_nothing(site):
    server, port = site
    server.records[("v4only.corp.test", dns.rdatatype.A)] = (["172.16.5.10"], 60)
    clock, seen = Clock(), []
    resolver = _resolver(port, clock, seen)
    resolver.want("v4only.corp.test")
    await _settle(resolver)
    assert seen == [("v4only.corp.test", ["172.16.5.10"], [])]


async def test_the_cache_is_bounded(site, monkeypatch):
    server, port = site
    monkeypatch.setattr(resolver_module, "MAX_NAMES", 3)
    for i in range(5):
        server.records[(f"n{i}.corp.test", dns.rdatatype.A)] = ([f"172.16.5.{i + 1}"], 60)
    clock, seen = Clock(), []
    resolver = _resolver(port, clock, seen)
    for i in range(5):
        resolver.want(f"n{i}.corp.test")
        await _settle(resolver)
    assert list(resolver.cache) == ["n2.corp.test", "n3.corp.test", "n4.corp.test"]


async def test_the_server_answers_allowed_clients_without_real_addresses(site):
    server, port = site
    server.records[("app.corp.test", dns.rdatatype.A)] = (["172.16.5.10"], 60)
    dns_server = DnsServer(
        ["127.0.0.1"],
        lambda source, name: source == "100.64.0.2" and name.endswith("corp.test"),
        lambda: ["127.0.0.1"],
        upstream_port=port,
    )
    mx = dns.message.from_wire(
        await dns_server.answer(
            dns.message.make_query("app.corp.test", "MX").to_wire(), "100.64.0.2"
        )
    )
    assert [rrset.rdtype for rrset in mx.answer] == [dns.rdatatype.MX]
    assert mx.additional == []  # the glue's A and AAAA stayed in the site
    a = dns.message.from_wire(
        await dns_server.answer(
            dns.message.make_query("app.corp.test", "A").to_wire(), "100.64.0.2"
        )
    )
    assert a.rcode() == dns.rcode.NOERROR
    assert a.answer == []
    other = dns.message.from_wire(
        await dns_server.answer(
            dns.message.make_query("app.corp.test", "MX").to_wire(), "100.64.0.9"
        )
    )
    assert other.rcode() == dns.rcode.REFUSED
    assert dns_server.refused == 1
