"""Anti-replay sliding window (RFC 6479; wireguard-go replay/replay.go).

wireguard-go keeps a ring of 128 blocks of 64 bits and accepts a counter
``c`` when ``c < limit``, ``last - c <= 8128`` (``(128 - 1) * 64``) and ``c`` has
not been seen. We keep the same acceptance rule with one Python int as the
bitmap: bit ``i`` stands for counter ``last - i``. Moving the window forward is
a shift; counters older than the window fall off the top.
"""

from __future__ import annotations

from zerogate.proto.wireguard.constants import REJECT_AFTER_MESSAGES, REPLAY_WINDOW_SIZE

_WINDOW_MASK = (1 << (REPLAY_WINDOW_SIZE + 1)) - 1


class ReplayWindow:
    """Accepts each counter at most once, and none older than the window."""

    __slots__ = ("_bitmap", "_last")

    def __init__(self) -> None:
        self._last = 0
        self._bitmap = 0

    def reset(self) -> None:
        self._last = 0
        self._bitmap = 0

    def check(self, counter: int, limit: int = REJECT_AFTER_MESSAGES) -> bool:
        """Return True (and remember ``counter``) if it is fresh, else False."""
        if counter >= limit:
            return False
        last = self._last
        if counter > last:
            shift = counter - last
            if shift > REPLAY_WINDOW_SIZE:
                self._bitmap = 1
            else:
                self._bitmap = ((self._bitmap << shift) | 1) & _WINDOW_MASK
            self._last = counter
            return True
        offset = last - counter
        if offset > REPLAY_WINDOW_SIZE:
            return False
        bit = 1 << offset
        bitmap = self._bitmap
        if bitmap & bit:
            return False
        self._bitmap = bitmap | bit
        return True
