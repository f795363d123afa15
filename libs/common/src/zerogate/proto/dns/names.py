"""DNS names against resource patterns: the wildcard rules the api and the client share.

A DNS resource's address is a name or a pattern, already validated and
normalised by the api (lower-case ASCII, IDNA-encoded, no trailing dot):

* ``?`` matches exactly one character within a label;
* ``*`` matches zero or more characters within one label, so a label that is
  only ``*`` matches exactly one whole label;
* ``**`` is a whole label and matches zero or more whole labels, so
  ``**.example.com`` matches ``example.com`` and every name below it.

When several patterns match a name the most specific wins: exact > ``?`` >
``*`` > ``**`` (a pattern is ranked by its broadest wildcard), then more
literal labels, then more literal characters, then the pattern text and the
resource id, so the answer is deterministic (Firezone's precedence, see
``reference/firezone.md`` §1).

Queried names are normalised leniently (:func:`query_labels`): any case, one
trailing dot, unicode labels IDNA-encoded (UTS #46); something that cannot be
a DNS name matches nothing. Validation of patterns (public suffixes, reserved
names) is the api's business (``zerogate.api.engine.addresses``), which builds
on this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import idna

# RFC 1035 §2.3.4: labels 63 octets or less, names 255 octets or less on the wire,
# which is 253 characters in dotted text without the trailing dot.
MAX_LABEL_LENGTH: Final = 63
MAX_NAME_LENGTH: Final = 253
# Unicode input may shrink under UTS #46 mapping; anything longer than this cannot fit.
MAX_INPUT_LENGTH: Final = 4 * MAX_NAME_LENGTH

WILDCARD_CHARS: Final = frozenset("*?")
DOUBLE_STAR: Final = "**"

# Kinds of patterns, in precedence order (lower wins).
KIND_EXACT: Final = 0
KIND_QUESTION: Final = 1
KIND_STAR: Final = 2
KIND_DOUBLE_STAR: Final = 3


class LabelError(ValueError):
    """A label that cannot be part of a DNS name (mixed wildcards and unicode, bad IDNA)."""


def to_ascii_label(label: str) -> str:
    """One label lower-cased, or IDNA-encoded when it is not ASCII (UTS #46 mapping)."""
    if label.isascii():
        return label.lower()
    if any(ch in WILDCARD_CHARS for ch in label):
        raise LabelError("a label cannot mix wildcards and non-ASCII characters")
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise LabelError("label is not a valid internationalised label") from None


def glob_label(pattern: str, text: str) -> bool:
    """Match one label against a pattern of literal characters, ``?`` and ``*``.

    Greedy with one backtrack point: O(len(pattern) * len(text)) in the worst case.
    """
    p = t = 0
    star = -1
    mark = 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star = p
            mark = t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def query_labels(name: str) -> tuple[str, ...] | None:
    """Normalise a queried name leniently; ``None`` when it cannot be a DNS name."""
    text = name.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text or len(text) > MAX_INPUT_LENGTH:
        return None
    try:
        labels = tuple(to_ascii_label(label) for label in text.split("."))
    except LabelError:
        return None
    if any(not label or len(label) > MAX_LABEL_LENGTH for label in labels):
        return None
    if sum(len(label) for label in labels) + len(labels) - 1 > MAX_NAME_LENGTH:
        return None
    return labels


@dataclass(frozen=True, slots=True)
class DnsPattern:
    """A normalised DNS name or wildcard pattern. Build with :meth:`compile`."""

    pattern: str
    labels: tuple[str, ...] = field(repr=False)
    kind: int = field(repr=False)
    literal_labels: int = field(repr=False)
    literal_chars: int = field(repr=False)

    @classmethod
    def compile(cls, pattern: str) -> DnsPattern:
        """From an already normalised pattern (the api's ``normalize_dns_pattern``).

        Raises ``ValueError`` for text that cannot be a pattern at all.
        """
        labels = tuple(pattern.split("."))
        if not pattern or any(not label for label in labels):
            raise ValueError("not a DNS name or pattern")
        if DOUBLE_STAR in labels:
            kind = KIND_DOUBLE_STAR
        elif "*" in pattern:
            kind = KIND_STAR
        elif "?" in pattern:
            kind = KIND_QUESTION
        else:
            kind = KIND_EXACT
        literal_labels = sum(1 for label in labels if not set(label) & WILDCARD_CHARS)
        literal_chars = sum(1 for ch in pattern if ch not in WILDCARD_CHARS and ch != ".")
        return cls(pattern, labels, kind, literal_labels, literal_chars)

    @property
    def is_wildcard(self) -> bool:
        return self.kind != KIND_EXACT

    @property
    def precedence(self) -> tuple[int, int, int, str]:
        """Sort key: smaller is more specific (exact > ? > * > **, then more literal)."""
        return (self.kind, -self.literal_labels, -self.literal_chars, self.pattern)

    def matches(self, name: str) -> bool:
        """Whether the queried ``name`` (any case, trailing dot, unicode) matches."""
        labels = query_labels(name)
        return labels is not None and self.matches_labels(labels)

    def matches_labels(self, name_labels: Sequence[str]) -> bool:
        """Match already-normalised labels (lower-case ASCII)."""
        if self.kind == KIND_EXACT:
            return tuple(name_labels) == self.labels
        # Set of positions in the name reachable after consuming pattern labels.
        reachable = {0}
        count = len(name_labels)
        for label in self.labels:
            if label == DOUBLE_STAR:
                reachable = set(range(min(reachable), count + 1))
            elif set(label) & WILDCARD_CHARS:
                reachable = {
                    j + 1 for j in reachable if j < count and glob_label(label, name_labels[j])
                }
            else:
                reachable = {j + 1 for j in reachable if j < count and name_labels[j] == label}
            if not reachable:
                return False
        return count in reachable


_WildcardKey = tuple[int, int, int, str, str]


class NameMatcher:
    """Find the resource for a queried name among ``(resource_id, pattern)`` items.

    Patterns are compiled with :meth:`DnsPattern.compile`; one that is not a
    pattern at all raises ``ValueError``. :meth:`match` costs a dictionary
    lookup per suffix of the name, not a scan of every pattern.
    """

    __slots__ = ("_exact", "_wildcards")

    def __init__(self, items: Iterable[tuple[str, DnsPattern | str]]) -> None:
        exact: dict[tuple[str, ...], str] = {}
        # literal suffix (trailing labels without wildcards) -> [(key, pattern, id)]
        wildcards: dict[tuple[str, ...], list[tuple[_WildcardKey, DnsPattern, str]]] = {}
        for resource_id, raw in items:
            pattern = raw if isinstance(raw, DnsPattern) else DnsPattern.compile(raw)
            if pattern.kind == KIND_EXACT:
                exact[pattern.labels] = min(exact.get(pattern.labels, resource_id), resource_id)
                continue
            suffix: list[str] = []
            for label in reversed(pattern.labels):
                if set(label) & WILDCARD_CHARS:
                    break
                suffix.append(label)
            bucket = wildcards.setdefault(tuple(reversed(suffix)), [])
            bucket.append(((*pattern.precedence, resource_id), pattern, resource_id))
        for bucket in wildcards.values():
            bucket.sort(key=lambda entry: entry[0])
        self._exact = exact
        self._wildcards = wildcards

    def __bool__(self) -> bool:
        return bool(self._exact or self._wildcards)

    def match(self, name: str) -> str | None:
        """The resource id for a queried name; ``None`` when no pattern matches."""
        labels = query_labels(name)
        return None if labels is None else self.match_labels(labels)

    def match_labels(self, labels: tuple[str, ...]) -> str | None:
        """Like :meth:`match` for already-normalised labels."""
        found = self._exact.get(labels)
        if found is not None:
            return found
        best: tuple[_WildcardKey, str] | None = None
        for start in range(len(labels)):
            bucket = self._wildcards.get(labels[start:])
            if bucket is None:
                continue
            for key, pattern, resource_id in bucket:
                if best is not None and best[0] < key:
                    break
                if pattern.matches_labels(labels):
                    best = (key, resource_id)
                    break
        return None if best is None else best[1]
