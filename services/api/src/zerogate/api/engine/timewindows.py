"""Weekly time windows of the ``current_time`` condition, in any IANA zone.

A window value reads ``DAYS/RANGES/ZONE``:

* ``DAYS``: letters of ``MTWRFSU`` (Monday .. Sunday), each at most once, e.g. ``MTWRF``;
* ``RANGES``: ``true`` (the whole day) or comma-separated ``START-END`` ranges of
  ``H``, ``HH:MM`` or ``HH:MM:SS`` local wall-clock times, e.g. ``09:00-12:00,13:00-17:00``.
  ``END`` may be ``24:00``. A range whose end is not after its start crosses
  midnight: ``22:00-02:00`` on Friday runs from Friday 22:00 to Saturday 02:00;
* ``ZONE``: an IANA time zone key (``Europe/Berlin``, ``UTC``), which may itself
  contain ``/``.

Semantics. Each range on each listed day is the half-open interval of instants
``[first instant the zone's wall clock reads START on that day, first instant it
reads END)``. Away from DST changes that is the obvious wall-clock interval. On a
spring-forward day a boundary inside the skipped hour falls on the change itself
(``02:30`` in Europe/Berlin on the last Sunday of March is 01:00 UTC); on a
fall-back day a boundary inside the repeated hour is its first occurrence. A
condition with several values is their union (OR), and touching intervals chain:
``MTWRFSU/true/UTC`` is one uninterrupted run.

:meth:`WeeklyWindows.current_end` returns, for an instant inside a window, the end
of the contiguous run it is in, looking at most :data:`LOOKAHEAD` ahead (a run
longer than that ends at ``now + LOOKAHEAD``); outside every window it returns
``None``. Instants are materialised once per UTC day per distinct condition and
cached, so a decision is a binary search.
"""

from __future__ import annotations

import functools
import zoneinfo
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from zerogate.api.engine.errors import EngineValidationError
from zerogate.api.engine.errors import show_input as _show

__all__ = ["LOOKAHEAD", "DayTimeRanges", "WeeklyWindows", "parse_time_window"]

DAY_LETTERS: Final = "MTWRFSU"  # index = date.weekday(): Monday is 0
SECONDS_PER_DAY: Final = 86_400
LOOKAHEAD: Final = timedelta(days=7)
MAX_RANGES: Final = 48  # ranges in one value; bounds the work of materialising a day
_LOOKAHEAD_DAYS: Final = 7
# Local dates materialised around a UTC day: zones lie within UTC-12..UTC+14 and a
# range lasts under 48 h, so 3 days back and LOOKAHEAD + 3 ahead cover every run.
_MATERIALISE_BEFORE: Final = 3
_MATERIALISE_AFTER: Final = _LOOKAHEAD_DAYS + 3
_EPOCH: Final = date(1970, 1, 1)
_ALL_DAY: Final = (0, SECONDS_PER_DAY)


@functools.cache
def _zone_keys() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.lru_cache(maxsize=1024)
def zone(key: str) -> zoneinfo.ZoneInfo:
    """A cached ZoneInfo for a key already validated by :func:`parse_time_window`."""
    return zoneinfo.ZoneInfo(key)


