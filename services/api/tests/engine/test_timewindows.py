"""Weekly windows: parsing, midnight crossing, DST in Europe/Berlin and America/New_York.

DST dates of 2026 restated from the zone rules (EU: last Sunday of March/October
at 01:00 UTC; US: second Sunday of March at 02:00 local, first Sunday of
November at 02:00 local):

* Europe/Berlin: 2026-03-29 01:00Z CET(+1) -> CEST(+2); 2026-10-25 01:00Z CEST -> CET.
* America/New_York: 2026-03-08 07:00Z EST(-5) -> EDT(-4); 2026-11-01 06:00Z EDT -> EST.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from zerogate.api.engine.errors import EngineValidationError
from zerogate.api.engine.timewindows import WeeklyWindows, parse_time_window


def z(text: str) -> datetime:
    """An ISO instant in UTC, e.g. ``2026-11-25T10:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def end_of(values: list[str], now: datetime) -> datetime | None:
    return WeeklyWindows([parse_time_window(v) for v in values]).current_end(now)


def test_dst_dates_restated_match_the_zone_database():
    from zoneinfo import ZoneInfo

    berlin, new_york = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
    for zone, before, after, offsets in [
        (berlin, z("2026-03-29T00:59:59"), z("2026-03-29T01:00"), (1, 2)),
        (berlin, z("2026-10-25T00:59:59"), z("2026-10-25T01:00"), (2, 1)),
        (new_york, z("2026-03-08T06:59:59"), z("2026-03-08T07:00"), (-5, -4)),
        (new_york, z("2026-11-01T05:59:59"), z("2026-11-01T06:00"), (-4, -5)),
    ]:
        assert before.astimezone(zone).utcoffset() == timedelta(hours=offsets[0])
        assert after.astimezone(zone).utcoffset() == timedelta(hours=offsets[1])


PARSED = [
    # (value, canonical text)
    ("MTWRF/09:00-17:00/Europe/Berlin", "MTWRF/09:00-17:00/Europe/Berlin"),
    ("fmw/9-17/UTC", "MWF/09:00-17:00/UTC"),
    ("S/true/UTC", "S/true/UTC"),
    ("U/TRUE/UTC", "U/true/UTC"),
    ("M/00:00-24:00/UTC", "M/true/UTC"),
    ("M/13:00-17:00, 09:00-12:00/UTC", "M/09:00-12:00,13:00-17:00/UTC"),
    ("F/22:00-02:00/America/New_York", "F/22:00-02:00/America/New_York"),
    ("F/22:00-00:00/UTC", "F/22:00-24:00/UTC"),
    ("R/08:30:15-08:45/Asia/Kolkata", "R/08:30:15-08:45/Asia/Kolkata"),
    ("R/9:5-10/UTC", "R/09:05-10:00/UTC"),
    (
        " T / 10-11 / America/Argentina/Buenos_Aires ",
        "T/10:00-11:00/America/Argentina/Buenos_Aires",
    ),
]


@pytest.mark.parametrize(("value", "canonical"), PARSED)
def test_parse_canonical(value, canonical):
    parsed = parse_time_window(value)
    assert parsed.text() == canonical
    assert parse_time_window(canonical) == parsed


REFUSED = [
    (None, "string"),
    ("MTWRF/09:00-17:00", "DAYS/RANGES/ZONE"),
    ("/09:00-17:00/UTC", "no days"),
    ("X/09:00-17:00/UTC", "not one of"),
    ("MM/09:00-17:00/UTC", "twice"),
    ("M/09:00-17:00/Mars/Olympus", "unknown IANA"),
    ("M/09:00-17:00/europe/berlin", "unknown IANA"),
    ("M/09:00-17:00/", "unknown IANA"),
    ("M/09:00-09:00/UTC", "empty"),
    ("M/24:00-02:00/UTC", "cannot start at 24:00"),
    ("M/09:00/UTC", "START-END"),
    ("M//UTC", "START-END"),
    ("M/25:00-26:00/UTC", "not a time"),
    ("M/09:60-10:00/UTC", "not a time"),
    ("M/09:00:60-10:00/UTC", "not a time"),
    ("M/24:30-10:00/UTC", "not a time"),
    ("M/9:00:00:00-10/UTC", "not a time"),
    ("M/-1-10/UTC", "not a time"),
    ("M/09:00-1a/UTC", "not a time"),
    ("M/٠٩-10/UTC", "not a time"),  # non-ASCII digits
]


