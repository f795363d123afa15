"""The stub resolver's answers: resource names, the upstream cache, PTR, garbage."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogate.client.state import Resources, ResourceState
from zerogate.client.stub import StubResolver, StubServer
from zerogate.client.upstream import Upstream
from zerogate.common.messages.api import ResourceView

PROXY_V4 = ipaddress.ip_network("100.96.0.0/11")  # DESIGN.md, "Addresses"
PROXY_V6 = ipaddress.ip_network("fd00:2021:1111:8000::/107")
PUBLIC = "198.51.100.7"


class FakeUpstream(asyncio.DatagramProtocol):
    """A resolver on loopback that knows two names and counts what it is asked."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.asked: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        asyncio.get_running_loop().call_later(self.delay, self._answer, data, addr)

    def _answer(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.asked.append(name)
        response = dns.message.make_response(query)
        if name == "www.public.test" and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", PUBLIC))
        elif name == "big.public.test":
            addresses = [f"198.51.100.{i}" for i in range(1, 60)]
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", "A", addresses)
            )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(
                dns.rrset.from_text(
                    "public.test.", 300, "IN", "SOA", "ns.public.test. h.public.test. 1 2 3 4 30"
                )
            )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _r(rid: str, address: str | None, kind: str = "dns", **extra: Any) -> ResourceView:
    return ResourceView(id=rid, type=kind, address=address, name=rid, site_id="s", **extra)  # type: ignore[arg-type]


class Env:
    def __init__(self, upstream: FakeUpstream, port: int) -> None:
        self.upstream = upstream
        self.clock = Clock()
        self.resources = Resources()
        self.resources.replace(
            [
                _r("exact", "app.corp.test"),
                _r("star", "*.corp.test"),
                _r("v4", "v4.corp.test", ip_stack="ipv4_only"),
                _r("cidr", "10.0.0.0/8", "cidr"),
            ]
        )
        self.forwarded: list[tuple[str, str]] = []
        self.named: list[str] = []
        self.stub = StubResolver(
            self.resources,
            Upstream([("127.0.0.1", port)]),
            self._forward,
            on_name=self.named.append,
            clock=self.clock,
        )

    async def _forward(
        self, state: ResourceState, name: str, query: dns.message.Message
    ) -> dns.message.Message | None:
        self.forwarded.append((state.resource.id, name))
        response = dns.message.make_response(query)
        question = query.question[0].name
        if query.question[0].rdtype == dns.rdatatype.MX:  # as a resolver answers: with glue
            mail = dns.name.from_text("mail.corp.test.")
            response.answer.append(
                dns.rrset.from_text(question, 5, "IN", "MX", "10 mail.corp.test.")
            )
            response.additional.append(dns.rrset.from_text(mail, 5, "IN", "A", "172.16.5.25"))
            response.additional.append(dns.rrset.from_text(mail, 5, "IN", "AAAA", "fd00:5::25"))
        elif query.question[0].rdtype == dns.rdatatype.CNAME:
            response.answer.append(
                dns.rrset.from_text(question, 5, "IN", "CNAME", "web.corp.test.")
            )
            web = dns.name.from_text("web.corp.test.")
            response.answer.append(dns.rrset.from_text(web, 5, "IN", "A", "172.16.5.10"))
        else:
            response.answer.append(dns.rrset.from_text(question, 5, "IN", "TXT", '"gw"'))
        return response

    async def ask(self, name: str, rdtype: str = "A", **kwargs: Any) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, **kwargs)
        wire = await self.stub.answer(query.to_wire())
        assert wire is not None
        answer = dns.message.from_wire(wire)
        assert answer.id == query.id
        return answer


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    loop = asyncio.get_running_loop()
    upstream = FakeUpstream()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: upstream, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    yield Env(upstream, port)
    transport.close()


def _addresses(answer: dns.message.Message) -> list[str]:
    return [r.address for rrset in answer.answer for r in rrset if rrset.rdtype in (1, 28)]


