"""What the ICE agent hands to its shell: datagrams, pair snapshots and events.

Events are facts (frozen dataclasses). A pair is reported as a
:class:`CandidatePair` snapshot; it does not change after it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zerogate.proto.ice.candidate import Candidate, CandidateType
from zerogate.proto.net import Endpoint

__all__ = [
    "AgentState",
    "CandidatePair",
    "Disconnected",
    "Event",
    "Failed",
    "NominatedPairRemoved",
    "PairNominated",
    "PairState",
    "RoleChanged",
    "Stats",
    "Transmit",
]


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` from the local base ``source`` to ``destination``.

    ``source`` is a host socket address (host and server-reflexive candidates)
    or a relayed address (relayed candidates): then the shell hands the
    datagram to the TURN client of that allocation, which frames it as
    ChannelData or a Send indication towards ``destination``.
    """

    source: Endpoint
    destination: Endpoint
    data: bytes


class PairState(StrEnum):
    """Candidate pair states (RFC 8445 §6.1.2.6)."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AgentState(StrEnum):
    """Where the agent is. ``FAILED``, ``DISCONNECTED`` and ``CLOSED`` are final."""

    CHECKING = "checking"  # no selected pair (yet, or again after it was removed)
    CONNECTED = "connected"  # a pair is selected and consent is fresh
    FAILED = "failed"  # every pair failed (see Failed)
    DISCONNECTED = "disconnected"  # consent expired on the selected pair (see Disconnected)
    CLOSED = "closed"  # the shell called close()


@dataclass(frozen=True, slots=True)
class CandidatePair:
    """A snapshot of one candidate pair.

    ``local`` is the candidate the checks are sent from (host, relayed, or a
    server-reflexive one standing for its base, RFC 8445 §6.1.2.4) and
    ``base`` the address they leave from. ``valid_local`` is the local
    candidate of the valid pair the checks produced (RFC 8445 §7.2.5.3.2: the
    candidate equal to the XOR-MAPPED-ADDRESS the peer saw, possibly a
    peer-reflexive one we learned); ``None`` until a check succeeded.
    ``priority`` is the §6.1.2.3 priority of the checked pair, ``valid_priority``
    that of the valid pair (0 until valid): the agent nominates by it.
    """

    local: Candidate
    remote: Candidate
    base: Endpoint
    state: PairState
    priority: int
    nominated: bool
    valid_local: Candidate | None
    valid_priority: int

    @property
    def destination(self) -> Endpoint:
        """Where datagrams on this pair are sent (the remote candidate's address)."""
        return self.remote.address

    @property
    def relayed(self) -> bool:
        """True when our side of the pair is a TURN allocation (``base`` is its relayed
        address, datagrams go through the TURN client)."""
        return self.local.type is CandidateType.RELAYED


@dataclass(frozen=True, slots=True)
class PairNominated:
    """``pair`` is now the selected pair: send WireGuard from ``pair.base`` to
    ``pair.destination``. Emitted for the first nomination and for every
    renomination (a better pair replaced the previous one)."""

    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class NominatedPairRemoved:
    """The selected ``pair`` was removed with a local or remote candidate; there is
    no selected pair until the next :class:`PairNominated` (or :class:`Failed`)."""

    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """A role conflict (RFC 8445 §7.3.1.1) made this agent switch role."""

    controlling: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """No authenticated answer on the selected ``pair`` for CONSENT_TIMEOUT (30 s,
    RFC 7675 §5.1): consent expired; the agent stopped sending. Final."""

    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class Failed:
    """Every candidate pair failed and nothing new came for the grace time. Final."""

    reason: str


Event = PairNominated | NominatedPairRemoved | RoleChanged | Disconnected | Failed


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters for status pages and metrics."""

    checks_sent: int  # connectivity, nomination and consent requests, first transmissions
    retransmits: int
    requests_answered: int  # authenticated Binding requests we answered (incl. 487)
    responses_accepted: int  # authenticated responses to our transactions
    dropped: int  # datagrams ignored: garbage, unauthenticated, unknown transaction ...