@pytest.mark.parametrize(("value", "fragment"), REFUSED)
def test_parse_refused(value, fragment):
    with pytest.raises(EngineValidationError) as info:
        parse_time_window(value)
    assert fragment.lower() in str(info.value).lower()


WINDOWS = [
    # (values, now, expected end or None)
    # Wednesday 2026-11-25 in winter: Berlin is UTC+1.
    (["MTWRF/09:00-17:00/Europe/Berlin"], "2026-11-25T10:00", "2026-11-25T16:00"),
    (["MTWRF/09:00-17:00/Europe/Berlin"], "2026-11-25T08:00", "2026-11-25T16:00"),
    (["MTWRF/09:00-17:00/Europe/Berlin"], "2026-11-25T07:59:59", None),
    (["MTWRF/09:00-17:00/Europe/Berlin"], "2026-11-25T16:00", None),  # end is exclusive
    (["MTWRF/09:00-17:00/Europe/Berlin"], "2026-11-28T10:00", None),  # Saturday
    # Summer: UTC+2.
    (["MTWRF/09:00-17:00/Europe/Berlin"], "2026-07-15T10:00", "2026-07-15T15:00"),
    # Several ranges in one value.
    (["W/09:00-12:00,13:00-17:00/UTC"], "2026-11-25T12:30", None),
    (["W/09:00-12:00,13:00-17:00/UTC"], "2026-11-25T13:30", "2026-11-25T17:00"),
    # Adjacent ranges chain.
    (["W/09:00-12:00,12:00-17:00/UTC"], "2026-11-25T10:00", "2026-11-25T17:00"),
    # Across midnight: Friday 22:00 to Saturday 02:00.
    (["F/22:00-02:00/UTC"], "2026-11-27T23:00", "2026-11-28T02:00"),
    (["F/22:00-02:00/UTC"], "2026-11-28T01:00", "2026-11-28T02:00"),
    (["F/22:00-02:00/UTC"], "2026-11-28T02:00", None),
    (["F/22:00-02:00/UTC"], "2026-11-27T01:00", None),  # Thursday's night is not listed
    (["F/22:00-02:00/UTC"], "2026-11-28T23:00", None),  # Saturday evening is not listed
    (["F/22:00-00:00/UTC"], "2026-11-27T23:59:59", "2026-11-28T00:00"),
    # Values chain across days and across zones.
    (["M/20:00-24:00/UTC", "T/00:00-03:00/UTC"], "2026-11-23T21:00", "2026-11-24T03:00"),
    (["M/20:00-24:00/UTC", "T/01:00-03:00/Europe/Berlin"], "2026-11-23T21:00", "2026-11-24T02:00"),
    (["MTWRF/true/Europe/Berlin"], "2026-11-25T10:00", "2026-11-27T23:00"),
    # Several values are OR-ed.
    (
        ["M/09:00-10:00/UTC", "W/09:00-17:00/America/New_York"],
        "2026-11-25T15:00",
        "2026-11-25T22:00",
    ),
    # Europe/Berlin spring forward (2026-03-29 01:00Z): a 6 h wall-clock window lasts 5 h.
    (["U/00:00-06:00/Europe/Berlin"], "2026-03-28T23:00", "2026-03-29T04:00"),
    (["U/00:00-06:00/Europe/Berlin"], "2026-03-28T22:59:59", None),
    # ...fall back (2026-10-25 01:00Z): it lasts 7 h.
    (["U/00:00-06:00/Europe/Berlin"], "2026-10-24T22:00", "2026-10-25T05:00"),
    (["U/00:00-06:00/Europe/Berlin"], "2026-10-25T03:30", "2026-10-25T05:00"),
    # A boundary in the skipped hour falls on the change (01:00Z).
    (["U/02:30-05:00/Europe/Berlin"], "2026-03-29T01:00", "2026-03-29T03:00"),
    (["U/02:30-05:00/Europe/Berlin"], "2026-03-29T00:59:59", None),
    (["U/00:00-02:30/Europe/Berlin"], "2026-03-29T00:30", "2026-03-29T01:00"),
    (["U/00:00-02:30/Europe/Berlin"], "2026-03-29T01:00", None),
    # A boundary in the repeated hour is its first occurrence (02:30 CEST = 00:30Z).
    (["U/00:00-02:30/Europe/Berlin"], "2026-10-25T00:15", "2026-10-25T00:30"),
    (["U/00:00-02:30/Europe/Berlin"], "2026-10-25T01:15", None),
    (["U/02:30-04:00/Europe/Berlin"], "2026-10-25T00:30", "2026-10-25T03:00"),
    # America/New_York, a night window that crosses midnight and the spring change:
    # Saturday 22:00 EST (03:00Z) to Sunday 04:00 EDT (08:00Z).
    (["S/22:00-04:00/America/New_York"], "2026-03-08T03:00", "2026-03-08T08:00"),
    (["S/22:00-04:00/America/New_York"], "2026-03-08T06:30", "2026-03-08T08:00"),
    (["S/22:00-04:00/America/New_York"], "2026-03-08T08:00", None),
    # ...and the fall change: 22:00 EDT (02:00Z) to 04:00 EST (09:00Z), both 01:30s inside.
    (["S/22:00-04:00/America/New_York"], "2026-11-01T05:30", "2026-11-01T09:00"),
    (["S/22:00-04:00/America/New_York"], "2026-11-01T06:30", "2026-11-01T09:00"),
    (["S/22:00-04:00/America/New_York"], "2026-11-01T01:59:59", None),
    # Business hours the day after the US change: 09:00 EDT is 13:00Z.
    (["MTWRF/09:00-17:00/America/New_York"], "2026-03-09T13:00", "2026-03-09T21:00"),
    (["MTWRF/09:00-17:00/America/New_York"], "2026-03-09T12:59", None),
]


