"""The replay window against wireguard-go's replay tests (replay/replay_test.go,
themselves ported from the Linux kernel), restated as behaviour, plus a model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.proto.wireguard.replay import ReplayWindow

# Restated: wireguard-go uses 128 blocks of 64 bits, one block kept spare.
WINDOW_SIZE = (128 - 1) * 64  # 8128
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
T_LIM = WINDOW_SIZE + 1

# (counter, accepted) in order, the 34 cases of TestReplay
CASES = [
    (0, True),
    (1, True),
    (1, False),
    (9, True),
    (8, True),
    (7, True),
    (7, False),
    (T_LIM, True),
    (T_LIM - 1, True),
    (T_LIM - 1, False),
    (T_LIM - 2, True),
    (2, True),
    (2, False),
    (T_LIM + 16, True),
    (3, False),
    (T_LIM + 16, False),
    (T_LIM * 4, True),
    (T_LIM * 4 - (T_LIM - 1), True),
    (10, False),
    (T_LIM * 4 - T_LIM, False),
    (T_LIM * 4 - (T_LIM + 1), False),
    (T_LIM * 4 - (T_LIM - 2), True),
    (T_LIM * 4 + 1 - T_LIM, False),
    (0, False),
    (REJECT_AFTER_MESSAGES, False),
    (REJECT_AFTER_MESSAGES - 1, True),
    (REJECT_AFTER_MESSAGES, False),
    (REJECT_AFTER_MESSAGES - 1, False),
    (REJECT_AFTER_MESSAGES - 2, True),
    (REJECT_AFTER_MESSAGES + 1, False),
    (REJECT_AFTER_MESSAGES + 2, False),
    (REJECT_AFTER_MESSAGES - 2, False),
    (REJECT_AFTER_MESSAGES - 3, True),
    (0, False),
]


def test_window_size_is_wireguard_gos() -> None:
    assert WINDOW_SIZE == 8128


def test_kernel_derived_cases() -> None:
    w = ReplayWindow()
    for number, (counter, accepted) in enumerate(CASES, 1):
        assert w.check(counter, REJECT_AFTER_MESSAGES) is accepted, (number, counter)


def _run(counters: list[int]) -> list[bool]:
    w = ReplayWindow()
    return [w.check(c, REJECT_AFTER_MESSAGES) for c in counters]


def test_bulk_1_ascending_then_zero() -> None:
    got = _run([*range(1, WINDOW_SIZE + 1), 0, 0])
    assert all(got[:-1])
    assert got[-1] is False


def test_bulk_2_ascending_from_two_then_one_then_zero() -> None:
    got = _run([*range(2, WINDOW_SIZE + 2), 1, 0])
    assert all(got[:-1])
    assert got[-1] is False


def test_bulk_3_descending() -> None:
    assert all(_run(list(range(WINDOW_SIZE + 1, 0, -1))))


def test_bulk_4_descending_then_zero_is_too_old() -> None:
    got = _run([*range(WINDOW_SIZE + 2, 1, -1), 0])
    assert all(got[:-1])
    assert got[-1] is False


def test_bulk_5_descending_then_forward_then_zero() -> None:
    got = _run([*range(WINDOW_SIZE, 0, -1), WINDOW_SIZE + 1, 0])
    assert all(got[:-1])
    assert got[-1] is False


def test_bulk_6_descending_then_zero_then_forward() -> None:
    assert all(_run([*range(WINDOW_SIZE, 0, -1), 0, WINDOW_SIZE + 1]))


def test_reset_forgets() -> None:
    w = ReplayWindow()
    assert w.check(5)
    w.reset()
    assert w.check(5)


class NaiveWindow:
    """The rule, written plainly: fresh, below the limit, and not older than the window."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.last = 0

    def check(self, c: int, limit: int) -> bool:
        if c >= limit or c in self.seen:
            return False
        if c <= self.last and self.last - c > WINDOW_SIZE:
            return False
        self.seen.add(c)
        self.last = max(self.last, c)
        return True


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=3 * WINDOW_SIZE),
            st.integers(min_value=0, max_value=60),
            st.integers(min_value=REJECT_AFTER_MESSAGES - 20_000, max_value=2**64 - 1),
        ),
        max_size=200,
    )
)
def test_matches_the_plain_rule(counters: list[int]) -> None:
    w, model = ReplayWindow(), NaiveWindow()
    for c in counters:
        assert w.check(c, REJECT_AFTER_MESSAGES) == model.check(c, REJECT_AFTER_MESSAGES), c


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=WINDOW_SIZE, max_value=2**40),
    st.integers(min_value=0, max_value=2 * WINDOW_SIZE),
)
def test_reordering_inside_the_window(last: int, back: int) -> None:
    w = ReplayWindow()
    assert w.check(last)
    c = last - back
    assert w.check(c) is (back != 0 and back <= WINDOW_SIZE)
    assert w.check(c) is False
