"""ICE candidates, their priorities and foundations (RFC 8445 §5.1, §6.1.2.3).

:class:`Candidate` has exactly the fields of ``aioice.Candidate`` that matter
over UDP (``foundation component transport priority host port type
related_address related_port``), so the signaling boundary converts with
``Candidate(**{f: getattr(c, f) for f in FIELDS})`` one way and
``aioice.Candidate(**dataclasses.asdict(c))`` the other; ``type`` is a
:class:`CandidateType`, a ``str`` enum equal to the SDP token.

We have one component (WireGuard's datagrams): every candidate is component 1.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

from zerogate.proto.ice.errors import InvalidCandidate
from zerogate.proto.net import Endpoint

__all__ = [
    "COMPONENT_ID",
    "FIELDS",
    "LOCAL_PREFERENCE_MAX",
    "MAX_PRIORITY",
    "TRANSPORT_UDP",
    "TYPE_PREFERENCE",
    "Candidate",
    "CandidateType",
    "candidate_foundation",
    "candidate_priority",
    "canonical_endpoint",
    "host_candidate",
    "pair_priority",
    "relayed_candidate",
    "server_reflexive_candidate",
]


class CandidateType(StrEnum):
    """Candidate types (RFC 8445 §5.1.1), spelled as in SDP (RFC 8839 §5.1)."""

    HOST = "host"
    SERVER_REFLEXIVE = "srflx"
    PEER_REFLEXIVE = "prflx"
    RELAYED = "relay"


#: RFC 8445 §5.1.2.2: recommended type preferences.
TYPE_PREFERENCE: dict[CandidateType, int] = {
    CandidateType.HOST: 126,
    CandidateType.PEER_REFLEXIVE: 110,
    CandidateType.SERVER_REFLEXIVE: 100,
    CandidateType.RELAYED: 0,
}
LOCAL_PREFERENCE_MAX = 65535  # RFC 8445 §5.1.2.1: 0..65535, the highest for a single IP
COMPONENT_ID = 1  # RFC 8445 §4: component IDs start at 1; we have one component
MAX_COMPONENT_ID = 256  # RFC 8445 §5.1.2.1: 1..256
MAX_PRIORITY = 2**31 - 1  # RFC 8445 §5.1.2: a positive 32-bit integer, 1..2^31-1
TRANSPORT_UDP = "udp"  # RFC 8839 §5.1 (case-insensitive)
MAX_FOUNDATION_LENGTH = 32  # RFC 8839 §5.1: foundation = 1*32ice-char

#: The fields shared with ``aioice.Candidate`` (and SDP ``candidate:`` lines).
FIELDS = (
    "foundation",
    "component",
    "transport",
    "priority",
    "host",
    "port",
    "type",
    "related_address",
    "related_port",
)

_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")  # RFC 8839 §5.1: ice-char = ALPHA / DIGIT / "+" / "/"


def _canonical_ip(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidCandidate(f"not an IP literal: {host!r}") from exc
    if ip.version == 6 and ip.scope_id is not None:  # type: ignore[union-attr]
        ip = ipaddress.IPv6Address(ip.packed)
    return ip.compressed


def canonical_endpoint(endpoint: Endpoint) -> Endpoint:
    """``(ip, port)`` in the form a socket reports: dotted IPv4, compressed IPv6.

    Raises :class:`InvalidCandidate` for something that is no IP literal or port.
    """
    host, port = endpoint
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 0xFFFF:
        raise InvalidCandidate(f"bad port {port!r}")
    return (_canonical_ip(host), port)


def candidate_priority(
    candidate_type: CandidateType | str,
    local_preference: int = LOCAL_PREFERENCE_MAX,
    component: int = COMPONENT_ID,
) -> int:
    """RFC 8445 §5.1.2.1: ``2^24*(type pref) + 2^8*(local pref) + (256 - component)``."""
    if not 0 <= local_preference <= LOCAL_PREFERENCE_MAX:
        raise InvalidCandidate(f"local preference {local_preference} outside 0..65535")
    if not 1 <= component <= MAX_COMPONENT_ID:
        raise InvalidCandidate(f"component {component} outside 1..256")
    return (
        (TYPE_PREFERENCE[CandidateType(candidate_type)] << 24)
        + (local_preference << 8)
        + (256 - component)
    )


def local_preference_of(priority: int) -> int:
    """The local-preference bits of a §5.1.2.1 priority."""
    return (priority >> 8) & 0xFFFF


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 §6.1.2.3: ``2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0)``.

    ``controlling`` (G) is the priority of the controlling agent's candidate,
    ``controlled`` (D) that of the controlled agent's candidate.
    """
    return (
        (1 << 32) * min(controlling, controlled)
        + 2 * max(controlling, controlled)
        + (1 if controlling > controlled else 0)
    )


