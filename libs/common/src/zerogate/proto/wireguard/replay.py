"""Anti-replay sliding window (RFC 6479; wireguard-go replay/replay.go).

A ring of 128 blocks of 64 bits; one block is kept spare so the window is
``(128 - 1) * 64 = 8128`` counters. A counter ``c`` is accepted when
``c < limit``, it is not older than ``last - 8128``, and its bit is not set.
Moving forward clears the blocks the window slides over. Blocks are small
Python ints, so the common in-order case touches one list slot.
"""

from __future__ import annotations

from zerogate.proto.wireguard.constants import (
    REJECT_AFTER_MESSAGES,
    REPLAY_BLOCK_BITS,
    REPLAY_RING_BLOCKS,
    REPLAY_WINDOW_SIZE,
)

_BLOCK_SHIFT = REPLAY_BLOCK_BITS.bit_length() - 1  # 6
_BIT_MASK = REPLAY_BLOCK_BITS - 1  # 63
_RING_MASK = REPLAY_RING_BLOCKS - 1  # 127


class ReplayWindow:
    """Accepts each counter at most once, and none older than the window."""

    __slots__ = ("_last", "_ring")

    def __init__(self) -> None:
        self._last = 0
        self._ring = [0] * REPLAY_RING_BLOCKS

    def reset(self) -> None:
        self._last = 0
        self._ring = [0] * REPLAY_RING_BLOCKS

    def check(self, counter: int, limit: int = REJECT_AFTER_MESSAGES) -> bool:
        """Return True (and remember ``counter``) if it is fresh, else False."""
        if counter >= limit:
            return False
        ring = self._ring
        block = counter >> _BLOCK_SHIFT
        last = self._last
        if counter > last:
            current = last >> _BLOCK_SHIFT
            if block != current:
                diff = min(block - current, REPLAY_RING_BLOCKS)
                for i in range(current + 1, current + 1 + diff):
                    ring[i & _RING_MASK] = 0
            self._last = counter
        elif last - counter > REPLAY_WINDOW_SIZE:
            return False
        slot = block & _RING_MASK
        bit = 1 << (counter & _BIT_MASK)
        old = ring[slot]
        if old & bit:
            return False
        ring[slot] = old | bit
        return True
