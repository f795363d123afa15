"""The gateway's lookups of DNS resources' names, and its DNS server for clients.

:class:`NameResolver` finds a name's real addresses for the translation of
proxy addresses (:mod:`zerogate.gateway.state`): A and AAAA are asked
separately (one family's failure does not hide the other), each with a
:data:`LOOKUP_TIMEOUT` of 10 s as Firezone's gateway does, from the site's
resolvers (``ZG_GATEWAY_DNS_UPSTREAM``, else the host's ``/etc/resolv.conf``).
Answers are cached for their TTL, but at least :data:`MIN_TTL` (Firezone
#8225: a lookup per connection overloaded the resolver) and at most
:data:`MAX_TTL`, for up to :data:`MAX_NAMES` names (least recently used go
first). A stale name keeps its addresses while it is looked up again, so
new connections never wait for a refresh; a failed refresh keeps them too.

:class:`DnsServer` listens on the gateway's tunnel addresses, port 53535
(UDP and TCP), for the queries of other types (MX, TXT, SRV, ...) that
clients' stub resolvers pass on for the resources' names. It answers only a
client that holds a DNS resource matching the name (REFUSED otherwise), by
asking the same resolvers, with every A and AAAA record taken out of the
answer (:func:`zerogate.proto.dns.proxy.drop_addresses`): the names' real
addresses stay in the site.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from zerogate.common.dnstcp import serve_connection
from zerogate.proto.dns.proxy import drop_addresses

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT: Final = 10.0
MIN_TTL: Final = 30.0
MAX_TTL: Final = 3600.0
#: A failed lookup of a name never resolved before is tried again after this long.
FAILURE_TTL: Final = 5.0
MAX_NAMES: Final = 10_000
DNS_PORT: Final = 53535
FORWARD_TIMEOUT: Final = 5.0
TCP_IDLE: Final = 10.0

#: ``on_resolved(name, ipv4 addresses, ipv6 addresses)``
OnResolved = Callable[[str, list[str], list[str]], None]


class NameResolver:
    """Cached A/AAAA lookups (see the module doc); results go to ``on_resolved``."""

    def __init__(
        self,
        on_resolved: OnResolved,
        *,
        nameservers: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_resolved = on_resolved
        self._clock = clock
        try:
            self.resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration:
            self.resolver = dns.asyncresolver.Resolver(configure=False)
        if nameservers:
            self.resolver.nameservers = list(nameservers)
        self.resolver.lifetime = LOOKUP_TIMEOUT
        self.resolver.timeout = 2.0
        self.resolver.cache = None
        # name -> (ipv4, ipv6, fresh until)
        self.cache: OrderedDict[str, tuple[list[str], list[str], float]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self.lookups = 0

    @property
    def nameservers(self) -> list[str]:
        return [str(n) for n in self.resolver.nameservers]

    def want(self, name: str) -> None:
        """Make sure ``name`` is resolved: now if unknown or stale, else nothing."""
        entry = self.cache.get(name)
        if entry is not None:
            self.cache.move_to_end(name)
            if entry[2] > self._clock():
                return
        if name in self._inflight:
            return
        task = asyncio.ensure_future(self._lookup(name))
        self._inflight[name] = task
        task.add_done_callback(lambda _t: self._inflight.pop(name, None))

    async def _lookup(self, name: str) -> None:
        self.lookups += 1
        (v4, ttl4, ok4), (v6, ttl6, ok6) = await asyncio.gather(
            self._family(name, dns.rdatatype.A), self._family(name, dns.rdatatype.AAAA)
        )
        old = self.cache.get(name)
        if old is not None:  # a failed family keeps what it had
            if not ok4:
                v4 = old[0]
            if not ok6:
                v6 = old[1]
        if ok4 or ok6:
            ttl = max(MIN_TTL, min(MAX_TTL, min(t for t in (ttl4, ttl6) if t is not None)))
        else:
            ttl = FAILURE_TTL
        self.cache[name] = (v4, v6, self._clock() + ttl)
        self.cache.move_to_end(name)
        while len(self.cache) > MAX_NAMES:
            self.cache.popitem(last=False)
        log.debug("resolved", extra={"name": name, "v4": len(v4), "v6": len(v6), "ttl": ttl})
        self._on_resolved(name, v4, v6)

    async def _family(
        self, name: str, rdtype: dns.rdatatype.RdataType
    ) -> tuple[list[str], float | None, bool]:
        """(addresses, TTL, answered): NXDOMAIN and no data are answers (empty)."""
        try:
            answer = await self.resolver.resolve(name + ".", rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
            ttl = _negative_ttl(exc)
            return [], ttl, True
        except (dns.exception.DNSException, OSError, ValueError):
            return [], None, False
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else MIN_TTL
        # In a stable order: a proxy address's index picks one of them (rrsets are sets).
        return sorted((r.address for r in answer), key=ipaddress.ip_address), ttl, True


def _negative_ttl(exc: dns.exception.DNSException) -> float:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of the negative answer (floored later)."""
    with contextlib.suppress(Exception):
        kwargs: dict[str, Any] = exc.kwargs
        responses = [kwargs["response"]] if kwargs.get("response") else []
        responses += list((kwargs.get("responses") or {}).values())
        for response in responses:
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA:
                    return float(min(rrset.ttl, rrset[0].minimum))
    return MIN_TTL


