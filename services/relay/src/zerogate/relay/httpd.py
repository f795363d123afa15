"""A tiny HTTP/1.1 responder for ``/healthz`` and ``/metrics``.

The relay's only HTTP surface is two read-only probes scraped by the platform
(kubelet, Prometheus), so it is served by a few lines over
:func:`asyncio.start_server` in the relay's own event loop instead of a web
framework: no extra task scheduling next to the packet path, nothing to
configure. Every response closes the connection. Requests larger than
:data:`MAX_REQUEST_HEAD` or slower than :data:`REQUEST_TIMEOUT` are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD: Final = 8192
REQUEST_TIMEOUT: Final = 5.0
#: Prometheus text exposition format 0.0.4.
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: ``() -> (healthy, body)``
HealthFn = Callable[[], tuple[bool, str]]
MetricsFn = Callable[[], str]

_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}


def _response(status: int, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    header = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return header if head else header + body


class HttpProbe:
    """Serves ``GET /healthz`` (200 or 503) and ``GET /metrics`` (Prometheus text)."""

    def __init__(self, health: HealthFn, metrics: MetricsFn) -> None:
        self._health = health
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with ``port=0``)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def respond(self, method: str, target: str) -> bytes:
        """The full response to one request line (kept apart from I/O for tests)."""
        path = target.split("?", 1)[0]
        head = method == "HEAD"
        if path not in ("/healthz", "/metrics"):
            return _response(404, b"not found\n", "text/plain; charset=utf-8", head=head)
        if method not in ("GET", "HEAD"):
            return _response(405, b"method not allowed\n", "text/plain; charset=utf-8")
        if path == "/healthz":
            healthy, text = self._health()
            return _response(
                200 if healthy else 503,
                text.encode() + b"\n",
                "text/plain; charset=utf-8",
                head=head,
            )
        return _response(200, self._metrics().encode(), METRICS_CONTENT_TYPE, head=head)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            if len(head) > MAX_REQUEST_HEAD:
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                return
            writer.write(self.respond(parts[0], parts[1]))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            log.debug("http probe request dropped")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
