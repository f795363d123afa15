"""DNS wildcards stop above public suffixes (issue 8): checked against the rules of
the Public Suffix List snapshot the ``publicsuffixlist`` package ships."""

from __future__ import annotations

import random

import idna
import pytest
from publicsuffixlist import PSLFILE

from zerogate.api.engine.addresses import normalize_address
from zerogate.api.engine.errors import EngineValidationError
from zerogate.api.engine.publicsuffix import covering_public_suffix, rules_as_a_labels


def _raw_rules() -> list[str]:
    with open(PSLFILE, encoding="utf-8") as source:
        return [
            line.strip().split(" ", 1)[0]
            for line in source
            if line.strip() and not line.startswith("//")
        ]


def test_the_snapshot_is_shipped_and_has_both_sections():
    with open(PSLFILE, encoding="utf-8") as source:
        text = source.read()
    assert "===BEGIN ICANN DOMAINS===" in text
    assert "===BEGIN PRIVATE DOMAINS===" in text
    assert len(_raw_rules()) > 5000


def test_every_internationalised_rule_has_one_a_label_form():
    """The package encodes its rules with IDNA 2003, our names are IDNA 2008 / UTS #46:
    for this snapshot both must give the same A-labels, or a lookup could miss."""
    unicode_labels = {
        label
        for rule in _raw_rules()
        for label in rule.lstrip("!").split(".")
        if not label.isascii()
    }
    assert unicode_labels, "the list has internationalised rules"
    for label in unicode_labels:
        assert label.encode("idna") == idna.encode(label, uts46=True), label


# A spread of the list's own rules (fixed seed), each restated as the spec: a
# wildcard over it or over any name above it is refused; one over a name
# registered under it is not.
_RULES = rules_as_a_labels()
_SAMPLE = random.Random(8).sample([r for r in _RULES if not r.startswith(("!", "*."))], 300)


@pytest.mark.parametrize("rule", _SAMPLE)
def test_wildcards_over_a_listed_suffix_are_refused_and_below_it_accepted(rule):
    for pattern in (f"**.{rule}", f"*.{rule}", f"a*.{rule}"):
        with pytest.raises(EngineValidationError, match="public suffix"):
            normalize_address("dns", pattern)
    labels = rule.split(".")
    for start in range(1, len(labels)):
        with pytest.raises(EngineValidationError, match="public suffix"):
            normalize_address("dns", "**." + ".".join(labels[start:]))
    below = f"zerogate-probe-7.{rule}"
    if covering_public_suffix(below) is None:  # not itself public by a wildcard rule
        assert normalize_address("dns", f"**.{below}") == f"**.{below}"


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        ("co.uk", "co.uk"),
        ("github.io", "github.io"),  # private section
        ("blogspot.com", "blogspot.com"),
        ("amazonaws.com", "s3.amazonaws.com"),  # the nearest suffix below it
        ("xn--p1ai", "xn--p1ai"),  # рф
        ("kobe.jp", "kobe.jp"),  # parent of the wildcard rule *.kobe.jp
        ("example.co.uk", None),
        ("city.kobe.jp", None),  # exception rule !city.kobe.jp
        ("corp", None),  # not listed: a private namespace
        ("mybucket.s3.amazonaws.com", None),
    ],
)
def test_covering_public_suffix(name, covered):
    found = covering_public_suffix(name)
    if covered == "s3.amazonaws.com":
        assert found is not None
        assert found.endswith(".amazonaws.com")
    else:
        assert found == covered


@pytest.mark.parametrize(
    "pattern", ["**.рф", "*.РФ", "**.XN--P1AI", "**.東京.jp", "**.zz", "?.de", "**.amazonaws.com."]
)
def test_unicode_case_and_unlisted_country_codes(pattern):
    with pytest.raises(EngineValidationError, match="public suffix"):
        normalize_address("dns", pattern)