@pytest.mark.parametrize(("values", "now", "expected"), WINDOWS)
def test_window_end(values, now, expected):
    assert end_of(values, z(now)) == (None if expected is None else z(expected))


def test_now_in_any_zone_gives_the_same_answer():
    values = ["MTWRF/09:00-17:00/Europe/Berlin"]
    now = z("2026-11-25T10:00")
    for offset in (-11, -3, 0, 5, 14):
        shifted = now.astimezone(timezone(timedelta(hours=offset)))
        assert end_of(values, shifted) == z("2026-11-25T16:00")


def test_a_run_longer_than_the_lookahead_ends_seven_days_ahead():
    now = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    for values in (["MTWRFSU/true/UTC"], ["MTWRFSU/00:00-24:00/Asia/Tokyo"]):
        assert end_of(values, now) == now + timedelta(days=7)
    # Six full days end before the cap.
    assert end_of(["MTWRFS/true/UTC"], now) == z("2026-11-29T00:00")


def test_naive_time_is_refused():
    windows = WeeklyWindows([parse_time_window("M/true/UTC")])
    with pytest.raises(EngineValidationError, match="timezone-aware"):
        windows.current_end(datetime(2026, 11, 23, 10, 0))
    with pytest.raises(EngineValidationError):
        WeeklyWindows([])
