"""Hypothesis properties of the engine's parsers, matchers, windows and decisions."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zerogate.api.engine.addresses import (
    DnsPattern,
    ResourceMatcher,
    normalize_address,
    validate_filters,
)
from zerogate.api.engine.conditions import parse_conditions
from zerogate.api.engine.decision import Allow, DecisionContext, Deny, PolicyInput, decide
from zerogate.api.engine.errors import EngineValidationError
from zerogate.api.engine.publicsuffix import covering_public_suffix
from zerogate.api.engine.timewindows import WeeklyWindows, parse_time_window

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# DESIGN.md address plan and the special ranges, restated so a normalised address
# can be checked against the spec rather than against the code.
NEVER_RESOURCES = [
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/11", "100.96.0.0/11", "fd00:2021:1111::/107", "fd00:2021:1111:8000::/107",
        "127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "224.0.0.0/4", "ff00::/8",
        "0.0.0.0/8", "::/128",
    )
]  # fmt: skip

RESOURCE_TYPES = st.sampled_from(["cidr", "ip", "dns", "internet", "bogus"])

_ip_text = st.one_of(
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(), st.integers(-1, 130)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
)
_dns_text = st.lists(
    st.text(alphabet="abcXYZ019-_*?üß.☃ ", min_size=0, max_size=12), min_size=1, max_size=6
).map(".".join)
ADDRESS_TEXT = st.one_of(st.none(), st.text(max_size=40), _ip_text, _dns_text)


@FUZZ
@given(RESOURCE_TYPES, ADDRESS_TEXT)
def test_normalize_address_raises_only_validation_errors_and_is_idempotent(rtype, text):
    try:
        normalized = normalize_address(rtype, text)
    except EngineValidationError:
        return
    assert normalize_address(rtype, normalized) == normalized
    if rtype == "internet":
        assert normalized is None
        return
    assert isinstance(normalized, str)
    if rtype in ("cidr", "ip"):
        network = ipaddress.ip_network(normalized)
        assert network.prefixlen > 0
        assert not any(
            network.version == bad.version and network.overlaps(bad) for bad in NEVER_RESOURCES
        )
        if rtype == "ip":
            assert network.prefixlen == network.max_prefixlen
            assert "/" not in normalized
    else:
        assert normalized == normalized.lower()
        assert normalized.isascii()
        assert len(normalized) <= 253
        labels = normalized.split(".")
        assert len(labels) >= 2
        assert all(1 <= len(label) <= 63 for label in labels)
        assert not set(labels[-1]) & set("*?")
        assert labels[-1] != "localhost"


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
TLD = st.sampled_from(["com", "org", "net", "internal", "example", "corp"])
# A registrable domain: a wildcard over a public suffix ("us.com") is refused.
SUFFIX = (
    st.tuples(LABEL, TLD)
    .map(lambda t: [t[0], t[1]])
    .filter(lambda s: covering_public_suffix(".".join(s)) is None)
)


@FUZZ
@given(SUFFIX, st.lists(LABEL, max_size=4))
def test_double_star_matches_apex_and_every_depth(suffix, prefix):
    pattern = DnsPattern.parse("**." + ".".join(suffix))
    name = ".".join(prefix + suffix)
    assert pattern.matches(name)
    assert pattern.matches(name.upper() + ".")
    # A different registrable suffix never matches.
    assert not pattern.matches(".".join([*prefix, suffix[0] + "x", suffix[1]]))


@FUZZ
@given(SUFFIX, st.lists(LABEL, max_size=4))
def test_single_star_matches_exactly_one_label(suffix, prefix):
    pattern = DnsPattern.parse("*." + ".".join(suffix))
    assert pattern.matches(".".join(prefix + suffix)) is (len(prefix) == 1)


@FUZZ
@given(SUFFIX, LABEL, st.data())
def test_question_mark_is_exactly_one_character(suffix, label, data):
    position = data.draw(st.integers(0, len(label) - 1))
    wild = label[:position] + "?" + label[position + 1 :]
    pattern = DnsPattern.parse(".".join([wild, *suffix]))
    assert pattern.matches(".".join([label, *suffix]))
    assert not pattern.matches(".".join([label + "a", *suffix]))
    assert not pattern.matches(".".join([label[:position] + label[position + 1 :], *suffix]))


@FUZZ
@given(SUFFIX, LABEL, st.data())
def test_star_inside_a_label_matches_any_infix(suffix, label, data):
    cut = data.draw(st.integers(0, len(label)))
    infix = data.draw(st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True))
    pattern = DnsPattern.parse(".".join([label[:cut] + "*" + label[cut:], *suffix]))
    grown = label[:cut] + infix + label[cut:]
    assume(len(grown) <= 63)
    assert pattern.matches(".".join([grown, *suffix]))


@SOME
@given(SUFFIX, LABEL, st.permutations(range(4)), st.integers(1, 4))
def test_precedence_exact_question_star_doublestar(suffix, label, order, keep):
    # Four resources all match the name; the one of highest precedence answers.
    name = ".".join([label, *suffix])
    question = "?" + label[1:]
    candidates = [
        ("0-exact", "dns", name),
        ("1-question", "dns", ".".join([question, *suffix])),
        ("2-star", "dns", "*." + ".".join(suffix)),
        ("3-double", "dns", "**." + ".".join(suffix)),
    ]
    present = sorted(order[:keep])
    items = [candidates[i] for i in order if i in present]
    expected = candidates[present[0]][0]
    assert ResourceMatcher(items).match_name(name) == expected


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 32)), max_size=8),
       st.ip_addresses(v=4))  # fmt: skip
def test_match_ip_is_the_longest_prefix_by_brute_force(raw, ip):
    items = []
    for rid, prefix in raw:
        network = ipaddress.ip_network(f"10.{prefix}.0.0/{max(prefix, 8)}", strict=False)
        items.append((rid, "cidr", str(network)))
    matcher = ResourceMatcher(items)
    ip = ipaddress.IPv4Address((int(ip) & 0x00FFFFFF) | (10 << 24))
    containing = [
        (-ipaddress.ip_network(addr).prefixlen, rid)
        for rid, _, addr in items
        if ip in ipaddress.ip_network(addr)
    ]
    assert matcher.match_ip(ip) == (min(containing)[1] if containing else None)


FILTER_ITEM = st.fixed_dictionaries(
    {"protocol": st.sampled_from(["tcp", "udp", "icmp", "TCP", "sctp", ""])},
    optional={
        "ports": st.one_of(
            st.none(),
            st.text(max_size=6),
            st.lists(
                st.one_of(
                    st.integers(-5, 70000),
                    st.text(alphabet="0123456789- ", max_size=11),
                    st.booleans(),
                ),
                max_size=4,
            ),
        )
    },
)


@FUZZ
@given(st.one_of(st.lists(FILTER_ITEM, max_size=4), st.text(max_size=5), st.none()))
def test_validate_filters_raises_only_validation_errors_and_is_idempotent(raw):
    try:
        normalized = validate_filters(raw)
    except EngineValidationError:
        return
    assert validate_filters(normalized) == normalized
    for item in normalized:
        for entry in item["ports"]:
            low, _, high = entry.partition("-")
            assert 1 <= int(low) <= int(high or low) <= 65535


PROPERTIES = st.sampled_from(
    ["remote_ip", "remote_country", "client_verified", "current_time", "other"]
)
OPERATORS = st.sampled_from(
    ["is_in_cidr", "is_not_in_cidr", "is_in", "is_not_in", "is", "is_in_day_of_week_time_ranges"]
)
VALUE = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["true", "DE", "us", "10.0.0.0/8", "2001:db8::/33", "M/true/UTC"]),
    st.sampled_from(["MTWRF/09:00-17:00/Europe/Berlin", "S/22-2/America/New_York", "xx"]),
    st.integers(),
)
RAW_CONDITION = st.one_of(
    st.fixed_dictionaries(
        {"property": PROPERTIES, "operator": OPERATORS, "values": st.lists(VALUE, max_size=3)}
    ),
    st.dictionaries(st.sampled_from(["property", "operator", "values", "x"]), VALUE, max_size=4),
    st.text(max_size=5),
)


@FUZZ
@given(st.one_of(st.lists(RAW_CONDITION, max_size=4), st.none(), st.text(max_size=5)))
def test_parse_conditions_raises_only_validation_errors_and_round_trips(raw):
    try:
        parsed = parse_conditions(raw)
    except EngineValidationError:
        return
    assert parse_conditions([c.as_dict() for c in parsed]) == parsed
    assert len({c.property for c in parsed}) == len(parsed)


DAYS = st.sets(st.sampled_from("MTWRFSU"), min_size=1).map(lambda s: "".join(sorted(s)))
CLOCK = st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45])).map(
    lambda t: f"{t[0]:02d}:{t[1]:02d}"
)
RANGE = st.one_of(
    st.just("true"), st.tuples(CLOCK, CLOCK).filter(lambda t: t[0] != t[1]).map("-".join)
)
DST_ZONES = [
    "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
    "Asia/Kathmandu", "Pacific/Apia", "America/Havana", "Asia/Tokyo", "Africa/Casablanca",
]  # fmt: skip
FIXED_ZONES = {"UTC": 0, "Etc/GMT-3": 3, "Etc/GMT+7": -7, "Asia/Kolkata": 5.5}
WINDOW_VALUE = st.tuples(
    DAYS, st.lists(RANGE, min_size=1, max_size=3), st.sampled_from(DST_ZONES + list(FIXED_ZONES))
).map(lambda t: f"{t[0]}/{','.join(t[1])}/{t[2]}")
INSTANT = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
TICK = timedelta(microseconds=1)
# 2026 DST changes (UTC) of some of DST_ZONES: Berlin, New York, Lord Howe (30 min),
# Santiago and Havana (at local midnight); instants near them stress the edges.
TRANSITIONS = [
    datetime.fromisoformat(t).replace(tzinfo=UTC)
    for t in (
        "2026-03-29T01:00", "2026-10-25T01:00", "2026-03-08T07:00", "2026-11-01T06:00",
        "2026-04-04T15:00", "2026-10-03T15:30", "2026-04-05T03:00", "2026-09-06T04:00",
        "2026-03-08T05:00", "2026-11-01T05:00",
    )
]  # fmt: skip
NEAR_TRANSITION = st.tuples(
    st.sampled_from(TRANSITIONS), st.integers(-4 * 3600, 4 * 3600), st.sampled_from([0, 1, 59])
).map(lambda t: t[0] + timedelta(seconds=t[1] // 60 * 60 + t[2]))
SOMETIME = st.one_of(INSTANT, NEAR_TRANSITION)


@FUZZ
@given(st.lists(WINDOW_VALUE, min_size=1, max_size=3), SOMETIME)
def test_window_end_is_the_first_instant_outside(values, now):
    windows = WeeklyWindows([parse_time_window(v) for v in values])
    end = windows.current_end(now)
    if end is None:
        return
    assert now < end <= now + timedelta(days=7)
    if end < now + timedelta(days=7):
        # The run ends here: just before it we are inside the same run, at it outside.
        assert windows.current_end(end - TICK) == end
        assert windows.current_end(end) is None
    else:
        # Capped by the look-ahead: the run goes on at least until the cap.
        assert windows.current_end(end - TICK) is not None


def _inside_by_wall_clock(value: str, now: datetime) -> bool:
    parsed = parse_time_window(value)
    local = now.astimezone(ZoneInfo(parsed.zone))
    second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    for day in parsed.days:
        for start, end in parsed.ranges:
            if local.weekday() == day and start <= second < min(end, 86400):
                return True
            if local.weekday() == (day + 1) % 7 and end > 86400 and second < end - 86400:
                return True
    return False


@FUZZ
@given(
    st.lists(
        st.tuples(
            DAYS, st.lists(RANGE, min_size=1, max_size=3), st.sampled_from(list(FIXED_ZONES))
        ),
        min_size=1,
        max_size=3,
    ).map(lambda vs: [f"{d}/{','.join(r)}/{z}" for d, r, z in vs]),
    INSTANT,
)
def test_windows_without_dst_agree_with_the_wall_clock(values, now):
    windows = WeeklyWindows([parse_time_window(v) for v in values])
    expected = any(_inside_by_wall_clock(v, now) for v in values)
    assert (windows.current_end(now) is not None) is expected


CONDITION_POOL = [
    [],
    [{"property": "client_verified", "operator": "is", "values": ["true"]}],
    [{"property": "remote_country", "operator": "is_in", "values": ["DE", "FR"]}],
    [{"property": "remote_ip", "operator": "is_not_in_cidr", "values": ["10.0.0.0/8"]}],
    [{"property": "current_time", "operator": "is_in_day_of_week_time_ranges",
      "values": ["MTWRF/09:00-17:00/Europe/Berlin"]}],
    [{"property": "current_time", "operator": "is_in_day_of_week_time_ranges",
      "values": ["MTWRFSU/06:00-22:00/America/New_York"]},
     {"property": "remote_country", "operator": "is_not_in", "values": ["US"]}],
]  # fmt: skip
PARSED_POOL = [parse_conditions(c) for c in CONDITION_POOL]
POLICY = st.tuples(
    st.sampled_from(range(len(PARSED_POOL))), st.booleans(), st.text("abc", min_size=1, max_size=3)
).map(lambda t: PolicyInput(t[2], PARSED_POOL[t[0]], t[1]))
CONTEXT = st.builds(
    DecisionContext,
    remote_ip=st.one_of(st.none(), st.ip_addresses()),
    country=st.one_of(st.none(), st.sampled_from(["DE", "FR", "US", "ZZ", "de"])),
    time=INSTANT,
    client_verified=st.booleans(),
)


@FUZZ
@given(st.lists(POLICY, max_size=6), CONTEXT, st.one_of(st.none(), INSTANT), st.randoms())
def test_decide_is_order_independent_and_respects_its_invariants(policies, context, token, rnd):
    decision = decide(policies, context, token)
    shuffled = list(policies)
    rnd.shuffle(shuffled)
    assert decide(shuffled, context, token) == decision
    enabled = [p for p in policies if not p.disabled]
    if isinstance(decision, Allow):
        winner = [p for p in enabled if p.id == decision.policy_id]
        assert winner
        assert all(c.evaluate(context)[0] for c in winner[0].conditions) or len(winner) > 1
        if token is not None:
            assert decision.expires_at is not None
            assert decision.expires_at <= token
        if decision.expires_at is not None and token is None:
            assert decision.expires_at > context.time
    else:
        assert isinstance(decision, Deny)
        assert list(decision.violated_properties) == sorted(set(decision.violated_properties))
        assert bool(decision.violated_properties) == bool(enabled)
    # Disabled policies never change the answer.
    assert decide(enabled, context, token) == decision


def _in_repeated_hour(zone: str, now: datetime) -> bool:
    """Whether the wall clock already read ``now``'s local time earlier (a fall-back rerun)."""
    tz = ZoneInfo(zone)

    def offset(at: datetime) -> timedelta:
        value = at.astimezone(tz).utcoffset()
        assert value is not None
        return value

    before, after = offset(now - timedelta(hours=2)), offset(now)
    if before <= after:
        return False
    # Find the fall-back instant between the two, to the second.
    low, high = now - timedelta(hours=2), now
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if offset(middle) == before:
            low = middle
        else:
            high = middle
    return now < high + (before - after)


