"""ICE candidates in SDP syntax, written and read by aioice (the one module that wraps it).

Candidates travel through signaling as ``candidate:`` attribute values
(RFC 8839 §5.1). aioice's :class:`aioice.Candidate` reads and writes them; our
ICE core has its own :class:`zerogate.proto.ice.Candidate` with the same
fields, so the conversion is field by field.
"""

from __future__ import annotations

from dataclasses import asdict

import aioice

from zerogate.proto.ice import FIELDS, Candidate, InvalidCandidate


class CandidateSyntaxError(ValueError):
    """A candidate line from the peer that is not a valid UDP ICE candidate."""


def to_sdp(candidate: Candidate) -> str:
    """``candidate`` as an SDP ``candidate:`` value (without the ``a=`` prefix)."""
    return str(aioice.Candidate(**asdict(candidate)).to_sdp())


def from_sdp(line: str) -> Candidate:
    """Parse one candidate line (``a=``/``candidate:`` prefixes optional).

    Raises :class:`CandidateSyntaxError` for anything that is not a candidate.
    """
    text = line.strip()
    text = text.removeprefix("a=").removeprefix("candidate:")
    try:
        parsed = aioice.Candidate.from_sdp(text)
        return Candidate(**{name: getattr(parsed, name) for name in FIELDS})
    except (ValueError, IndexError, TypeError, InvalidCandidate) as exc:
        raise CandidateSyntaxError(f"bad candidate {line[:120]!r}: {exc}") from None
