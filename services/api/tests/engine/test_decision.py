"""The decision engine: default deny, conditions, the latest expiry, token capping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from zoneinfo import ZoneInfo

import pytest

from zerogate.api.engine.conditions import parse_conditions
from zerogate.api.engine.decision import Allow, DecisionContext, Deny, PolicyInput, decide
from zerogate.api.engine.errors import EngineValidationError

# Wednesday 2026-11-25 10:00Z is 11:00 in Berlin (CET, UTC+1) and 05:00 in New York.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def ctx(
    ip: str | None = "203.0.113.7",
    country: str | None = "DE",
    time: datetime = NOW,
    verified: bool = False,
) -> DecisionContext:
    return DecisionContext(None if ip is None else ip_address(ip), country, time, verified)


def cond(prop: str, op: str, *values: str) -> dict[str, object]:
    return {"property": prop, "operator": op, "values": list(values)}


def policy(pid: str, *conditions: dict[str, object], disabled: bool = False) -> PolicyInput:
    return PolicyInput(pid, parse_conditions(list(conditions)), disabled)


def window(*values: str) -> dict[str, object]:
    return cond("current_time", "is_in_day_of_week_time_ranges", *values)


BERLIN_OFFICE = window("MTWRF/09:00-17:00/Europe/Berlin")  # ends 16:00Z today
UNTIL_19Z = window("W/00:00-19:00/UTC")


def test_no_policies_deny_with_nothing_violated():
    assert decide([], ctx(), None) == Deny(())


def test_only_disabled_policies_deny_with_nothing_violated():
    failing = policy("p1", cond("client_verified", "is", "true"), disabled=True)
    assert decide([failing, policy("p2", disabled=True)], ctx(), None) == Deny(())


def test_unconditional_policy_allows_without_expiry():
    assert decide([policy("p1")], ctx(), None) == Allow("p1", None)


def test_everyone_is_just_another_policy_from_the_callers_side():
    # The caller passes the policies of every group the actor is in, Everyone included.
    engineers = policy("engineers", cond("client_verified", "is", "true"))
    everyone = policy("everyone", cond("remote_country", "is_in", "DE", "AT"))
    assert decide([engineers, everyone], ctx(verified=False), None) == Allow("everyone", None)
    assert decide([engineers, everyone], ctx(country="FR"), None) == Deny(
        ("client_verified", "remote_country")
    )


def test_disabled_policy_is_skipped_even_when_it_would_win():
    best = policy("best", disabled=True)
    timed = policy("timed", BERLIN_OFFICE)
    assert decide([best, timed], ctx(), None) == Allow("timed", NOW.replace(hour=16))


def test_disabled_policy_does_not_report_violations():
    off = policy("off", cond("client_verified", "is", "true"), disabled=True)
    on = policy("on", cond("remote_country", "is_in", "FR"))
    assert decide([off, on], ctx(), None) == Deny(("remote_country",))


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, datetime(2026, 11, 25, 16, 0, tzinfo=UTC)),
        (datetime(2026, 11, 25, 12, 0, tzinfo=UTC), datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
        (datetime(2026, 11, 25, 20, 0, tzinfo=UTC), datetime(2026, 11, 25, 16, 0, tzinfo=UTC)),
    ],
)
def test_window_end_is_capped_by_the_token(token, expected):
    assert decide([policy("p", BERLIN_OFFICE)], ctx(), token) == Allow("p", expected)


def test_token_caps_an_unconditional_policy_and_comes_back_in_utc():
    token = datetime(2026, 11, 25, 18, 30, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    decision = decide([policy("p")], ctx(), token)
    assert decision == Allow("p", datetime(2026, 11, 25, 18, 30, tzinfo=UTC))
    assert isinstance(decision, Allow)
    assert decision.expires_at is not None
    assert decision.expires_at.utcoffset() == timedelta(0)


def test_latest_expiry_wins():
    early = policy("early", BERLIN_OFFICE)  # 16:00Z
    late = policy("late", UNTIL_19Z)  # 19:00Z
    failing = policy("failing", cond("client_verified", "is", "true"))
    for order in ([early, late, failing], [failing, late, early]):
        assert decide(order, ctx(), None) == Allow("late", NOW.replace(hour=19))


def test_no_expiry_beats_any_expiry_and_the_token_then_caps_it():
    early = policy("a-early", BERLIN_OFFICE)
    forever = policy("z-forever", cond("remote_country", "is_not_in", "RU"))
    assert decide([early, forever], ctx(), None) == Allow("z-forever", None)
    token = NOW + timedelta(hours=1)
    assert decide([early, forever], ctx(), token) == Allow("z-forever", token)


def test_ties_go_to_the_smallest_policy_id_whatever_the_order():
    a, b = policy("a", BERLIN_OFFICE), policy("b", BERLIN_OFFICE)
    assert (
        decide([b, a], ctx(), None)
        == decide([a, b], ctx(), None)
        == Allow("a", NOW.replace(hour=16))
    )
    assert decide([policy("y"), policy("x")], ctx(), None) == Allow("x", None)


def test_policy_expiry_is_the_earliest_of_its_own_windows_and_conditions():
    # One policy holds one condition per property; its expiry is its window's end.
    p = policy("p", UNTIL_19Z, cond("remote_country", "is_in", "DE"))
    assert decide([p], ctx(), None) == Allow("p", NOW.replace(hour=19))


def test_outside_the_window_is_denied():
    late = ctx(time=datetime(2026, 11, 25, 16, 0, tzinfo=UTC))
    assert decide([policy("p", BERLIN_OFFICE)], late, None) == Deny(("current_time",))


def test_violated_properties_are_sorted_and_unique_across_policies():
    p1 = policy(
        "p1",
        cond("remote_country", "is_in", "FR"),
        cond("client_verified", "is", "true"),
        window("S/true/UTC"),
    )
    p2 = policy(
        "p2", cond("remote_country", "is_in", "US"), cond("remote_ip", "is_in_cidr", "10.0.0.0/8")
    )
    assert decide([p1, p2], ctx(), None) == Deny(
        ("client_verified", "current_time", "remote_country", "remote_ip")
    )


CIDR_CASES = [
    # (operator, values, remote ip, allowed)
    ("is_in_cidr", ("203.0.113.0/24",), "203.0.113.7", True),
    ("is_in_cidr", ("203.0.113.0/24",), "203.0.114.7", False),
    ("is_in_cidr", ("198.51.100.0/24", "203.0.113.7"), "203.0.113.7", True),
    ("is_in_cidr", ("2001:db8::/32",), "2001:db8::1", True),
    ("is_in_cidr", ("2001:db8::/32",), "203.0.113.7", False),
    ("is_in_cidr", ("203.0.113.0/24",), "::ffff:203.0.113.7", True),
    ("is_in_cidr", ("0.0.0.0/0",), "8.8.8.8", True),
    ("is_in_cidr", ("0.0.0.0/0",), "2001:db8::1", False),
    ("is_not_in_cidr", ("203.0.113.0/24",), "203.0.113.7", False),
    ("is_not_in_cidr", ("203.0.113.0/24",), "198.51.100.1", True),
    ("is_not_in_cidr", ("2001:db8::/32",), "203.0.113.7", True),
    ("is_not_in_cidr", ("10.0.0.0/8", "192.168.0.0/16"), "192.168.1.1", False),
    # An unknown remote IP fails closed for both operators.
    ("is_in_cidr", ("0.0.0.0/0",), None, False),
    ("is_not_in_cidr", ("203.0.113.0/24",), None, False),
]


@pytest.mark.parametrize(("operator", "values", "ip", "allowed"), CIDR_CASES)
def test_remote_ip_condition(operator, values, ip, allowed):
    p = policy("p", cond("remote_ip", operator, *values))
    expected = Allow("p", None) if allowed else Deny(("remote_ip",))
    assert decide([p], ctx(ip=ip), None) == expected


COUNTRY_CASES = [
    ("is_in", ("DE", "AT"), "DE", True),
    ("is_in", ("de",), "de", True),
    ("is_in", ("DE",), "FR", False),
    ("is_not_in", ("RU", "KP"), "DE", True),
    ("is_not_in", ("RU",), "RU", False),
    # Unknown country: fails closed for both operators.
    ("is_in", ("DE",), None, False),
    ("is_not_in", ("RU",), None, False),
    ("is_not_in", ("RU",), "ZZ", False),  # not an ISO code
    ("is_not_in", ("RU",), "EU", False),  # not a country
    ("is_not_in", ("RU",), "", False),
    ("is_in", ("DE",), "DEU", False),  # alpha-3 is not what we compare
]


@pytest.mark.parametrize(("operator", "values", "country", "allowed"), COUNTRY_CASES)
def test_remote_country_condition(operator, values, country, allowed):
    p = policy("p", cond("remote_country", operator, *values))
    expected = Allow("p", None) if allowed else Deny(("remote_country",))
    assert decide([p], ctx(country=country), None) == expected


@pytest.mark.parametrize(("verified", "allowed"), [(True, True), (False, False)])
def test_client_verified_condition(verified, allowed):
    p = policy("p", cond("client_verified", "is", "true"))
    expected = Allow("p", None) if allowed else Deny(("client_verified",))
    assert decide([p], ctx(verified=verified), None) == expected


def test_window_across_midnight_and_dst_through_decide():
    # Saturday 22:00 New York to Sunday 04:00, across the 2026-11-01 fall-back.
    p = policy("night", window("S/22:00-04:00/America/New_York"))
    inside = ctx(time=datetime(2026, 11, 1, 6, 30, tzinfo=UTC))  # 01:30 EST, second time
    assert decide([p], inside, None) == Allow("night", datetime(2026, 11, 1, 9, 0, tzinfo=UTC))
    outside = ctx(time=datetime(2026, 11, 1, 9, 0, tzinfo=UTC))
    assert decide([p], outside, None) == Deny(("current_time",))


def test_naive_datetimes_are_refused():
    with pytest.raises(EngineValidationError):
        DecisionContext(None, None, datetime(2026, 1, 1), False)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide([policy("p")], ctx(), datetime(2026, 1, 1))
