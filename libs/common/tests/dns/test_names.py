"""The wildcard rules the api and the client share (zerogate.proto.dns.names)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerogate.proto.dns.names import DnsPattern, NameMatcher, query_labels

RESOURCES = [
    ("double", "**.corp.example"),
    ("star", "*.corp.example"),
    ("question", "ap?.corp.example"),
    ("exact", "app.corp.example"),
    ("deep", "*.b.corp.example"),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("app.corp.example", "exact"),  # exact beats every wildcard
        ("APP.Corp.Example.", "exact"),  # any case, one trailing dot
        ("apx.corp.example", "question"),  # ? beats *
        ("web.corp.example", "star"),  # * beats **
        ("corp.example", "double"),  # ** matches the apex
        ("a.b.c.corp.example", "double"),
        ("x.b.corp.example", "deep"),  # more literal labels first among '*'
        ("corp.example.org", None),
        ("example", None),
        ("", None),
        ("a..corp.example", None),
    ],
)
def test_precedence_is_exact_then_question_then_star_then_double_star(name, expected):
    matcher = NameMatcher(RESOURCES)
    assert matcher.match(name) == expected


def test_ties_go_to_the_lowest_resource_id():
    matcher = NameMatcher([("b", "*.corp.example"), ("a", "*.corp.example")])
    assert matcher.match("x.corp.example") == "a"
    assert (
        NameMatcher([("z", "h.corp.example"), ("y", "h.corp.example")]).match("h.corp.example")
        == "y"
    )


def test_unicode_queries_are_idna_encoded():
    assert NameMatcher([("r", "**.xn--bcher-kva.example")]).match("shop.BÜCHER.example") == "r"


def test_a_pattern_that_is_no_name_is_refused():
    with pytest.raises(ValueError):
        DnsPattern.compile("a..b")
    assert not NameMatcher([])


_label = st.text(alphabet="abcxyz-", min_size=1, max_size=6).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)


@given(st.lists(_label, min_size=1, max_size=5))
def test_double_star_matches_every_name_below_and_nothing_beside(labels):
    name = ".".join([*labels, "corp", "example"])
    assert DnsPattern.compile("**.corp.example").matches(name)
    assert not DnsPattern.compile("**.corp.example").matches(name + ".evil")
    assert query_labels(name) == (*labels, "corp", "example")


@given(_label, _label)
def test_a_star_label_is_exactly_one_label(first, second):
    pattern = DnsPattern.compile("*.corp.example")
    assert pattern.matches(f"{first}.corp.example")
    assert not pattern.matches(f"{first}.{second}.corp.example")
