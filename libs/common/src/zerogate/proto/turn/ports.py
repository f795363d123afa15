"""The relay port range: which ports are in use, and EVEN-PORT reservations (RFC 8656 §7.2).

The core picks each allocation's port at random from the range (RFC 8656 §7.2
recommends it, and it makes the relayed address hard to guess), skipping ports
it uses and ports the caller says were tried already: a port the shell could
not bind (another local socket holds it) is not offered again to the same
allocation, so an Allocate fails with 508 only once every port was tried.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Container

__all__ = ["RESERVATION_LIFETIME", "RelayPorts"]

RESERVATION_LIFETIME = 30  # RFC 8656 §7.2: a reserved port is held about 30 seconds
_RANDOM_PICKS = 16  # random tries before a linear scan from a random start


class RelayPorts:
    """Ports ``low..high`` of one relay: taken, free, reserved under a token."""

    def __init__(self, low: int, high: int, rng: random.Random) -> None:
        self.low = low
        self.high = high
        self._rng = rng
        self._taken: set[int] = set()
        self._reservations: OrderedDict[bytes, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._taken) + len(self._reservations)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def pick(self, *, even: bool, pair: bool = False, exclude: Container[int] = ()) -> int | None:
        """A random free port (even when asked; with ``pair`` also port+1 free), not
        in ``exclude``; the caller takes it. None when there is none."""
        low, high = self.low, self.high
        if pair:
            high -= 1
        step = 2 if even else 1
        if even and low % 2:
            low += 1
        count = (high - low) // step + 1
        if count <= 0:
            return None
        taken = self._taken

        def free(port: int) -> bool:
            return port not in taken and port not in exclude and not (pair and port + 1 in taken)

        for _ in range(_RANDOM_PICKS):
            port = low + step * self._rng.randrange(count)
            if free(port):
                return port
        start = self._rng.randrange(count)
        for offset in range(count):
            port = low + step * ((start + offset) % count)
            if free(port):
                return port
        return None

    def in_use(self, port: int) -> bool:
        """True while ``port`` belongs to an allocation (or is reserved for one)."""
        return port in self._taken

    def take(self, port: int) -> None:
        self._taken.add(port)

    def release(self, port: int) -> None:
        self._taken.discard(port)

    # -- reservations (EVEN-PORT with the R bit) ---------------------------------
    def reserve(self, token: bytes, port: int, expires: float) -> None:
        """Hold ``port`` (already taken) for whoever presents ``token`` until ``expires``."""
        self._reservations[token] = (expires, port)

    def claim(self, token: bytes, now: float) -> int | None:
        """The port reserved under ``token`` (it stays taken), or None: unknown or expired."""
        reserved = self._reservations.pop(token, None)
        if reserved is None:
            return None
        expires, port = reserved
        if expires <= now:
            self._taken.discard(port)
            return None
        return port

    def expire(self, now: float) -> None:
        """Free the ports of reservations that lapsed by ``now``."""
        while self._reservations:
            token, (expires, port) = next(iter(self._reservations.items()))
            if expires > now:
                break
            del self._reservations[token]
            self._taken.discard(port)

    def next_expiry(self) -> float | None:
        if not self._reservations:
            return None
        return next(iter(self._reservations.values()))[0]
