"""A UDP proxy that delays, reorders, drops and duplicates (``tc netem`` is missing here)."""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import random
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Self

from zerogate.testing.lab import Namespace

# --------------------------------------------------------------------------- UDP impairment


@dataclass(frozen=True)
class Impairment:
    """What happens to each datagram in one direction of a :class:`UdpImpairProxy`.

    ``delay`` + uniform(0, ``jitter``) seconds of latency (a jitter larger than
    the gap between datagrams reorders them), ``loss`` and ``duplicate`` are
    probabilities in 0..1 (a duplicate gets its own random delay).
    """

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")


@dataclass
class ProxyStats:
    """Counters of one direction; ``reordered`` counts datagrams sent after a later one."""

    received: int = 0
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


class UdpImpairProxy:
    """A UDP relay inside a namespace that delays, reorders, drops and duplicates.

    It stands in for ``tc netem`` (missing here). Datagrams arriving on
    ``listen`` are sent on to ``upstream`` from a socket of their own, shaped
    by ``forward``; the upstream's answers go back to the last client seen,
    shaped by ``backward``. One daemon thread; :meth:`close` (or the lab's
    close) stops it.
    """

    def __init__(
        self,
        ns: Namespace,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        *,
        forward: Impairment = Impairment(),
        backward: Impairment = Impairment(),
        seed: int | None = None,
    ) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(listen[0]).version == 6 else socket.AF_INET
        self.forward = forward
        self.backward = backward
        self.stats_forward = ProxyStats()
        self.stats_backward = ProxyStats()
        self._rng = random.Random(seed)
        self._client_sock = ns.socket(family, socket.SOCK_DGRAM)
        self._upstream_sock = ns.socket(family, socket.SOCK_DGRAM)
        try:
            self._client_sock.bind(listen)
            self._upstream_sock.bind((listen[0], 0))
            self._upstream_sock.connect(upstream)
        except OSError:
            self._client_sock.close()
            self._upstream_sock.close()
            raise
        self.listen = self._client_sock.getsockname()[:2]
        self._client: tuple[str, int] | None = None
        self._queue: list[tuple[float, int, bool, bytes]] = []  # (due, order, to_upstream, data)
        self._order = 0
        self._last_sent_order = {True: 0, False: 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="udp-impair", daemon=True)
        ns.lab.on_close(self.close)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for sock in (self._client_sock, self._upstream_sock):
            with contextlib.suppress(OSError):
                sock.close()

    def _schedule(self, data: bytes, to_upstream: bool, now: float) -> None:
        imp, stats = (
            (self.forward, self.stats_forward)
            if to_upstream
            else (self.backward, self.stats_backward)
        )
        stats.received += 1
        if imp.loss and self._rng.random() < imp.loss:
            stats.dropped += 1
            return
        copies = 1
        if imp.duplicate and self._rng.random() < imp.duplicate:
            copies = 2
            stats.duplicated += 1
        for _ in range(copies):
            due = now + imp.delay + (self._rng.uniform(0.0, imp.jitter) if imp.jitter else 0.0)
            self._order += 1
            heapq.heappush(self._queue, (due, self._order, to_upstream, data))

    def _flush(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            _, order, to_upstream, data = heapq.heappop(self._queue)
            stats = self.stats_forward if to_upstream else self.stats_backward
            if order < self._last_sent_order[to_upstream]:
                stats.reordered += 1
            self._last_sent_order[to_upstream] = max(order, self._last_sent_order[to_upstream])
            with contextlib.suppress(OSError):
                if to_upstream:
                    self._upstream_sock.send(data)
                    self.stats_forward.sent += 1
                elif self._client is not None:
                    self._client_sock.sendto(data, self._client)
                    self.stats_backward.sent += 1

    def _loop(self) -> None:
        socks = [self._client_sock, self._upstream_sock]
        while not self._stop.is_set():
            now = time.monotonic()
            self._flush(now)
            wait = 0.1
            if self._queue:
                wait = max(0.0, min(wait, self._queue[0][0] - now))
            try:
                ready, _, _ = select.select(socks, [], [], wait)
            except (OSError, ValueError):  # closed under us
                return
            now = time.monotonic()
            for sock in ready:
                try:
                    data, addr = sock.recvfrom(65535)
                except OSError:
                    continue
                if sock is self._client_sock:
                    self._client = (addr[0], addr[1])
                    self._schedule(data, True, now)
                else:
                    self._schedule(data, False, now)