def candidate_foundation(
    candidate_type: CandidateType | str,
    base_ip: str,
    server_ip: str | None = None,
    transport: str = TRANSPORT_UDP,
) -> str:
    """RFC 8445 §5.1.1.3: equal for candidates of the same type, base IP, server and transport.

    Eight hexadecimal characters, derived from those four values only.
    """
    key = f"{CandidateType(candidate_type)}|{base_ip}|{server_ip or ''}|{transport.lower()}"
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ICE candidate (RFC 8445 §5.1), field for field as ``aioice.Candidate``.

    ``host`` and ``related_address`` are normalised to the form a socket
    reports; ``transport`` to lower case; ``type`` to a :class:`CandidateType`.
    Raises :class:`InvalidCandidate` for unusable values.
    """

    foundation: str
    component: int
    transport: str
    priority: int
    host: str
    port: int
    type: CandidateType
    related_address: str | None = None
    related_port: int | None = None

    def __post_init__(self) -> None:
        if (
            not isinstance(self.foundation, str)
            or not 1 <= len(self.foundation) <= MAX_FOUNDATION_LENGTH
            or not _ICE_CHARS.fullmatch(self.foundation)
        ):
            raise InvalidCandidate(f"bad foundation {self.foundation!r}")
        if not isinstance(self.component, int) or not 1 <= self.component <= MAX_COMPONENT_ID:
            raise InvalidCandidate(f"bad component {self.component!r}")
        if not isinstance(self.transport, str):
            raise InvalidCandidate(f"bad transport {self.transport!r}")
        if not isinstance(self.priority, int) or not 1 <= self.priority <= MAX_PRIORITY:
            raise InvalidCandidate(f"priority {self.priority!r} outside 1..2^31-1")
        try:
            kind = CandidateType(self.type)
        except ValueError as exc:
            raise InvalidCandidate(f"unknown candidate type {self.type!r}") from exc
        host, port = canonical_endpoint((self.host, self.port))
        related_address = self.related_address
        if related_address is not None:
            related_address = _canonical_ip(related_address)
        if self.related_port is not None and (
            not isinstance(self.related_port, int) or not 0 <= self.related_port <= 0xFFFF
        ):
            raise InvalidCandidate(f"bad related port {self.related_port!r}")
        object.__setattr__(self, "transport", self.transport.lower())
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "related_address", related_address)

    @property
    def address(self) -> Endpoint:
        """The candidate's transport address ``(host, port)``."""
        return (self.host, self.port)

    @property
    def related(self) -> Endpoint | None:
        """``(related_address, related_port)`` when both are present."""
        if self.related_address is None or self.related_port is None:
            return None
        return (self.related_address, self.related_port)

    @property
    def ip_version(self) -> int:
        return 6 if ":" in self.host else 4


def host_candidate(address: Endpoint, *, local_preference: int = LOCAL_PREFERENCE_MAX) -> Candidate:
    """A host candidate for a bound socket (its own base)."""
    host, port = canonical_endpoint(address)
    return Candidate(
        foundation=candidate_foundation(CandidateType.HOST, host),
        component=COMPONENT_ID,
        transport=TRANSPORT_UDP,
        priority=candidate_priority(CandidateType.HOST, local_preference),
        host=host,
        port=port,
        type=CandidateType.HOST,
    )


def server_reflexive_candidate(
    mapped: Endpoint,
    *,
    base: Endpoint,
    server_ip: str,
    local_preference: int = LOCAL_PREFERENCE_MAX,
) -> Candidate:
    """The address a STUN server saw for ``base`` (related address = the base, RFC 8839 §5.1)."""
    host, port = canonical_endpoint(mapped)
    base_host, base_port = canonical_endpoint(base)
    return Candidate(
        foundation=candidate_foundation(CandidateType.SERVER_REFLEXIVE, base_host, server_ip),
        component=COMPONENT_ID,
        transport=TRANSPORT_UDP,
        priority=candidate_priority(CandidateType.SERVER_REFLEXIVE, local_preference),
        host=host,
        port=port,
        type=CandidateType.SERVER_REFLEXIVE,
        related_address=base_host,
        related_port=base_port,
    )


def relayed_candidate(
    relayed: Endpoint,
    *,
    mapped: Endpoint,
    server_ip: str,
    local_preference: int = LOCAL_PREFERENCE_MAX,
) -> Candidate:
    """A TURN allocation's relayed address; related address = the mapped address the
    relay saw (RFC 8839 §5.1). Its base is the relayed address itself (RFC 8445 §5.1.1.2)."""
    host, port = canonical_endpoint(relayed)
    mapped_host, mapped_port = canonical_endpoint(mapped)
    return Candidate(
        foundation=candidate_foundation(CandidateType.RELAYED, host, server_ip),
        component=COMPONENT_ID,
        transport=TRANSPORT_UDP,
        priority=candidate_priority(CandidateType.RELAYED, local_preference),
        host=host,
        port=port,
        type=CandidateType.RELAYED,
        related_address=mapped_host,
        related_port=mapped_port,
    )