class DnsServer:
    """Port 53535 on the gateway's tunnel addresses (see the module doc)."""

    def __init__(
        self,
        addresses: Sequence[str],
        allowed: Callable[[str, str], bool],
        nameservers: Callable[[], list[str]],
        *,
        port: int = DNS_PORT,
        upstream_port: int = 53,
    ) -> None:
        self.addresses = list(addresses)
        self._allowed = allowed
        self._nameservers = nameservers
        self.port = port
        self.upstream_port = upstream_port
        self._transports: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.refused = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for address in self.addresses:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(address, self.port)
            )
            self._transports.append(transport)  # type: ignore[arg-type]
            self._servers.append(
                await asyncio.start_server(self._tcp, host=address, port=self.port)
            )

    async def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        self._transports.clear()
        self._servers.clear()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, data: bytes, source: str) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return None
        name = query.question[0].name.to_text(omit_final_dot=True)
        if not self._allowed(source, name):
            self.refused += 1
            refused = dns.message.make_response(query)
            refused.set_rcode(dns.rcode.REFUSED)
            return refused.to_wire()
        for server in self._nameservers():
            try:
                answer, _ = await dns.asyncquery.udp_with_fallback(
                    query, server, timeout=FORWARD_TIMEOUT, port=self.upstream_port
                )
            except (dns.exception.DNSException, OSError, ValueError):
                continue
            drop_addresses(answer)  # the client knows the name by its proxy addresses only
            return answer.to_wire(max_size=65535)
        failed = dns.message.make_response(query)
        failed.set_rcode(dns.rcode.SERVFAIL)
        return failed.to_wire()

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        await serve_connection(
            reader, writer, lambda query: self.answer(query, source), idle=TCP_IDLE
        )


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server.spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: Any) -> None:
        answer = await self.server.answer(data, str(addr[0]))
        if answer is not None and self.transport is not None:
            if len(answer) > 512 and self._plain(data):
                answer = _truncate(answer)
            self.transport.sendto(answer, addr)

    @staticmethod
    def _plain(data: bytes) -> bool:
        """A query without EDNS: its UDP answer must fit 512 bytes (RFC 1035 §4.2.1)."""
        return len(data) >= 12 and data[10:12] == b"\x00\x00"


def _truncate(answer: bytes) -> bytes:
    message = dns.message.from_wire(answer)
    message.answer.clear()
    message.authority.clear()
    message.additional.clear()
    message.flags |= dns.flags.TC
    return message.to_wire()
