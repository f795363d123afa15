"""Queries from the stub resolver to the upstream resolvers (plain DNS, RFC 1035 §4.2).

Each query goes out on a fresh socket (a new source port, and a random id:
RFC 5452's defences against forged answers), marked with the agent's
firewall mark so that, with the Internet resource on, the host's resolvers
are still reached outside the tunnel. Upstreams are tried in order, each for
:data:`ATTEMPT_TIMEOUT` seconds; a truncated UDP answer is asked again over
TCP (RFC 7766). An answer only counts when its id and question are the query's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Sequence
from typing import Final

from zerogate.proto.dns.wire import FLAG_TC, HEADER_LEN

log = logging.getLogger(__name__)

SO_MARK: Final = 36  # linux/asm-generic/socket.h
DNS_PORT: Final = 53
#: Seconds one upstream gets before the next is tried.
ATTEMPT_TIMEOUT: Final = 2.0
MAX_TCP_MESSAGE: Final = 65535


class UpstreamError(Exception):
    """No upstream answered."""


def parse_servers(items: Sequence[str]) -> list[tuple[str, int]]:
    """``"10.0.0.1"``, ``"10.0.0.1:5353"``, ``"[fd00::1]:53"`` or ``"fd00::1"`` as endpoints."""
    out: list[tuple[str, int]] = []
    for raw in items:
        text = raw.strip()
        if not text:
            continue
        port = DNS_PORT
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = int(port_text)
        else:
            host = text
        out.append((str(ipaddress.ip_address(host.split("%", 1)[0])), port))
    return out


class Upstream:
    """The upstream resolvers, asked in order."""

    def __init__(self, servers: Sequence[tuple[str, int]], *, fwmark: int | None = None) -> None:
        self.servers = list(servers)
        self.fwmark = fwmark
        self.queries = 0
        self.failures = 0

    def _socket(self, host: str, kind: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, kind)
        sock.setblocking(False)
        if self.fwmark:
            with contextlib.suppress(OSError):  # needs CAP_NET_ADMIN
                sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.fwmark)
        return sock

    async def query(self, wire: bytes) -> bytes:
        """The answer to ``wire`` (a query; its id is replaced here and restored)."""
        if not self.servers:
            raise UpstreamError("no upstream resolver")
        self.queries += 1
        for server in self.servers:
            ident = secrets.token_bytes(2)
            query = ident + wire[2:]
            try:
                answer = await asyncio.wait_for(self._udp(server, query), ATTEMPT_TIMEOUT)
                if answer[2] & FLAG_TC:
                    answer = await asyncio.wait_for(self._tcp(server, query), ATTEMPT_TIMEOUT)
            except (OSError, TimeoutError, EOFError, asyncio.IncompleteReadError):
                continue
            if _matches(query, answer):
                return wire[:2] + answer[2:]
        self.failures += 1
        raise UpstreamError("no upstream resolver answered")

    async def _udp(self, server: tuple[str, int], query: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        with self._socket(server[0], socket.SOCK_DGRAM) as sock:
            await loop.sock_connect(sock, server)
            await loop.sock_sendall(sock, query)
            while True:
                answer = await loop.sock_recv(sock, 65535)
                if len(answer) >= HEADER_LEN and answer[:2] == query[:2]:
                    return answer

    async def _tcp(self, server: tuple[str, int], query: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        with self._socket(server[0], socket.SOCK_STREAM) as sock:
            await loop.sock_connect(sock, server)
            await loop.sock_sendall(sock, len(query).to_bytes(2, "big") + query)
            head = await _read_exactly(loop, sock, 2)
            return await _read_exactly(loop, sock, int.from_bytes(head, "big"))


async def _read_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise EOFError("the upstream closed the connection")
        data += chunk
    return data


def _matches(query: bytes, answer: bytes) -> bool:
    """Same id, a response, and the same question section (RFC 5452 §4)."""
    if len(answer) < HEADER_LEN or answer[:2] != query[:2] or not answer[2] & 0x80:
        return False
    end = _question_end(query)
    if end is None:
        return True
    same = answer[HEADER_LEN:end].lower() == query[HEADER_LEN:end].lower()
    return answer[4:6] == query[4:6] and same


def _question_end(data: bytes) -> int | None:
    if data[4:6] != b"\x00\x01":
        return None
    pos = HEADER_LEN
    while pos < len(data):
        length = data[pos]
        if length == 0:
            return pos + 5 if pos + 5 <= len(data) else None
        if length > 63:
            return None
        pos += length + 1
    return None
