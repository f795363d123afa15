"""Timing of the policy engine's hot path. Prints figures, asserts nothing.

Run: .venv/bin/python bench/bench_decide.py
"""

from __future__ import annotations

import functools
import timeit
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from zerogate.api.engine import timewindows
from zerogate.api.engine.addresses import ResourceMatcher
from zerogate.api.engine.conditions import parse_conditions
from zerogate.api.engine.decision import DecisionContext, PolicyInput, decide

RAW_POLICIES = {
    "everyone": [
        {"property": "remote_country", "operator": "is_in", "values": ["DE", "AT", "CH"]},
        {
            "property": "current_time",
            "operator": "is_in_day_of_week_time_ranges",
            "values": ["MTWRF/08:00-12:30,13:30-18:00/Europe/Berlin"],
        },
    ],
    "engineering": [
        {"property": "client_verified", "operator": "is", "values": ["true"]},
        {"property": "remote_ip", "operator": "is_not_in_cidr", "values": ["198.51.100.0/24"]},
        {
            "property": "current_time",
            "operator": "is_in_day_of_week_time_ranges",
            "values": ["MTWRF/07:00-22:00/Europe/Berlin", "SU/10:00-16:00/America/New_York"],
        },
    ],
    "contractors": [
        {"property": "remote_country", "operator": "is_not_in", "values": ["RU", "KP", "IR"]},
        {"property": "client_verified", "operator": "is", "values": ["true"]},
    ],
}


def main() -> None:
    now = datetime(2026, 11, 25, 10, 17, 3, tzinfo=UTC)
    token = now + timedelta(days=6)
    start = timeit.default_timer()
    policies = [
        PolicyInput(pid, parse_conditions(raw), disabled=False) for pid, raw in RAW_POLICIES.items()
    ]
    first_parse_us = (timeit.default_timer() - start) * 1e6
    start = timeit.default_timer()
    for raw in RAW_POLICIES.values():
        parse_conditions(raw)
    parse_us = (timeit.default_timer() - start) * 1e6
    allow_ctx = DecisionContext(ip_address("203.0.113.9"), "DE", now, True)
    deny_ctx = DecisionContext(ip_address("198.51.100.9"), "FR", now, False)

    timewindows._materialise.cache_clear()
    start = timeit.default_timer()
    decide(policies, allow_ctx, token)
    cold_us = (timeit.default_timer() - start) * 1e6

    print(f"first parse in the process (loads the zone list): {first_parse_us:.0f} us")
    print(f"parse 3 policies (7 conditions): {parse_us:.0f} us (once per policy change)")
    print(f"first decide of a UTC day (window materialisation): {cold_us:.0f} us")
    for label, context in (("allow", allow_ctx), ("deny", deny_ctx)):
        number = 50_000
        seconds = min(
            timeit.repeat(
                functools.partial(decide, policies, context, token), number=number, repeat=5
            )
        )
        per_call = seconds / number * 1e6
        print(f"decide, 3 policies, {label}: {per_call:.2f} us/call, {1e6 / per_call:,.0f}/s")

    resources: list[tuple[str, str, str | None]] = [
        (f"r{i}", "cidr", f"10.{i // 256}.{i % 256}.0/24") for i in range(2000)
    ]
    resources += [(f"d{i}", "dns", f"*.svc{i}.corp.example.com") for i in range(2000)]
    resources += [("all", "dns", "**.example.com")]
    matcher = ResourceMatcher(resources)
    number = 50_000
    ip_s = min(timeit.repeat(lambda: matcher.match_ip("10.3.77.5"), number=number, repeat=3))
    name_s = min(
        timeit.repeat(
            lambda: matcher.match_name("api.svc1234.corp.example.com"), number=number, repeat=3
        )
    )
    print(f"ResourceMatcher 4001 resources: match_ip {ip_s / number * 1e6:.2f} us, ", end="")
    print(f"match_name {name_s / number * 1e6:.2f} us")


if __name__ == "__main__":
    main()
