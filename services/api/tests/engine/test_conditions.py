"""Parsing and normalising policy conditions."""

from __future__ import annotations

import pytest

from zerogate.api.engine.conditions import (
    ClientVerifiedCondition,
    CurrentTimeCondition,
    RemoteCountryCondition,
    RemoteIpCondition,
    parse_conditions,
)
from zerogate.api.engine.errors import EngineValidationError


def cond(prop, op, *values):
    return {"property": prop, "operator": op, "values": list(values)}


NORMALISED = [
    (cond("remote_ip", "is_in_cidr", "10.0.0.5/8", "2001:DB8::/32"), RemoteIpCondition,
     ["10.0.0.0/8", "2001:db8::/32"]),
    (cond("remote_ip", "is_not_in_cidr", "192.0.2.1", "192.0.2.1/32"), RemoteIpCondition,
     ["192.0.2.1/32"]),
    (cond("remote_country", "is_in", "de", " AT ", "DE"), RemoteCountryCondition, ["DE", "AT"]),
    (cond("remote_country", "is_not_in", "KP"), RemoteCountryCondition, ["KP"]),
    (cond("client_verified", "is", "TRUE"), ClientVerifiedCondition, ["true"]),
    (cond("current_time", "is_in_day_of_week_time_ranges", "fm/9-17/UTC", "MF/09:00-17:00/UTC"),
     CurrentTimeCondition, ["MF/09:00-17:00/UTC"]),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "cls", "values"), NORMALISED)
def test_conditions_normalise(raw, cls, values):
    (parsed,) = parse_conditions([raw])
    assert type(parsed) is cls
    assert parsed.as_dict() == {**raw, "values": values}
    assert parse_conditions([parsed.as_dict()]) == (parsed,)


def test_several_properties_keep_their_order():
    raw = [cond("client_verified", "is", "true"), cond("remote_country", "is_in", "DE")]
    assert [c.property for c in parse_conditions(raw)] == ["client_verified", "remote_country"]
    assert parse_conditions([]) == ()


REFUSED = [
    ("not a list", "must be a list"),
    (["x"], "must be an object"),
    ([{"property": "remote_ip", "operator": "is_in_cidr"}], "missing ['values']"),
    ([{**cond("remote_ip", "is_in_cidr", "10.0.0.0/8"), "extra": 1}], "unknown ['extra']"),
    ([cond("remote_ip_location_region", "is_in", "DE")], "unknown condition property"),
    ([cond("auth_provider_id", "is_in", "x")], "unknown condition property"),
    ([cond("remote_ip", "is_in", "10.0.0.0/8")], "does not apply"),
    ([cond("remote_country", "is_in_cidr", "DE")], "does not apply"),
    ([cond("client_verified", "is_not", "true")], "does not apply"),
    ([cond("current_time", "is", "M/true/UTC")], "does not apply"),
    ([cond("remote_ip", "is_in_cidr")], "non-empty"),
    ([{"property": "remote_ip", "operator": "is_in_cidr", "values": "10.0.0.0/8"}], "non-empty"),
    ([{"property": "remote_ip", "operator": "is_in_cidr", "values": [10]}], "strings"),
    ([cond("remote_ip", "is_in_cidr", "10.0.0.0/33")], "longer than 32"),
    ([cond("remote_ip", "is_in_cidr", "example.com")], "not an IP"),
    ([cond("remote_country", "is_in", "XX")], "ISO 3166-1"),
    ([cond("remote_country", "is_in", "DEU")], "ISO 3166-1"),
    ([cond("remote_country", "is_in", "")], "ISO 3166-1"),
    ([cond("client_verified", "is", "false")], '["true"]'),
    ([cond("client_verified", "is", "true", "true")], '["true"]'),
    ([cond("current_time", "is_in_day_of_week_time_ranges", "M/9-17")], "DAYS/RANGES/ZONE"),
    ([cond("current_time", "is_in_day_of_week_time_ranges", "M/9-17/Nowhere")], "IANA"),
    (
        [cond("remote_country", "is_in", "DE"), cond("remote_country", "is_not_in", "FR")],
        "more than one condition on remote_country",
    ),
    ([cond("remote_country", "is_in", *(["DE"] * 1001))], "at most 1000"),
]


@pytest.mark.parametrize(("raw", "fragment"), REFUSED)
def test_conditions_refused(raw, fragment):
    with pytest.raises(EngineValidationError) as info:
        parse_conditions(raw)
    assert fragment.lower() in str(info.value).lower()


def test_bounded_sizes():
    many_windows = [f"M/{h:02d}:00-{h:02d}:30/UTC" for h in range(24)] * 3
    with pytest.raises(EngineValidationError, match="at most 64"):
        parse_conditions([cond("current_time", "is_in_day_of_week_time_ranges", *many_windows)])
    ranges = ",".join(
        f"{m // 60:02d}:{m % 60:02d}-{m // 60:02d}:{m % 60 + 1:02d}" for m in range(0, 49 * 20, 20)
    )
    with pytest.raises(EngineValidationError, match="at most 48"):
        parse_conditions([cond("current_time", "is_in_day_of_week_time_ranges", f"M/{ranges}/UTC")])