async def test_resource_names_get_four_proxy_addresses_per_family_with_ttl_1(env: Env) -> None:
    a = await env.ask("app.corp.test", "A")
    aaaa = await env.ask("APP.corp.test", "AAAA")
    assert len(_addresses(a)) == len(_addresses(aaaa)) == 4
    assert all(ipaddress.ip_address(x) in PROXY_V4 for x in _addresses(a))
    assert all(ipaddress.ip_address(x) in PROXY_V6 for x in _addresses(aaaa))
    assert {rrset.ttl for rrset in a.answer + aaaa.answer} == {1}
    assert env.named == ["app.corp.test", "app.corp.test"]
    assert env.resources.names["app.corp.test"].resource_id == "exact"
    assert env.upstream.asked == []
    # a second name of the wildcard has addresses of its own
    other = await env.ask("web.corp.test", "A")
    assert set(_addresses(other)).isdisjoint(_addresses(a))
    assert env.resources.names["web.corp.test"].resource_id == "star"


async def test_the_ip_stack_leaves_the_other_family_empty(env: Env) -> None:
    aaaa = await env.ask("v4.corp.test", "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR
    assert _addresses(aaaa) == []
    assert len(_addresses(await env.ask("v4.corp.test", "A"))) == 4


async def test_a_cached_answer_keeps_the_askers_id_case_and_flags(env: Env) -> None:
    await env.ask("app.corp.test", "A")
    query = dns.message.make_query("aPp.CoRp.TeSt", "A")
    query.flags &= ~dns.flags.RD
    wire = env.stub.cached(query.to_wire())
    assert wire is not None
    answer = dns.message.from_wire(wire)
    assert answer.id == query.id
    assert str(answer.question[0].name) == "aPp.CoRp.TeSt."
    assert not answer.flags & dns.flags.RD
    assert answer.flags & dns.flags.QR


async def test_other_types_of_resource_names_are_forwarded_to_the_gateway(env: Env) -> None:
    answer = await env.ask("db.corp.test", "TXT")
    assert env.forwarded == [("star", "db.corp.test")]
    assert answer.answer[0].rdtype == dns.rdatatype.TXT


async def test_other_names_go_upstream_once_and_ttls_count_down(env: Env) -> None:
    first = await env.ask("www.public.test", "A")
    assert _addresses(first) == [PUBLIC]
    env.clock.now += 10
    second = await env.ask("www.public.test", "A")
    assert second.answer[0].ttl == 50  # 60 s, 10 s later
    assert env.upstream.asked == ["www.public.test"]
    env.clock.now += 51
    await env.ask("www.public.test", "A")
    assert env.upstream.asked == ["www.public.test"] * 2  # expired: asked again


async def test_negative_answers_are_kept_for_the_soa_minimum(env: Env) -> None:
    missing = await env.ask("nothing.public.test", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    env.clock.now += 29
    await env.ask("nothing.public.test", "A")
    assert env.upstream.asked == ["nothing.public.test"]  # RFC 2308 §5: min(300, 30)
    env.clock.now += 2
    await env.ask("nothing.public.test", "A")
    assert env.upstream.asked == ["nothing.public.test"] * 2


async def test_concurrent_identical_queries_cost_one_upstream_query(env: Env) -> None:
    env.upstream.delay = 0.1
    answers = await asyncio.gather(*(env.ask("www.public.test", "A") for _ in range(50)))
    assert {tuple(_addresses(a)) for a in answers} == {(PUBLIC,)}
    assert env.upstream.asked == ["www.public.test"]


async def test_a_name_that_becomes_a_resources_is_answered_as_one(env: Env) -> None:
    assert _addresses(await env.ask("www.public.test", "A")) == [PUBLIC]
    env.resources.upsert(_r("pub", "**.public.test"))
    env.stub.resources_changed()
    answer = await env.ask("www.public.test", "A")
    assert all(ipaddress.ip_address(x) in PROXY_V4 for x in _addresses(answer))


async def test_any_for_a_resource_name_is_both_families_proxy_addresses(env: Env) -> None:
    answer = await env.ask("app.corp.test", "ANY")
    assert {rrset.rdtype for rrset in answer.answer} == {dns.rdatatype.A, dns.rdatatype.AAAA}
    assert len(_addresses(answer)) == 8
    assert all(
        ipaddress.ip_address(x) in PROXY_V4 or ipaddress.ip_address(x) in PROXY_V6
        for x in _addresses(answer)
    )
    assert env.forwarded == []
    only_v4 = await env.ask("v4.corp.test", "ANY")
    assert {rrset.rdtype for rrset in only_v4.answer} == {dns.rdatatype.A}


@pytest.mark.parametrize("rdtype", ["MX", "CNAME"])
async def test_a_gateway_answer_never_carries_a_real_address(env: Env, rdtype: str) -> None:
    answer = await env.ask("db.corp.test", rdtype)
    assert env.forwarded == [("star", "db.corp.test")]
    assert answer.answer
    assert answer.answer[0].rdtype == dns.rdatatype.from_text(rdtype)
    for section in (answer.answer, answer.authority, answer.additional):
        assert all(rrset.rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA) for rrset in section)


async def test_ptr_of_a_proxy_address_is_its_name(env: Env) -> None:
    proxy = _addresses(await env.ask("app.corp.test", "AAAA"))[2]
    ptr = await env.ask(dns.reversename.from_address(proxy).to_text(), "PTR")
    assert [str(r.target) for rrset in ptr.answer for r in rrset] == ["app.corp.test."]
    free = dns.reversename.from_address("100.127.0.1").to_text()
    assert (await env.ask(free, "PTR")).rcode() == dns.rcode.NXDOMAIN
    assert env.upstream.asked == []  # the proxy ranges never go upstream
    await env.ask(dns.reversename.from_address("192.0.2.1").to_text(), "PTR")
    assert env.upstream.asked == ["1.2.0.192.in-addr.arpa"]


async def test_a_large_answer_over_udp_is_truncated_and_whole_over_tcp(env: Env) -> None:
    query = dns.message.make_query("big.public.test", "A", use_edns=False)
    udp = await env.stub.answer(query.to_wire())
    assert udp is not None
    assert len(udp) <= 512
    assert dns.message.from_wire(udp).flags & dns.flags.TC
    tcp = await env.stub.answer(query.to_wire(), tcp=True)
    assert tcp is not None
    assert len(_addresses(dns.message.from_wire(tcp))) == 59


async def test_what_is_not_a_query_is_not_answered_or_is_a_format_error(env: Env) -> None:
    assert await env.stub.answer(b"") is None
    assert await env.stub.answer(b"\x00\x01\x80" + bytes(9)) is None  # a response
    bad = await env.stub.answer(b"\x12\x34\x01\x00\x00\x01" + b"\xff" * 10)
    assert bad is not None
    assert bad[:2] == b"\x12\x34"
    assert bad[3] & 0x0F == dns.rcode.FORMERR


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=120))
async def test_garbage_never_raises(env: Env, data: bytes) -> None:
    answer = await env.stub.answer(data)
    assert answer is None or isinstance(answer, bytes)
    assert env.forwarded == []


