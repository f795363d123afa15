"""The client's stub resolver on 100.100.111.1 and fd00:2021:1111:8000:100:100:111:0.

The host's resolver configuration points here (:mod:`zerogate.client.dnscontrol`).
Every query is answered by dnspython's message codec, or from a cache of what
it built before:

* A or AAAA for a name that matches one of the client's DNS resources (the
  api's wildcard rules and precedence): 4 IPv4 and 4 IPv6 proxy addresses
  (:mod:`zerogate.proto.dns.proxy`), only of the families the resource's
  ``ip_stack`` allows (the other family gets an empty answer), TTL 1 so that
  applications ask again rather than keep a stale address (ANY gets both
  families' proxy addresses). The first packet to one of them sets the
  resource up (:mod:`zerogate.client.agent`);
* any other type for such a name (MX, TXT, SRV, ...): asked of the resolver of
  the gateway that serves the resource, through the tunnel (``forward``), its
  A and AAAA records (glue, a CNAME chain's end) removed from every section:
  a resource's real addresses never reach the client;
* PTR for a proxy address: the name it was given to (NXDOMAIN for one given
  to no name a resource still matches: the proxy ranges never go upstream);
* every other name: the upstream resolvers (``ZG_DNS_UPSTREAM``, the
  account's, or the host's as found at start), through a cache that counts
  TTLs down (negative answers for the SOA's minimum, RFC 2308) and asks once
  for any number of identical queries in flight.

A name that matches a resource this client may not see is just another name:
it goes upstream, never to a gateway. The cache of resource answers is
emptied whenever the resources change.

The hot path serves a cached answer without the codec. A query whose bytes
after the id were seen before gets the bytes answered then, with its own id
(:attr:`StubResolver.replies`, valid until a TTL in it would change). Any
other query for a cached question (:meth:`StubResolver.cached`): its question
is found with :mod:`zerogate.proto.dns.wire`, the answer built for that exact
question (and EDNS/DO) is taken, and the id, flags, letter case and TTLs are
patched into it. Sockets (:class:`StubServer`): UDP read
and answered in batches from the event loop (up to :data:`READ_BATCH` queries
in one ``recvmmsg``, their cached answers in one ``sendmmsg``:
:class:`zerogate.dataplane.udp.DatagramBatch`), TCP with 2-byte length framing (RFC 7766),
pipelined, idle connections closed after :data:`TCP_IDLE` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from zerogate.client.state import Resources, ResourceState
from zerogate.client.upstream import Upstream, UpstreamError
from zerogate.common.dnstcp import serve_connection
from zerogate.dataplane.udp import DatagramBatch
from zerogate.proto.dns.proxy import STUB_V4, STUB_V6, drop_addresses, slot_of
from zerogate.proto.dns.wire import (
    HEADER_LEN,
    Query,
    TtlMap,
    read_query,
    reply_to,
    truncated,
    ttl_offsets,
    with_ttls,
)

log = logging.getLogger(__name__)

STUB_ADDRESSES: Final = (str(STUB_V4), str(STUB_V6))
DNS_PORT: Final = 53
#: TTL of the proxy addresses' records (Firezone: 1 s, so nothing keeps them long).
PROXY_TTL: Final = 1
#: Answers kept at most; the oldest go first.
CACHE_ENTRIES: Final = 10_000
#: Replies to exact queries kept at most (all dropped when full: rebuilt on the next hit).
REPLY_ENTRIES: Final = 20_000
#: No upstream answer is kept longer than this (seconds).
MAX_CACHE_TTL: Final = 86_400
#: Queries waiting for an answer at most (more are dropped: the application retries).
MAX_PENDING: Final = 4096
TCP_IDLE: Final = 10.0
MAX_TCP_CONNECTIONS: Final = 256
UDP_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
#: Queries read (and answers sent) per system call, and such reads per wake-up.
READ_BATCH: Final = 64
READ_ROUNDS: Final = 4
#: Largest UDP query read (a query is a question and an OPT record: far less).
QUERY_MAX: Final = 4096
#: Questions about a resource name the stub answers itself, with proxy addresses.
_ADDRESS_QUESTIONS: Final = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY})
_REVERSE: Final = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))

#: ``forward(resource_state, name, query) -> answer`` through the tunnel (None: failed).
Forward = Callable[[ResourceState, str, dns.message.Message], Awaitable[dns.message.Message | None]]


@dataclass(slots=True)
class _Entry:
    body: bytes
    ttls: TtlMap | None
    stored: float
    expires: float
    rendered: bytes
    rendered_at: int = 0


class StubResolver:
    """Answers queries (see the module doc); the sockets are :class:`StubServer`'s."""

    def __init__(
        self,
        resources: Resources,
        upstream: Upstream,
        forward: Forward,
        *,
        on_name: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resources = resources
        self.upstream = upstream
        self._forward = forward
        self._on_name = on_name
        self._clock = clock
        self._cache: dict[bytes, _Entry] = {}
        #: query bytes after the id -> (answer bytes after the id, valid until)
        self.replies: dict[bytes, tuple[bytes, float]] = {}
        self._inflight: dict[bytes, asyncio.Future[bytes | None]] = {}
        self.stats = {"queries": 0, "cached": 0, "upstream": 0, "resource": 0, "gateway": 0}

    def resources_changed(self) -> None:
        """Forget every cached answer: a name may have become a resource's, or stopped."""
        self._cache.clear()
        self.replies.clear()

    def now(self) -> float:
        return self._clock()

    # -- the hot path ----------------------------------------------------------------------
    def cached(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """A cached answer to ``data`` (that fits in UDP, unless ``tcp``) without the codec."""
        query = read_query(data)
        if query is None:
            return None
        entry = self._cache.get(query.key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.expires:
            del self._cache[query.key]
            return None
        body = entry.rendered
        valid_until = entry.expires
        if entry.ttls is not None:
            elapsed = int(now - entry.stored)
            if elapsed != entry.rendered_at:
                entry.rendered = body = with_ttls(entry.body, entry.ttls, elapsed)
                entry.rendered_at = elapsed
            valid_until = min(valid_until, entry.stored + elapsed + 1)
        if not tcp and len(body) > query.udp_size:
            return None
        self.stats["cached"] += 1
        reply = reply_to(body, data, query.end)
        if not tcp:
            if len(self.replies) >= REPLY_ENTRIES:
                self.replies.clear()
            self.replies[data[2:]] = (reply[2:], valid_until)
        return reply

    def _store(self, key: bytes, body: bytes, ttl: float | None, ttls: TtlMap | None) -> None:
        if ttl is not None and ttl <= 0:
            return
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        now = self._clock()
        expires = now + ttl if ttl is not None else float("inf")
        self._cache[key] = _Entry(body, ttls, now, expires, body)

    # -- everything else ---------------------------------------------------------------------
    async def answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The answer to one query (None: no answer is due, e.g. it was not a query)."""
        self.stats["queries"] += 1
        fast = self.cached(data, tcp=tcp)
        if fast is not None:
            return fast
        query = read_query(data)
        try:
            message = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
            return _format_error(data)
        if message.flags & dns.flags.QR:
            return None
        if message.opcode() != dns.opcode.QUERY:
            return _rcode(message, dns.rcode.NOTIMP)
        if len(message.question) != 1:
            return _rcode(message, dns.rcode.FORMERR)
        if tcp:
            udp_size = 65535
        elif query is not None:
            udp_size = query.udp_size
        else:
            udp_size = max(512, message.payload) if message.edns >= 0 else 512
        rrset = message.question[0]
        labels = _labels(rrset.name)
        state = self.resources.match_name(labels) if labels else None
        if state is not None and labels:
            return await self._resource(state, message, query, labels, udp_size)
        if rrset.rdtype == dns.rdatatype.PTR and any(
            rrset.name.is_subdomain(zone) for zone in _REVERSE
        ):
            reverse = self._reverse(message)
            if reverse is not None:
                return _fit(reverse, udp_size, query)
        return await self._upstream(message, data, query, udp_size)

    async def _resource(
        self,
        state: ResourceState,
        message: dns.message.Message,
        query: Query | None,
        labels: tuple[str, ...],
        udp_size: int,
    ) -> bytes | None:
        rrset = message.question[0]
        name = ".".join(labels)
        if rrset.rdclass != dns.rdataclass.IN:
            return _rcode(message, dns.rcode.REFUSED)
        if rrset.rdtype in _ADDRESS_QUESTIONS:
            self.stats["resource"] += 1
            ns = self.resources.name(name)
            if self._on_name is not None:
                self._on_name(name)
            response = dns.message.make_response(message)
            response.flags |= dns.flags.RA
            stack = state.resource.ip_stack
            families: list[tuple[dns.rdatatype.RdataType, list[str]]] = []  # ANY: both
            if rrset.rdtype != dns.rdatatype.AAAA and stack != "ipv6_only":
                families.append((dns.rdatatype.A, [str(a) for a in ns.v4]))
            if rrset.rdtype != dns.rdatatype.A and stack != "ipv4_only":
                families.append((dns.rdatatype.AAAA, [str(a) for a in ns.v6]))
            for rdtype, addresses in families:
                if addresses:
                    response.answer.append(
                        dns.rrset.from_text_list(rrset.name, PROXY_TTL, "IN", rdtype, addresses)
                    )
            body = response.to_wire()
            if query is not None:
                self._store(query.key, _with_id(body, 0), None, None)
            return _fit(body, udp_size, query)
        # Every other type for the name: the gateway's resolver answers, through the tunnel.
        self.stats["gateway"] += 1
        answer = await self._forward(state, name, message)
        if answer is None:
            return _rcode(message, dns.rcode.SERVFAIL)
        answer.id = message.id
        drop_addresses(answer)  # only proxy addresses stand for a resource's name here
        return _fit(answer.to_wire(max_size=65535), udp_size, query)

    def _reverse(self, message: dns.message.Message) -> bytes | None:
        """PTR for a proxy address: its name; for another address in the proxy ranges:
        NXDOMAIN; for any other address: None (the upstream answers)."""
        rrset = message.question[0]
        try:
            address = ipaddress.ip_address(dns.reversename.to_address(rrset.name))
        except (dns.exception.DNSException, ValueError, AttributeError):
            address = None
        if address is None or slot_of(address) is None:
            return None
        response = dns.message.make_response(message)
        response.flags |= dns.flags.RA
        ns = self.resources.name_at(address)
        if ns is None or ns.resource_id is None or ns.resource_id not in self.resources.states:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.append(
                dns.rrset.from_text(rrset.name, PROXY_TTL, "IN", "PTR", ns.name + ".")
            )
        return response.to_wire()

    async def _upstream(
        self, message: dns.message.Message, data: bytes, query: Query | None, udp_size: int
    ) -> bytes | None:
        self.stats["upstream"] += 1
        if query is None:
            # An unusual shape (no cache key): ask as is, answer as told.
            try:
                answer = await self.upstream.query(data)
            except UpstreamError:
                return _rcode(message, dns.rcode.SERVFAIL)
            return _fit(answer, udp_size, None)
        waiting = self._inflight.get(query.key)
        if waiting is None:
            waiting = asyncio.get_running_loop().create_future()
            self._inflight[query.key] = waiting
            try:
                body = await self._ask(message, query.key)
            except BaseException:
                waiting.set_result(None)
                raise
            finally:
                self._inflight.pop(query.key, None)
            if not waiting.done():
                waiting.set_result(body)
        else:
            body = await asyncio.shield(waiting)
        if body is None:
            return _rcode(message, dns.rcode.SERVFAIL)
        return _fit(reply_to(body, data, query.end), udp_size, query)

    async def _ask(self, message: dns.message.Message, key: bytes) -> bytes | None:
        """One upstream query for the question of ``message``; the answer is cached."""
        rrset = message.question[0]
        edns = message.edns >= 0
        ask = dns.message.make_query(
            rrset.name,
            rrset.rdtype,
            rrset.rdclass,
            use_edns=0 if edns else False,
            want_dnssec=bool(message.ednsflags & dns.flags.DO),
            payload=1232,
        )
        ask.flags = dns.flags.RD | (message.flags & dns.flags.CD)
        try:
            body = await self.upstream.query(ask.to_wire())
        except UpstreamError:
            return None
        ttls = ttl_offsets(body)
        if ttls is None:
            return None
        rcode = body[3] & 0x0F
        if rcode == dns.rcode.NOERROR and ttls.answers:
            ttl: float | None = ttls.min_ttl
        elif rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            ttl = ttls.negative_ttl
        else:
            ttl = 0  # SERVFAIL, REFUSED: not kept
        if ttl is not None and ttl > 0:
            self._store(key, body, min(float(ttl), MAX_CACHE_TTL), ttls)
        return body


# --------------------------------------------------------------------------- helpers


def _labels(name: dns.name.Name) -> tuple[str, ...] | None:
    """Lower-case ASCII labels of a queried name (None: it cannot be a resource's)."""
    out = []
    for label in name.labels:
        if not label:
            continue
        try:
            text = label.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not text.isprintable() or "." in text:
            return None
        out.append(text.lower())
    return tuple(out) if out else None


def _with_id(body: bytes, ident: int) -> bytes:
    return ident.to_bytes(2, "big") + body[2:]


def _fit(body: bytes, limit: int, query: Query | None) -> bytes:
    """``body`` if it fits, else a truncated answer (TC) asking for TCP (RFC 7766)."""
    if len(body) <= limit:
        return body
    end = query.end if query is not None else _end_of_question(body)
    return truncated(body, end)


def _end_of_question(body: bytes) -> int:
    pos = HEADER_LEN
    while pos < len(body) and body[pos]:
        pos += body[pos] + 1
    return min(len(body), pos + 5)


def _rcode(message: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    response = dns.message.make_response(message)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return response.to_wire()


def _format_error(data: bytes) -> bytes | None:
    """FORMERR for a query we cannot read, when at least its header is there (RFC 1035)."""
    if len(data) < HEADER_LEN or data[2] & 0x80:
        return None
    return data[:2] + bytes((0x80 | (data[2] & 0x79), 0x80 | dns.rcode.FORMERR)) + b"\x00" * 8


# --------------------------------------------------------------------------- sockets


class StubServer:
    """UDP and TCP port 53 on the stub addresses, answering through a :class:`StubResolver`."""

    def __init__(
        self, resolver: StubResolver, addresses: tuple[str, ...] = STUB_ADDRESSES, *,
        port: int = DNS_PORT,
    ) -> None:  # fmt: skip
        self.resolver = resolver
        self.addresses = addresses
        self.port = port
        self._udp: list[socket.socket] = []
        self._tcp: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections = 0
        self.dropped = 0

    async def start(self) -> None:
        """Bind every address (a bind failure raises OSError: the caller names the setting)."""
        self._loop = asyncio.get_running_loop()
        try:
            for address in self.addresses:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self._udp.append(sock)
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
                sock.bind((address, self.port))
                batch = DatagramBatch(sock, count=READ_BATCH, size=QUERY_MAX)
                self._loop.add_reader(sock.fileno(), self._readable, sock, batch)
                server = await asyncio.start_server(
                    self._serve_tcp, host=address, port=self.port, reuse_address=True
                )
                self._tcp.append(server)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for sock in self._udp:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        self._udp.clear()
        for server in self._tcp:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._tcp.clear()

    def _readable(self, sock: socket.socket, batch: DatagramBatch) -> None:
        resolver = self.resolver
        cached = resolver.cached
        replies = resolver.replies
        reply = batch.reply
        now = resolver.now()
        served = 0
        try:
            for _ in range(READ_ROUNDS):
                try:
                    datagrams = batch.receive()
                except OSError:
                    return
                if not datagrams:
                    return
                for index, data in enumerate(datagrams):
                    hit = replies.get(data[2:])
                    if hit is not None and hit[1] > now:
                        served += 1
                        reply(index, data[:2] + hit[0])
                        continue
                    answer = cached(data)
                    if answer is not None:
                        served += 1
                        reply(index, answer)
                        continue
                    if len(self._tasks) >= MAX_PENDING:
                        self.dropped += 1
                        continue
                    try:
                        source = batch.source(index)
                    except ValueError:
                        continue
                    task = asyncio.ensure_future(self._slow_udp(sock, data, source))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                batch.flush()
        finally:
            batch.flush()
            resolver.stats["queries"] += served

    async def _slow_udp(self, sock: socket.socket, data: bytes, source: Any) -> None:
        answer = await self._answer(data)
        if answer is not None:
            with contextlib.suppress(OSError):
                sock.sendto(answer, source)

    async def _answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        try:
            return await self.resolver.answer(data, tcp=tcp)
        except Exception:
            log.exception("the stub resolver failed on a query")
            return _format_error(data)

    async def _answer_tcp(self, data: bytes) -> bytes | None:
        return await self._answer(data, tcp=True)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await serve_connection(reader, writer, self._answer_tcp, idle=TCP_IDLE)
        finally:
            self._connections -= 1
            if task is not None:
                self._tasks.discard(task)
