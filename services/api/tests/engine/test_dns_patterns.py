"""DNS wildcard semantics and precedence (exact > ? > * > **)."""

from __future__ import annotations

import pytest

from zerogate.api.engine.addresses import DnsPattern, ResourceMatcher

MATCHES = [
    # (pattern, name, matches?)
    ("example.com", "example.com", True),
    ("example.com", "EXAMPLE.com.", True),
    ("example.com", "a.example.com", False),
    # '*' is characters within one label: a whole-label '*' is exactly one label.
    ("*.example.com", "a.example.com", True),
    ("*.example.com", "A.Example.Com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False),
    ("*.example.com", "a.example.org", False),
    ("web*.example.com", "web.example.com", True),  # zero characters
    ("web*.example.com", "web-01.example.com", True),
    ("web*.example.com", "api.example.com", False),
    ("*-prod.example.com", "db-prod.example.com", True),
    ("*-prod.example.com", "db-staging.example.com", False),
    ("a*b*c.example.com", "abc.example.com", True),
    ("a*b*c.example.com", "axxbyyc.example.com", True),
    ("a*b*c.example.com", "axxbyy.example.com", False),
    ("a.*.example.com", "a.b.example.com", True),
    ("a.*.example.com", "a.example.com", False),
    # '?' is exactly one character.
    ("?.example.com", "a.example.com", True),
    ("?.example.com", "ab.example.com", False),
    ("app-?.example.com", "app-1.example.com", True),
    ("app-?.example.com", "app-.example.com", False),
    ("app-?.example.com", "app-12.example.com", False),
    ("??.example.com", "ab.example.com", True),
    ("??.example.com", "a.example.com", False),
    ("?*.example.com", "a.example.com", True),
    ("?*.example.com", "abc.example.com", True),
    # '**' is zero or more whole labels: the apex and every depth.
    ("**.example.com", "example.com", True),
    ("**.example.com", "a.example.com", True),
    ("**.example.com", "a.b.c.d.example.com", True),
    ("**.example.com", "badexample.com", False),
    ("**.example.com", "example.com.evil.org", False),
    ("**.example.com", "com", False),
    ("a.**.example.com", "a.example.com", True),
    ("a.**.example.com", "a.x.y.example.com", True),
    ("a.**.example.com", "b.x.example.com", False),
    ("**.b.**.example.com", "b.example.com", True),
    ("**.b.**.example.com", "x.b.y.z.example.com", True),
    ("**.b.**.example.com", "x.c.example.com", False),
    # Unicode queries are IDNA-encoded before matching.
    ("**.xn--bcher-kva.de", "shop.BÜCHER.de", True),
    ("bücher.de", "xn--bcher-kva.de", True),
    # Names that are not names never match.
    ("*.example.com", "", False),
    ("*.example.com", "a..example.com", False),
    ("*.example.com", ("a" * 64) + ".example.com", False),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), MATCHES)
def test_pattern_matches(pattern, name, expected):
    assert DnsPattern.parse(pattern).matches(name) is expected


def test_pattern_kind_and_text():
    assert DnsPattern.parse("A.Example.com").pattern == "a.example.com"
    assert not DnsPattern.parse("a.example.com").is_wildcard
    assert DnsPattern.parse("?.example.com").is_wildcard
    kinds = [DnsPattern.parse(p).kind for p in ("a.b.c", "?.b.c", "*.b.c", "**.b.c", "?*.b.c")]
    assert kinds == [0, 1, 2, 3, 2]


PRECEDENCE_RESOURCES = [
    ("exact", "dns", "app.example.com"),
    ("question", "dns", "ap?.example.com"),
    ("star", "dns", "*.example.com"),
    ("double", "dns", "**.example.com"),
    ("deep-double", "dns", "**.corp.example.com"),
    ("star-prefix", "dns", "db*.example.com"),
    ("other", "dns", "**.example.org"),
]

PRECEDENCE = [
    ("app.example.com", "exact"),  # exact beats every wildcard
    ("apx.example.com", "question"),  # ? beats * and **
    ("dbx.example.com", "star-prefix"),  # among '*' the more literal pattern wins
    ("zz.example.com", "star"),  # * beats **
    ("example.com", "double"),  # only ** matches the apex
    ("a.b.example.com", "double"),
    ("corp.example.com", "star"),  # '*' (one label) beats both '**'
    ("x.corp.example.com", "deep-double"),  # among '**' more literal labels win
    ("x.y.corp.example.com", "deep-double"),
    ("www.example.org", "other"),
    ("example.net", None),
]


@pytest.mark.parametrize(("name", "expected"), PRECEDENCE)
def test_match_name_precedence(name, expected):
    for items in (PRECEDENCE_RESOURCES, list(reversed(PRECEDENCE_RESOURCES))):
        assert ResourceMatcher(items).match_name(name) == expected


def test_same_pattern_twice_resolves_to_the_lowest_id():
    items = [("b", "dns", "*.example.com"), ("a", "dns", "*.Example.com."), ("c", "dns", "x.com")]
    assert ResourceMatcher(items).match_name("q.example.com") == "a"
    items = [("b", "dns", "x.example.com"), ("a", "dns", "X.example.com")]
    assert ResourceMatcher(items).match_name("x.example.com") == "a"


def test_ip_resources_do_not_answer_names():
    matcher = ResourceMatcher([("ip", "ip", "10.0.0.1"), ("dns", "dns", "**.example.com")])
    assert matcher.match_name("10.0.0.1") is None
    assert matcher.match_ip("10.0.0.1") == "ip"
    assert matcher.match_name("x.example.com") == "dns"