@FUZZ
@given(st.lists(WINDOW_VALUE, min_size=1, max_size=2), SOMETIME)
def test_windows_with_dst_agree_with_the_wall_clock_outside_repeated_hours(values, now):
    # The module's semantics: a window is [first instant the wall clock reads START,
    # first instant it reads END). Wherever the wall clock is at a new high (every
    # instant but the second pass of a fall-back hour) that is the plain wall-clock test.
    zones = {parse_time_window(v).zone for v in values}
    assume(not any(_in_repeated_hour(z, now) for z in zones))
    windows = WeeklyWindows([parse_time_window(v) for v in values])
    expected = any(_inside_by_wall_clock(v, now) for v in values)
    assert (windows.current_end(now) is not None) is expected


def _glob_oracle(pattern: str, text: str) -> bool:
    regex = "".join({"*": ".*", "?": "."}.get(ch, re.escape(ch)) for ch in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


@FUZZ
@given(st.text(alphabet="ab*?", max_size=8), st.text(alphabet="ab", min_size=1, max_size=8))
def test_label_wildcards_agree_with_a_regex(label_pattern, label):
    assume(label_pattern and "**" not in label_pattern)
    pattern = DnsPattern.parse(f"{label_pattern}.x.example.com")
    assert pattern.matches(f"{label}.x.example.com") is _glob_oracle(label_pattern, label)


@FUZZ
@given(st.one_of(st.text(max_size=60), _dns_text, _ip_text))
def test_matcher_lookups_never_raise(query):
    matcher = ResourceMatcher(
        [
            ("a", "dns", "**.example.com"),
            ("b", "dns", "a?.*.example.org"),
            ("c", "cidr", "10.0.0.0/8"),
        ]
    )
    assert matcher.match_name(query) in (None, "a", "b")
    assert matcher.match_ip(query) in (None, "c")