async def test_the_udp_socket_answers_many_askers_from_cache_and_upstream(env: Env) -> None:
    """Queries from many sockets at once, read in batches: each asker gets its own answer."""
    server = StubServer(env.stub, ("127.0.0.1",), port=0)
    await server.start()
    loop = asyncio.get_running_loop()
    askers = []
    try:
        address = server._udp[0].getsockname()
        names = ["app.corp.test", "www.public.test", "nothing.public.test", "web.corp.test"]
        queries = []
        for i in range(40):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(address)
            askers.append(sock)
            query = dns.message.make_query(names[i % len(names)], "A")
            queries.append(query)
        for _ in range(2):  # the first round fills the caches, the second is served from them
            for sock, query in zip(askers, queries, strict=True):
                sock.send(query.to_wire())
            for sock, query in zip(askers, queries, strict=True):
                wire = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
                answer = dns.message.from_wire(wire)
                assert answer.id == query.id
                assert answer.question[0].name == query.question[0].name
                if query.question[0].name.to_text() == "www.public.test.":
                    assert _addresses(answer) == [PUBLIC]
                elif query.question[0].name.to_text() == "nothing.public.test.":
                    assert answer.rcode() == dns.rcode.NXDOMAIN
                else:
                    assert len(_addresses(answer)) == 4
        assert sorted(set(env.upstream.asked)) == ["nothing.public.test", "www.public.test"]
        assert env.stub.stats["cached"] > 0
        assert server.dropped == 0
    finally:
        for sock in askers:
            sock.close()
        await server.close()