def _parse_clock(text: str, *, value: str) -> int:
    """``H``, ``HH:MM`` or ``HH:MM:SS`` to seconds after midnight; ``24:00`` is 86400."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or any(
        not (p.isascii() and p.isdigit()) or not 1 <= len(p) <= 2 for p in parts
    ):
        raise EngineValidationError(f"not a time of day {_show(text.strip())} in {_show(value)}")
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    hours, minutes, seconds = numbers
    if minutes > 59 or seconds > 59 or hours > 24 or (hours == 24 and (minutes or seconds)):
        raise EngineValidationError(f"not a time of day {_show(text.strip())} in {_show(value)}")
    return hours * 3600 + minutes * 60 + seconds


def _format_clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


@dataclass(frozen=True, slots=True)
class DayTimeRanges:
    """One parsed window value.

    ``ranges`` are ``(start, end)`` seconds after local midnight of a listed day;
    ``end`` exceeds 86400 for a range that crosses midnight.
    """

    days: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]
    zone: str

    def text(self) -> str:
        """The canonical form of the value (parses back to an equal object)."""
        days = "".join(DAY_LETTERS[d] for d in self.days)
        if self.ranges == (_ALL_DAY,):
            ranges = "true"
        else:
            ranges = ",".join(
                f"{_format_clock(start)}-"
                + _format_clock(end - SECONDS_PER_DAY if end > SECONDS_PER_DAY else end)
                for start, end in self.ranges
            )
        return f"{days}/{ranges}/{self.zone}"


def parse_time_window(value: object) -> DayTimeRanges:
    """Parse ``DAYS/RANGES/ZONE`` (see the module docstring); ``EngineValidationError``."""
    if not isinstance(value, str):
        raise EngineValidationError(f"a time window must be a string, not {_show(value)}")
    parts = value.strip().split("/", 2)
    if len(parts) != 3:
        raise EngineValidationError(
            f"a time window reads DAYS/RANGES/ZONE, e.g. 'MTWRF/09:00-17:00/Europe/Berlin': "
            f"{_show(value)}"
        )
    days_text, ranges_text, zone_key = (p.strip() for p in parts)
    days: set[int] = set()
    if not days_text:
        raise EngineValidationError(f"no days in {_show(value)}; use letters of {DAY_LETTERS}")
    for letter in days_text.upper():
        index = DAY_LETTERS.find(letter)
        if index < 0:
            raise EngineValidationError(
                f"day {_show(letter)} is not one of {DAY_LETTERS}: {_show(value)}"
            )
        if index in days:
            raise EngineValidationError(f"day {_show(letter)} appears twice in {_show(value)}")
        days.add(index)
    if zone_key not in _zone_keys():
        raise EngineValidationError(f"unknown IANA time zone {_show(zone_key)}")
    ranges: set[tuple[int, int]] = set()
    items = ranges_text.split(",")
    if len(items) > MAX_RANGES:
        raise EngineValidationError(f"at most {MAX_RANGES} time ranges per value: {_show(value)}")
    for item in items:
        item = item.strip()
        if item.lower() == "true":
            ranges.add(_ALL_DAY)
            continue
        start_text, dash, end_text = item.partition("-")
        if not dash:
            raise EngineValidationError(
                f"not a time range START-END {_show(item)} in {_show(value)}"
            )
        start = _parse_clock(start_text, value=value)
        end = _parse_clock(end_text, value=value)
        if start == SECONDS_PER_DAY:
            raise EngineValidationError(f"a range cannot start at 24:00: {_show(value)}")
        if end == start:
            raise EngineValidationError(f"empty time range {_show(item)} in {_show(value)}")
        if end < start:  # crosses midnight into the next day
            end += SECONDS_PER_DAY
        ranges.add((start, end))
    return DayTimeRanges(tuple(sorted(days)), tuple(sorted(ranges)), zone_key)


def _wall(timestamp: int, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.fromtimestamp(timestamp, tz).replace(tzinfo=None)


def first_instant(tz: zoneinfo.ZoneInfo, day: date, seconds: int) -> int:
    """POSIX second at which the wall clock of ``tz`` first reads ``day`` + ``seconds``.

    ``seconds`` may exceed a day. An ambiguous wall time (fall back) gives its
    first occurrence; a skipped one (spring forward) gives the change itself.
    """
    naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
    early = int(naive.replace(tzinfo=tz, fold=0).timestamp())
    if _wall(early, tz) == naive:
        return early
    # A skipped wall time: fold=0 lands after the change, fold=1 before it; the
    # wall clock is monotonic in between, so bisect for the first second >= naive.
    late = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    low, high = min(early, late), max(early, late)
    while low < high:
        middle = (low + high) // 2
        if _wall(middle, tz) >= naive:
            high = middle
        else:
            low = middle + 1
    return low


@functools.lru_cache(maxsize=4096)
def _materialise(
    values: tuple[DayTimeRanges, ...], day_index: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Merged, sorted UTC runs ``(starts, ends)`` around the UTC day ``day_index``."""
    base = _EPOCH + timedelta(days=day_index)
    intervals: list[tuple[int, int]] = []
    for value in values:
        tz = zone(value.zone)
        for offset in range(-_MATERIALISE_BEFORE, _MATERIALISE_AFTER + 1):
            day = base + timedelta(days=offset)
            if day.weekday() not in value.days:
                continue
            for start, end in value.ranges:
                begin = first_instant(tz, day, start)
                finish = first_instant(tz, day, end)
                if finish > begin:
                    intervals.append((begin, finish))
    intervals.sort()
    starts: list[int] = []
    ends: list[int] = []
    for begin, finish in intervals:
        if ends and begin <= ends[-1]:
            ends[-1] = max(ends[-1], finish)
        else:
            starts.append(begin)
            ends.append(finish)
    return tuple(starts), tuple(ends)


class WeeklyWindows:
    """The union of several window values, answering "until when am I inside?"."""

    __slots__ = ("_values",)

    def __init__(self, values: Sequence[DayTimeRanges]) -> None:
        if not values:
            raise EngineValidationError("at least one time window is required")
        self._values = tuple(values)

    def current_end(self, now: datetime) -> datetime | None:
        """End of the run containing ``now`` (capped at ``now + LOOKAHEAD``), else ``None``.

        ``now`` must be timezone-aware; the answer is in UTC.
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise EngineValidationError("the decision time must be timezone-aware")
        stamp = now.timestamp()
        starts, ends = _materialise(self._values, int(stamp // SECONDS_PER_DAY))
        index = bisect_right(starts, stamp) - 1
        if index < 0 or stamp >= ends[index]:
            return None
        limit = now.astimezone(UTC) + LOOKAHEAD
        end = datetime.fromtimestamp(ends[index], UTC)
        return min(end, limit)
