"""Public suffixes: where a DNS wildcard resource must stop.

A wildcard such as ``**.co.uk`` would tunnel a namespace that many unrelated
parties register names under. The Public Suffix List (publicsuffix.org) names
those namespaces, in two sections: ICANN's (``co.uk``, ``ninja``, ``рф``) and
the private one, where companies list the suffixes they hand out to their
customers (``github.io``, ``blogspot.com``, ``s3.amazonaws.com``); both count.

The list comes from the ``publicsuffixlist`` package, which ships a snapshot
(its version is the snapshot's date; a newer list is a new pin in
``constraints.txt``), so nothing is downloaded at run time. Unknown top-level
labels are not taken for public suffixes (``corp``, ``internal`` and
``home.arpa`` are private namespaces an admin may cover with a wildcard).
Names are compared in their A-label (punycode) form, as
:mod:`zerogate.api.engine.addresses` normalises them; the package encodes its
internationalised rules with IDNA 2003, and a test checks that every rule of
the shipped snapshot encodes the same under IDNA 2008 / UTS #46.

Loaded once, on first use (about 10,000 rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import idna
from publicsuffixlist import PSLFILE, PublicSuffixList

__all__ = ["covering_public_suffix", "rules_as_a_labels"]


def _a_label(label: str) -> str:
    if label.isascii():
        return label.lower()
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError:
        return label.encode("idna").decode("ascii")  # IDNA 2003, as the package does


def rules_as_a_labels() -> list[str]:
    """Every rule of the shipped list (``!`` and ``*.`` kept) in A-label form."""
    rules = []
    with open(PSLFILE, encoding="utf-8") as source:
        for line in source:
            rule = line.strip().split(" ", 1)[0]
            if not rule or rule.startswith("//"):
                continue
            bang = "!" if rule.startswith("!") else ""
            rules.append(bang + ".".join(_a_label(label) for label in rule.lstrip("!").split(".")))
    return rules


@dataclass(frozen=True, slots=True)
class _Suffixes:
    psl: PublicSuffixList
    #: name → one public suffix that lies strictly below it (``amazonaws.com`` →
    #: ``s3.amazonaws.com``): a wildcard over such a name covers that suffix.
    above: dict[str, str]


@cache
def _suffixes() -> _Suffixes:
    above: dict[str, str] = {}
    for rule in rules_as_a_labels():
        name = rule.lstrip("!")
        if name.startswith("*."):
            name = name[2:]  # a wildcard rule makes its parent public too
        labels = name.split(".")
        for start in range(1, len(labels)):
            parent = ".".join(labels[start:])
            known = above.get(parent)
            if known is None or (known.count("."), known) > (name.count("."), name):
                above[parent] = name  # name the nearest suffix below

    return _Suffixes(PublicSuffixList(accept_unknown=False), above)


def covering_public_suffix(name: str) -> str | None:
    """The public suffix a wildcard over ``name`` (lower-case A-labels) would
    cover: ``name`` itself when it is one, or one that lies below it; else None."""
    suffixes = _suffixes()
    if suffixes.psl.is_public(name):
        return name
    return suffixes.above.get(name)
