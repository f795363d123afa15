"""The sans-IO ICE agent: RFC 8445 with regular nomination, RFC 7675 consent freshness.

One :class:`IceAgent` per peer connection, one component, UDP only. It shares
its UDP socket with WireGuard and the TURN client; it never gathers, never
reads the clock and never touches a socket.

How the shell drives it (and nothing else):

1. Tell it the local candidates as they are gathered
   (:meth:`IceAgent.add_local_candidate`, with the *base*: the host socket
   address for host and server-reflexive candidates, the relayed address for
   relayed ones) and the remote candidates as they trickle in from signaling
   (:meth:`IceAgent.add_remote_candidate`). Either may come first, at any
   time; :meth:`~IceAgent.remove_remote_candidate` /
   :meth:`~IceAgent.remove_local_candidate` invalidate one.
2. A STUN Binding datagram (:func:`~zerogate.proto.ice.is_ice_message`) for
   this agent arrives: :meth:`IceAgent.handle_stun` with the address it came
   from and the local base it arrived on (the socket address, or the relayed
   address when the TURN client unwrapped it from ChannelData or a Data
   indication).
3. After any input, drain :meth:`~IceAgent.poll_transmit` (send ``data``
   from ``source`` to ``destination``: from the socket, or through the TURN
   allocation whose relayed address is ``source``) and
   :meth:`~IceAgent.poll_event`, then re-arm one timer at
   :meth:`~IceAgent.poll_timeout` and call :meth:`~IceAgent.handle_timeout`
   when it fires.
4. Send WireGuard on :attr:`~IceAgent.selected_pair` (``base`` →
   ``destination``) from the first :class:`PairNominated` on; switch on every
   later one (renomination); stop on :class:`Disconnected` or :class:`Failed`.

Time: ``now`` is any monotonic clock in seconds. Addresses are ``(ip literal,
port)`` 2-tuples as a per-family socket reports them (drop an IPv6 socket's
flowinfo and scope; a dual-stack socket's ``::ffff:a.b.c.d`` forms would not
match IPv4 candidates).

Many agents on one socket: route a Binding request to the agent whose
``local_ufrag`` is :func:`~zerogate.proto.ice.target_ufrag` of it, and a
response to the agent that :meth:`~IceAgent.owns_transaction` its
:func:`~zerogate.proto.ice.transaction_id` (check the TURN client's
transactions first: its Binding and Allocate answers share the socket).

Decisions (RFC 8445 leaves them to us, or we depart from it on purpose):

* Pacing: one new check every ``ta`` (20 ms, RFC 8445 §14.2 says 50 ms; we
  have few pairs and want setup under 100 ms), triggered checks first
  (§6.1.4.2). Retransmissions are not paced: RTO 100 ms doubling to 1.6 s,
  8 retransmissions, so a check fails 9.5 s after its first transmission.
* Nomination (controlling side, §8.1.1): the best valid pair is nominated as
  soon as no pending pair could beat it, or ``nomination_settle`` (100 ms)
  after it became valid. **Renomination**: when a pair with a higher valid
  priority becomes valid later (a direct pair after a relayed one), the
  controlling agent nominates it too and both sides switch (RFC 8445 §8.1.1
  forbids this; draft-thatcher-ice-renomination and Firezone do it).
  The controlling agent only ever renominates upwards, except after the
  selected pair was removed with a candidate.
* The controlled side selects a nominated pair when it has no selected pair
  or the nominated pair's priority is higher than the selected one's. That
  also copes with aggressive nomination (aioice's controlling side puts
  USE-CANDIDATE on every check; RFC 5245's aggressive nomination: with several
  nominated pairs, use the highest-priority one) and with late retransmissions
  of an older nomination.
* Checks go on after a pair is selected, but only for pairs that could beat
  it; lower-priority pairs stay as they are.
* Consent (RFC 7675 §5.1): both sides send a Binding request on the selected
  pair every 5 s ±20 % (a fresh transaction each time, no retransmissions,
  like aioice); an authenticated success response from the pair's remote
  address to its base refreshes consent; none for 30 s gives
  :class:`Disconnected` and the agent stops (final: the shell restarts ICE).
* :class:`Failed` when there is no selected pair, nothing is pending or being
  nominated, and nothing changed (no candidate, no pair success or failure)
  for ``failed_grace`` (5 s); with trickle there is no end-of-candidates. Final.
* Unauthenticated, malformed or unexpected STUN is dropped silently and
  counted (no 400/401 answers: nothing to reflect). Requests need USERNAME
  ``<local ufrag>:<remote ufrag>``, MESSAGE-INTEGRITY with the local password
  and FINGERPRINT; responses MESSAGE-INTEGRITY with the remote password and
  FINGERPRINT.
* A request arriving on a base with no local candidate yet is dropped: had it
  been answered, a nomination could succeed on the peer's side without a pair
  on ours. The peer retransmits; add host candidates when the agent is made.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections import deque
from dataclasses import dataclass

from zerogate.proto import stun
from zerogate.proto.ice.candidate import (
    COMPONENT_ID,
    MAX_PRIORITY,
    TRANSPORT_UDP,
    Candidate,
    CandidateType,
    candidate_foundation,
    candidate_priority,
    canonical_endpoint,
    local_preference_of,
    pair_priority,
)
from zerogate.proto.ice.errors import InvalidCandidate, LocalProtocolError
from zerogate.proto.ice.events import (
    AgentState,
    CandidatePair,
    Disconnected,
    Event,
    Failed,
    NominatedPairRemoved,
    PairNominated,
    PairState,
    RoleChanged,
    Stats,
    Transmit,
)
from zerogate.proto.net import Endpoint
from zerogate.proto.stun import Attr, ErrorCode, Message, MessageClass, Method

__all__ = [
    "CHECK_MAX_RETRANSMITS",
    "CHECK_RTO_INITIAL",
    "CHECK_RTO_MAX",
    "CONSENT_INTERVAL",
    "CONSENT_JITTER",
    "CONSENT_TIMEOUT",
    "FAILED_GRACE",
    "MAX_PAIRS",
    "NOMINATION_SETTLE",
    "ROLE_CONFLICT",
    "TA",
    "IceAgent",
    "IceConfig",
]

_log = logging.getLogger(__name__)

TA = 0.020  # RFC 8445 §14.2 pacing timer (default there 50 ms; RFC 5245 used 20 ms)
CHECK_RTO_INITIAL = 0.100  # RFC 8445 §14.3 leaves RTO to us (it suggests >= 500 ms)
CHECK_RTO_MAX = 1.6  # RTO doubles up to this cap (RFC 8489 §6.2.1 doubles without one)
CHECK_MAX_RETRANSMITS = 8  # 0.1+0.2+0.4+0.8+5*1.6 = 9.5 s until a check fails
NOMINATION_SETTLE = 0.100  # wait this long after a pair is valid for a better one
CONSENT_INTERVAL = 5.0  # RFC 7675 §5.1: a consent check every 5 s ...
CONSENT_JITTER = 0.2  # RFC 7675 §5.1: ... randomised to 0.8-1.2 times that
CONSENT_TIMEOUT = 30.0  # RFC 7675 §5.1: consent expires 30 s after the last response
FAILED_GRACE = 5.0  # no progress for this long with nothing pending: Failed
MAX_PAIRS = 100  # RFC 8445 §6.1.2.5: limit on the checklist size (default 100)
MAX_REMOTE_CANDIDATES = 100  # signalled plus learned peer-reflexive ones
MAX_LOCAL_CANDIDATES = 100  # given plus learned peer-reflexive ones
ROLE_CONFLICT = 487  # RFC 8445 §7.3.1.1 / §16.2: 487 (Role Conflict)
TIE_BREAKER_BITS = 64  # RFC 8445 §7.3.1.1 / §16.1: a 64-bit unsigned tie-breaker
UFRAG_MIN, UFRAG_MAX = 4, 256  # RFC 8839 §5.4: ice-ufrag = 4*256ice-char
PWD_MIN, PWD_MAX = 22, 256  # RFC 8839 §5.4: ice-pwd = 22*256ice-char

_PENDING = frozenset({PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS})
_ACTIVE = frozenset({PairState.WAITING, PairState.IN_PROGRESS})


@dataclass(frozen=True, slots=True)
class IceConfig:
    """Timing knobs; the defaults are the constants above."""

    ta: float = TA
    rto_initial: float = CHECK_RTO_INITIAL
    rto_max: float = CHECK_RTO_MAX
    max_retransmits: int = CHECK_MAX_RETRANSMITS
    nomination_settle: float = NOMINATION_SETTLE
    consent_interval: float = CONSENT_INTERVAL
    consent_jitter: float = CONSENT_JITTER
    consent_timeout: float = CONSENT_TIMEOUT
    failed_grace: float = FAILED_GRACE

    def validate(self) -> None:
        """Raise :class:`LocalProtocolError` naming the first unusable setting."""
        for name in ("ta", "rto_initial", "rto_max", "consent_interval", "consent_timeout"):
            if not getattr(self, name) > 0:
                raise LocalProtocolError(f"IceConfig.{name} must be > 0")
        for name in ("nomination_settle", "failed_grace"):
            if not getattr(self, name) >= 0:
                raise LocalProtocolError(f"IceConfig.{name} must be >= 0")
        if self.rto_max < self.rto_initial:
            raise LocalProtocolError("IceConfig.rto_max must be >= rto_initial")
        if self.max_retransmits < 0:
            raise LocalProtocolError("IceConfig.max_retransmits must be >= 0")
        if not 0 <= self.consent_jitter < 1:
            raise LocalProtocolError("IceConfig.consent_jitter must be in [0, 1)")


class _Kind(enum.Enum):
    CHECK = 1  # an ordinary or triggered connectivity check
    NOMINATION = 2  # a check with USE-CANDIDATE (controlling side)
    CONSENT = 3  # RFC 7675 consent request on the selected pair


@dataclass(slots=True, eq=False)
class _Local:
    candidate: Candidate
    base: Endpoint


@dataclass(slots=True, eq=False)
class _Pair:
    local: Candidate
    base: Endpoint
    remote: Candidate
    priority: int
    foundation: str
    state: PairState
    nominated: bool = False
    remote_nominated: bool = False  # USE-CANDIDATE received while not yet valid (§7.3.1.5)
    valid_local: Candidate | None = None
    valid_priority: int = 0
    succeeded_at: float = 0.0
    check: bytes | None = None  # transaction id of the check in flight
    queued: bool = False  # in the triggered-check queue


@dataclass(slots=True, eq=False)
class _Transaction:
    tid: bytes
    kind: _Kind
    pair: _Pair
    data: bytes
    controlling: bool  # role announced in the request
    priority: int  # PRIORITY sent (becomes a learned prflx candidate's priority)
    rto: float
    due: float  # next retransmission, or when the transaction gives up
    retransmits: int = 0
    cancelled: bool = False  # §7.3.1.4: no more retransmissions, a late answer still counts


def _check_credentials(ufrag: str, pwd: str, who: str) -> None:
    def ice_chars(value: str) -> bool:
        return all(c.isascii() and (c.isalnum() or c in "+/") for c in value)

    if not (UFRAG_MIN <= len(ufrag) <= UFRAG_MAX and ice_chars(ufrag)):
        raise LocalProtocolError(f"{who} ufrag must be 4..256 ice-chars (RFC 8839 §5.4)")
    if not (PWD_MIN <= len(pwd) <= PWD_MAX and ice_chars(pwd)):
        raise LocalProtocolError(f"{who} password must be 22..256 ice-chars (RFC 8839 §5.4)")


class IceAgent:
    """One ICE session with one peer (one component, UDP).

    Thread-unsafe and IO-free. No method raises on bad input from the network;
    the ``add_*`` methods raise :class:`LocalProtocolError` for candidates the
    shell should never give (wrong component or transport, a host candidate
    whose base is not its own address ...).
    """

    def __init__(
        self,
        *,
        controlling: bool,
        local_ufrag: str,
        local_pwd: str,
        remote_ufrag: str,
        remote_pwd: str,
        now: float,
        config: IceConfig | None = None,
        rng: random.Random | None = None,
        tie_breaker: int | None = None,
    ) -> None:
        _check_credentials(local_ufrag, local_pwd, "local")
        _check_credentials(remote_ufrag, remote_pwd, "remote")
        self._config = config if config is not None else IceConfig()
        self._config.validate()
        self._rng = rng if rng is not None else random.SystemRandom()
        if tie_breaker is None:
            tie_breaker = self._rng.getrandbits(TIE_BREAKER_BITS)
        if not 0 <= tie_breaker < 1 << TIE_BREAKER_BITS:
            raise LocalProtocolError("tie-breaker must be a 64-bit unsigned integer")
        self._controlling = controlling
        self._tie_breaker = tie_breaker
        self.local_ufrag = local_ufrag
        self.remote_ufrag = remote_ufrag
        self._local_key = local_pwd.encode()
        self._remote_key = remote_pwd.encode()
        self._username_in = f"{local_ufrag}:{remote_ufrag}"  # RFC 8445 §7.2.2
        self._username_out = f"{remote_ufrag}:{local_ufrag}"

        self._locals: list[_Local] = []
        self._remotes: dict[Endpoint, Candidate] = {}
        self._pairs: dict[tuple[Endpoint, Endpoint], _Pair] = {}
        self._triggered: deque[_Pair] = deque()
        self._transactions: dict[bytes, _Transaction] = {}
        self._selected: _Pair | None = None
        self._nominating: _Pair | None = None
        self._state = AgentState.CHECKING
        self._last_check_at = now - self._config.ta
        self._last_progress = now
        self._consent_at = 0.0  # last consent refresh on the selected pair
        self._next_consent = math.inf
        self._prflx_seq = 0

        self._transmits: deque[Transmit] = deque()
        self._events: deque[Event] = deque()
        self._checks_sent = 0
        self._retransmits = 0
        self._requests_answered = 0
        self._responses_accepted = 0
        self._dropped = 0

    # -- candidates ----------------------------------------------------------
    def add_local_candidate(
        self, candidate: Candidate, now: float, *, base: Endpoint | None = None
    ) -> bool:
        """A local candidate (host, server-reflexive or relayed) and its base.

        ``base`` defaults to the candidate's own address for host and relayed
        candidates and to its related address for server-reflexive ones.
        Returns False when the candidate is redundant (RFC 8445 §5.1.3: same
        address and base as one we have, not a higher priority) or the agent
        is finished; the shell need not signal it then.
        """
        if self._finished:
            return False
        self._check_local(candidate)
        if base is None:
            if candidate.type is CandidateType.SERVER_REFLEXIVE:
                if candidate.related is None:
                    raise LocalProtocolError("a server-reflexive candidate needs its base")
                base = candidate.related
            else:
                base = candidate.address
        try:
            base = canonical_endpoint(base)
        except InvalidCandidate as exc:
            raise LocalProtocolError(f"bad base {base!r}") from exc
        if (
            candidate.type in (CandidateType.HOST, CandidateType.RELAYED)
            and base != candidate.address
        ):
            raise LocalProtocolError(f"a {candidate.type} candidate is its own base")
        for known in list(self._locals):
            if known.candidate.address == candidate.address and known.base == base:
                replaceable = known.candidate.type is CandidateType.PEER_REFLEXIVE
                if not replaceable and known.candidate.priority >= candidate.priority:
                    return False
                self._locals.remove(known)  # redundant with the new one (§5.1.3)
        if len(self._locals) >= MAX_LOCAL_CANDIDATES:
            raise LocalProtocolError("too many local candidates")
        local = _Local(candidate, base)
        self._locals.append(local)
        for remote in self._remotes.values():
            self._pair_up(local, remote)
        self._rebind_pairs(base)
        self._progress(now)
        self._drive(now)
        return True

    def remove_local_candidate(self, candidate: Candidate, now: float) -> bool:
        """Forget a local candidate. Removing a host or relayed candidate removes its
        base: every candidate on it and every pair sending from it."""
        if self._finished:
            return False
        found = next(
            (
                loc
                for loc in self._locals
                if loc.candidate.address == candidate.address
                and loc.candidate.type is candidate.type
            ),
            None,
        )
        if found is None:
            return False
        if found.candidate.type in (CandidateType.HOST, CandidateType.RELAYED):
            self._locals = [loc for loc in self._locals if loc.base != found.base]
        else:
            self._locals.remove(found)
        self._rebind_pairs(found.base)
        self._progress(now)
        self._drive(now)
        return True

    def add_remote_candidate(self, candidate: Candidate, now: float) -> bool:
        """A candidate the peer signalled. Returns False when it was ignored (another
        component or transport, an address we already know, too many candidates).

        A candidate with the address of a peer-reflexive one we learned replaces it
        and keeps its pairs (RFC 8445 §7.3.1.3, RFC 8838 §11)."""
        if self._finished:
            return False
        if candidate.component != COMPONENT_ID or candidate.transport != TRANSPORT_UDP:
            return False
        known = self._remotes.get(candidate.address)
        if known is not None:
            if known.type is not CandidateType.PEER_REFLEXIVE:
                return False
            self._remotes[candidate.address] = candidate
            for pair in self._pairs.values():
                if pair.remote.address == candidate.address:
                    pair.remote = candidate
                    self._reprioritise(pair)
            self._progress(now)
            self._drive(now)
            return True
        if len(self._remotes) >= MAX_REMOTE_CANDIDATES:
            return False
        self._remotes[candidate.address] = candidate
        for local in self._locals:
            self._pair_up(local, candidate)
        self._progress(now)
        self._drive(now)
        return True

    def remove_remote_candidate(self, candidate: Candidate, now: float) -> bool:
        """The peer invalidated ``candidate`` (matched by address): its pairs go; if the
        selected pair was one of them, :class:`NominatedPairRemoved` is emitted."""
        if self._finished:
            return False
        if self._remotes.pop(candidate.address, None) is None:
            return False
        for pair in [p for p in self._pairs.values() if p.remote.address == candidate.address]:
            self._remove_pair(pair)
        self._progress(now)
        self._drive(now)
        return True

    # -- input ---------------------------------------------------------------
    def handle_stun(self, data: bytes, source: Endpoint, local: Endpoint, now: float) -> None:
        """A STUN datagram from ``source`` that arrived on the local base ``local``.

        ``local`` is the socket address, or the relayed address when the datagram
        came through a TURN allocation (unwrapped from ChannelData or a Data
        indication, ``source`` being the peer address the relay reported).
        Never raises; anything not for us is dropped and counted."""
        if self._finished:
            self._dropped += 1
            return
        try:
            message = stun.decode(data)
            source = canonical_endpoint(source)
            local = canonical_endpoint(local)
        except (stun.RemoteProtocolError, InvalidCandidate, TypeError, ValueError):
            self._dropped += 1
            return
        if message.method != Method.BINDING or message.fingerprint_at is None:
            self._dropped += 1
            return
        if message.message_class == MessageClass.REQUEST:
            self._handle_request(message, source, local, now)
        elif message.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            self._handle_response(message, source, local, now)
        else:
            self._dropped += 1

    def handle_timeout(self, now: float) -> None:
        """Retransmit, give up on checks, pace new ones, send consent checks, expire."""
        if self._finished:
            return
        for tx in [t for t in self._transactions.values() if t.due <= now]:
            if self._transactions.get(tx.tid) is tx:
                self._transaction_due(tx, now)
        if self._selected is not None:
            if now >= self._consent_at + self._config.consent_timeout:
                pair = self._snapshot(self._selected)
                _log.info("ICE consent expired", extra={"ufrag": self.local_ufrag})
                self._finish(AgentState.DISCONNECTED, Disconnected(pair))
                return
            if now >= self._next_consent:
                self._send_request(self._selected, _Kind.CONSENT, now)
                self._next_consent = now + self._consent_interval()
        self._drive(now)

    def close(self) -> None:
        """Stop: no more datagrams, timers or events."""
        if not self._finished:
            self._state = AgentState.CLOSED
            self._stop()

    # -- output --------------------------------------------------------------
    def poll_transmit(self) -> Transmit | None:
        """Next datagram to send, or ``None``."""
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> Event | None:
        """Next event, or ``None``."""
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` should next be called, or ``None``."""
        if self._finished:
            return None
        deadlines: list[float] = [tx.due for tx in self._transactions.values()]
        if self._peek_next_check() is not None:
            deadlines.append(self._last_check_at + self._config.ta)
        settle = self._nomination_plan()[1]
        if settle is not None:
            deadlines.append(settle)
        if self._selected is not None:
            deadlines.append(self._next_consent)
            deadlines.append(self._consent_at + self._config.consent_timeout)
        failure = self._failure_deadline()
        if failure is not None:
            deadlines.append(failure)
        return min(deadlines, default=None)

    # -- queries -------------------------------------------------------------
    @property
    def controlling(self) -> bool:
        return self._controlling

    @property
    def tie_breaker(self) -> int:
        return self._tie_breaker

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def selected_pair(self) -> CandidatePair | None:
        """The pair WireGuard uses now, or ``None``."""
        return None if self._selected is None else self._snapshot(self._selected)

    def pairs(self) -> list[CandidatePair]:
        """Every candidate pair, highest priority first (for status and debugging)."""
        ordered = sorted(self._pairs.values(), key=lambda p: p.priority, reverse=True)
        return [self._snapshot(p) for p in ordered]

    @property
    def local_candidates(self) -> tuple[Candidate, ...]:
        """Local candidates, including peer-reflexive ones learned from responses."""
        return tuple(loc.candidate for loc in self._locals)

    @property
    def remote_candidates(self) -> tuple[Candidate, ...]:
        """Remote candidates, including peer-reflexive ones learned from requests."""
        return tuple(self._remotes.values())

    def owns_transaction(self, transaction_id: bytes) -> bool:
        """True when a response with this transaction id is for this agent."""
        return transaction_id in self._transactions

    @property
    def stats(self) -> Stats:
        return Stats(
            checks_sent=self._checks_sent,
            retransmits=self._retransmits,
            requests_answered=self._requests_answered,
            responses_accepted=self._responses_accepted,
            dropped=self._dropped,
        )

    # -- requests (RFC 8445 §7.3) ---------------------------------------------
    def _handle_request(
        self, message: Message, source: Endpoint, local: Endpoint, now: float
    ) -> None:
        if message.get_str(Attr.USERNAME) != self._username_in or not stun.check_integrity(
            message, self._local_key
        ):
            self._dropped += 1
            return
        priority = message.get_int(Attr.PRIORITY)
        if priority is None or not 1 <= priority <= MAX_PRIORITY or message.unknown_required:
            self._dropped += 1
            return
        loc = self._local_for_base(local)
        if loc is None:
            self._dropped += 1
            return
        # Role conflicts (§7.3.1.1).
        theirs_controlling = message.get_int(Attr.ICE_CONTROLLING)
        theirs_controlled = message.get_int(Attr.ICE_CONTROLLED)
        if self._controlling and theirs_controlling is not None:
            if self._tie_breaker >= theirs_controlling:
                self._answer(message, source, local, conflict=True)
                return
            self._switch_role(controlling=False)
        elif not self._controlling and theirs_controlled is not None:
            if self._tie_breaker >= theirs_controlled:
                self._switch_role(controlling=True)
            else:
                self._answer(message, source, local, conflict=True)
                return
        remote = self._remotes.get(source)
        pair = self._pairs.get((loc.base, source))
        if (remote is None and len(self._remotes) >= MAX_REMOTE_CANDIDATES) or (
            pair is None and len(self._pairs) >= MAX_PAIRS
        ):
            self._dropped += 1  # full: unanswered, so the peer cannot nominate what we lack
            return
        self._answer(message, source, local, conflict=False)
        if remote is None:
            remote = self._learn_remote(source, priority)
        if pair is None:
            pair = self._new_pair(loc, remote, PairState.WAITING)
            self._progress(now)
        # Triggered checks (§7.3.1.4).
        if pair.state is PairState.IN_PROGRESS:
            self._cancel_check(pair, now)
            pair.state = PairState.WAITING
            self._enqueue(pair)
        elif pair.state in (PairState.WAITING, PairState.FROZEN, PairState.FAILED):
            pair.state = PairState.WAITING
            self._enqueue(pair)
        # Nomination (§7.3.1.5).
        if Attr.USE_CANDIDATE in message.attributes and not self._controlling:
            pair.remote_nominated = True
            if pair.state is PairState.SUCCEEDED:
                self._accept_nomination(pair, now)
        self._drive(now)

    def _answer(
        self, request: Message, source: Endpoint, local: Endpoint, *, conflict: bool
    ) -> None:
        if conflict:
            reply = Message(
                Method.BINDING,
                MessageClass.ERROR,
                request.transaction_id,
                {Attr.ERROR_CODE: ErrorCode(ROLE_CONFLICT, "Role Conflict")},
            )
        else:
            reply = Message(
                Method.BINDING,
                MessageClass.SUCCESS,
                request.transaction_id,
                {Attr.XOR_MAPPED_ADDRESS: source},
            )
        data = stun.encode(reply, key=self._local_key, fingerprint=True)
        self._transmits.append(Transmit(local, source, data))
        self._requests_answered += 1

    def _learn_remote(self, source: Endpoint, priority: int) -> Candidate:
        """A peer-reflexive remote candidate (§7.3.1.3)."""
        self._prflx_seq += 1
        remote = Candidate(
            foundation=f"prflx{self._prflx_seq}",
            component=COMPONENT_ID,
            transport=TRANSPORT_UDP,
            priority=priority,
            host=source[0],
            port=source[1],
            type=CandidateType.PEER_REFLEXIVE,
        )
        self._remotes[source] = remote
        return remote

    # -- responses (RFC 8445 §7.2.5) ------------------------------------------
    def _handle_response(
        self, message: Message, source: Endpoint, local: Endpoint, now: float
    ) -> None:
        tx = self._transactions.get(message.transaction_id)
        if tx is None or not stun.check_integrity(message, self._remote_key):
            self._dropped += 1  # unknown, or not from the peer: retransmissions go on
            return
        self._responses_accepted += 1
        self._end_transaction(tx)
        pair = tx.pair
        if source != pair.remote.address or local != pair.base:
            # §7.2.5.2.1: the addresses are not symmetric; the check fails.
            if tx.kind is not _Kind.CONSENT:
                self._fail(pair, now, nomination=tx.kind is _Kind.NOMINATION)
            self._drive(now)
            return
        if message.message_class == MessageClass.ERROR:
            error = message.error_code()
            if error is not None and error.code == ROLE_CONFLICT:
                # §7.2.5.1: take the other role than the one we claimed, check again.
                if tx.controlling == self._controlling:
                    self._switch_role(controlling=not tx.controlling)
                if tx.kind is _Kind.NOMINATION and self._nominating is pair:
                    self._nominating = None
                if tx.kind is not _Kind.CONSENT and pair.state is not PairState.SUCCEEDED:
                    pair.state = PairState.WAITING
                    self._enqueue(pair)
            elif tx.kind is not _Kind.CONSENT:
                self._fail(pair, now, nomination=tx.kind is _Kind.NOMINATION)
            self._drive(now)
            return
        mapped = message.get_address(Attr.XOR_MAPPED_ADDRESS)
        if mapped is None:
            if tx.kind is not _Kind.CONSENT:
                self._fail(pair, now, nomination=tx.kind is _Kind.NOMINATION)
            self._drive(now)
            return
        if pair is self._selected:
            self._consent_at = now  # RFC 7675 §5.1
        if tx.kind is not _Kind.CONSENT:
            self._check_succeeded(pair, tx, mapped, now)
        self._drive(now)

    def _check_succeeded(self, pair: _Pair, tx: _Transaction, mapped: Endpoint, now: float) -> None:
        valid_local = self._local_by_address(mapped, pair.base)
        if valid_local is None:
            valid_local = self._learn_local(mapped, pair.base, tx.priority)
        pair.valid_local = valid_local
        pair.valid_priority = self._priority(valid_local, pair.remote)
        if pair.state is not PairState.SUCCEEDED:
            pair.state = PairState.SUCCEEDED
            pair.succeeded_at = now
            self._progress(now)
            # §7.2.5.3.3: unfreeze the pairs with the same foundation.
            for other in self._pairs.values():
                if other.state is PairState.FROZEN and other.foundation == pair.foundation:
                    other.state = PairState.WAITING
        if tx.kind is _Kind.NOMINATION and self._controlling and tx.controlling:
            self._nominating = None
            pair.nominated = True
            if pair is not self._selected:
                self._select(pair, now)
        elif not self._controlling and pair.remote_nominated:
            self._accept_nomination(pair, now)

    def _learn_local(self, mapped: Endpoint, base: Endpoint, priority: int) -> Candidate:
        """A peer-reflexive local candidate (§7.2.5.3.1); it is not paired itself."""
        candidate = Candidate(
            foundation=candidate_foundation(CandidateType.PEER_REFLEXIVE, base[0]),
            component=COMPONENT_ID,
            transport=TRANSPORT_UDP,
            priority=priority,
            host=mapped[0],
            port=mapped[1],
            type=CandidateType.PEER_REFLEXIVE,
            related_address=base[0],
            related_port=base[1],
        )
        if len(self._locals) < MAX_LOCAL_CANDIDATES:
            self._locals.append(_Local(candidate, base))
        return candidate

    # -- nomination (RFC 8445 §8) ---------------------------------------------
    def _accept_nomination(self, pair: _Pair, now: float) -> None:
        """Controlled side: USE-CANDIDATE on a valid pair (§7.3.1.5)."""
        pair.nominated = True
        selected = self._selected
        if selected is None or (
            pair is not selected and pair.valid_priority > selected.valid_priority
        ):
            self._select(pair, now)

    def _nomination_plan(self) -> tuple[_Pair | None, float | None]:
        """Controlling side: the pair to nominate now, or when to look again."""
        if not self._controlling or self._nominating is not None or self._finished:
            return None, None
        valid = [p for p in self._pairs.values() if p.state is PairState.SUCCEEDED]
        if not valid:
            return None, None
        best = max(valid, key=lambda p: p.valid_priority)
        selected = self._selected
        if selected is not None and (
            best is selected or best.valid_priority <= selected.valid_priority
        ):
            return None, None
        could_beat = any(
            p.state in _PENDING and p.priority > best.valid_priority for p in self._pairs.values()
        )
        if not could_beat:
            return best, None
        return None, best.succeeded_at + self._config.nomination_settle

    def _nominate(self, now: float) -> None:
        best, settle = self._nomination_plan()
        if best is None and settle is not None and now >= settle:
            valid = [p for p in self._pairs.values() if p.state is PairState.SUCCEEDED]
            best = max(valid, key=lambda p: p.valid_priority)
        if best is None:
            return
        self._nominating = best
        self._send_request(best, _Kind.NOMINATION, now)

    def _select(self, pair: _Pair, now: float) -> None:
        self._selected = pair
        self._state = AgentState.CONNECTED
        self._consent_at = now
        self._next_consent = now + self._consent_interval()
        _log.debug(
            "ICE pair selected",
            extra={"ufrag": self.local_ufrag, "relayed": pair.local.type is CandidateType.RELAYED},
        )
        self._events.append(PairNominated(self._snapshot(pair)))

    def _consent_interval(self) -> float:
        jitter = self._config.consent_jitter
        return self._config.consent_interval * self._rng.uniform(1 - jitter, 1 + jitter)

    def _switch_role(self, *, controlling: bool) -> None:
        self._controlling = controlling
        self._nominating = None
        for pair in self._pairs.values():
            self._reprioritise(pair)
        self._events.append(RoleChanged(controlling))

    # -- checks ---------------------------------------------------------------
    def _drive(self, now: float) -> None:
        """After any input: pace one check, nominate, notice failure."""
        if self._finished:
            return
        if now >= self._last_check_at + self._config.ta:
            pair = self._next_check()
            if pair is not None:
                self._send_request(pair, _Kind.CHECK, now)
                self._last_check_at = now
        self._nominate(now)
        deadline = self._failure_deadline()
        if deadline is not None and now >= deadline:
            reason = "all candidate pairs failed" if self._pairs else "no candidate pairs"
            _log.info("ICE failed", extra={"ufrag": self.local_ufrag, "reason": reason})
            self._finish(AgentState.FAILED, Failed(reason))

    def _worth_checking(self, pair: _Pair) -> bool:
        selected = self._selected
        return selected is None or pair.priority > selected.valid_priority

    def _peek_next_check(self) -> _Pair | None:
        while self._triggered and (
            self._triggered[0].state is not PairState.WAITING
            or self._pairs.get((self._triggered[0].base, self._triggered[0].remote.address))
            is not self._triggered[0]
        ):
            self._triggered.popleft().queued = False
        if self._triggered:
            return self._triggered[0]
        # §6.1.4.2: the highest-priority Waiting pair, else unfreeze a Frozen one whose
        # foundation is not being checked.
        waiting = [
            p
            for p in self._pairs.values()
            if p.state is PairState.WAITING and self._worth_checking(p)
        ]
        if waiting:
            return max(waiting, key=lambda p: p.priority)
        busy = {p.foundation for p in self._pairs.values() if p.state in _ACTIVE}
        frozen = [
            p
            for p in self._pairs.values()
            if p.state is PairState.FROZEN and p.foundation not in busy and self._worth_checking(p)
        ]
        return max(frozen, key=lambda p: p.priority) if frozen else None

    def _next_check(self) -> _Pair | None:
        pair = self._peek_next_check()
        if pair is not None and self._triggered and self._triggered[0] is pair:
            self._triggered.popleft()
            pair.queued = False
        return pair

    def _enqueue(self, pair: _Pair) -> None:
        if not pair.queued:
            pair.queued = True
            self._triggered.append(pair)

    def _send_request(self, pair: _Pair, kind: _Kind, now: float) -> None:
        priority = candidate_priority(
            CandidateType.PEER_REFLEXIVE, local_preference_of(pair.local.priority)
        )  # §7.2.2: the priority a peer-reflexive candidate from this base would get
        attributes: dict[int, object] = {
            Attr.USERNAME: self._username_out,
            Attr.PRIORITY: priority,
        }
        if self._controlling:
            attributes[Attr.ICE_CONTROLLING] = self._tie_breaker
            if kind is _Kind.NOMINATION:
                attributes[Attr.USE_CANDIDATE] = True
        else:
            attributes[Attr.ICE_CONTROLLED] = self._tie_breaker
        tid = self._new_transaction_id()
        message = Message(Method.BINDING, MessageClass.REQUEST, tid, attributes)
        data = stun.encode(message, key=self._remote_key, fingerprint=True)
        if kind is _Kind.CONSENT:
            # RFC 7675: no retransmissions; the next consent check is a new transaction.
            rto, due = self._config.consent_timeout, now + self._config.consent_timeout
        else:
            rto = self._config.rto_initial
            due = now + rto
        tx = _Transaction(tid, kind, pair, data, self._controlling, priority, rto, due)
        self._transactions[tid] = tx
        if kind is _Kind.CHECK:
            if pair.check is not None:
                self._cancel_check(pair, now)
            pair.check = tid
            if pair.state is not PairState.SUCCEEDED:
                pair.state = PairState.IN_PROGRESS
        self._transmits.append(Transmit(pair.base, pair.remote.address, data))
        self._checks_sent += 1

    def _new_transaction_id(self) -> bytes:
        while True:
            tid = self._rng.getrandbits(96).to_bytes(12, "big")
            if tid not in self._transactions:
                return tid

    def _transaction_due(self, tx: _Transaction, now: float) -> None:
        if (
            tx.kind is not _Kind.CONSENT
            and not tx.cancelled
            and tx.retransmits < self._config.max_retransmits
        ):
            tx.retransmits += 1
            tx.rto = min(tx.rto * 2, self._config.rto_max)
            tx.due = now + tx.rto
            self._transmits.append(Transmit(tx.pair.base, tx.pair.remote.address, tx.data))
            self._retransmits += 1
            return
        self._end_transaction(tx)
        if tx.kind is _Kind.CONSENT or tx.cancelled:
            return
        self._fail(tx.pair, now, nomination=tx.kind is _Kind.NOMINATION)

    def _cancel_check(self, pair: _Pair, now: float) -> None:
        """§7.3.1.4: stop retransmitting, but still accept a late answer for a while."""
        tx = self._transactions.get(pair.check) if pair.check is not None else None
        if tx is not None:
            tx.cancelled = True
            tx.due = min(tx.due, now + self._config.rto_max)
        pair.check = None

    def _end_transaction(self, tx: _Transaction) -> None:
        self._transactions.pop(tx.tid, None)
        if tx.pair.check == tx.tid:
            tx.pair.check = None

    def _fail(self, pair: _Pair, now: float, *, nomination: bool) -> None:
        if nomination and self._nominating is pair:
            self._nominating = None
        if pair is self._selected:
            return  # consent decides about the selected pair
        if pair.state is not PairState.FAILED:
            pair.state = PairState.FAILED
            self._progress(now)

    # -- pairs ----------------------------------------------------------------
    def _priority(self, local: Candidate, remote: Candidate) -> int:
        if self._controlling:
            return pair_priority(local.priority, remote.priority)
        return pair_priority(remote.priority, local.priority)

    def _reprioritise(self, pair: _Pair) -> None:
        pair.priority = self._priority(pair.local, pair.remote)
        pair.foundation = f"{pair.local.foundation}:{pair.remote.foundation}"
        if pair.valid_local is not None:
            pair.valid_priority = self._priority(pair.valid_local, pair.remote)

    def _pair_up(self, local: _Local, remote: Candidate) -> None:
        if local.candidate.type is CandidateType.PEER_REFLEXIVE:
            return  # learned local candidates are not paired (§7.2.5.3.1)
        if local.candidate.ip_version != remote.ip_version:
            return
        key = (local.base, remote.address)
        if key not in self._pairs and len(self._pairs) < MAX_PAIRS:
            foundation = f"{local.candidate.foundation}:{remote.foundation}"
            busy = any(
                p.foundation == foundation and p.state in _ACTIVE for p in self._pairs.values()
            )
            self._new_pair(local, remote, PairState.FROZEN if busy else PairState.WAITING)

    def _new_pair(self, local: _Local, remote: Candidate, state: PairState) -> _Pair:
        pair = _Pair(
            local=local.candidate,
            base=local.base,
            remote=remote,
            priority=0,
            foundation="",
            state=state,
        )
        self._reprioritise(pair)
        self._pairs[(local.base, remote.address)] = pair
        # §6.1.2.4: a server-reflexive candidate is replaced by its base; the pair of a
        # base and a remote candidate is checked once, with the best local candidate.
        self._rebind_pairs(local.base)
        return pair

    def _rebind_pairs(self, base: Endpoint) -> None:
        """Give each pair on ``base`` the best local candidate still there; drop pairs
        whose base has none left."""
        candidates = [
            loc.candidate
            for loc in self._locals
            if loc.base == base and loc.candidate.type is not CandidateType.PEER_REFLEXIVE
        ]
        best = max(candidates, key=lambda c: c.priority, default=None)
        for pair in [p for p in self._pairs.values() if p.base == base]:
            if best is None:
                self._remove_pair(pair)
            elif pair.local is not best:
                pair.local = best
                self._reprioritise(pair)

    def _remove_pair(self, pair: _Pair) -> None:
        self._pairs.pop((pair.base, pair.remote.address), None)
        for tid in [t for t, tx in self._transactions.items() if tx.pair is pair]:
            del self._transactions[tid]
        pair.check = None
        if self._nominating is pair:
            self._nominating = None
        if self._selected is pair:
            self._selected = None
            self._state = AgentState.CHECKING
            self._next_consent = math.inf
            self._events.append(NominatedPairRemoved(self._snapshot(pair)))

    def _local_for_base(self, base: Endpoint) -> _Local | None:
        candidates = [
            loc
            for loc in self._locals
            if loc.base == base and loc.candidate.type is not CandidateType.PEER_REFLEXIVE
        ]
        return max(candidates, key=lambda loc: loc.candidate.priority, default=None)

    def _local_by_address(self, address: Endpoint, base: Endpoint) -> Candidate | None:
        matches = [loc for loc in self._locals if loc.candidate.address == address]
        for loc in matches:
            if loc.base == base:
                return loc.candidate
        return matches[0].candidate if matches else None

    def _check_local(self, candidate: Candidate) -> None:
        if candidate.component != COMPONENT_ID:
            raise LocalProtocolError("the agent has one component (1)")
        if candidate.transport != TRANSPORT_UDP:
            raise LocalProtocolError("the agent runs over UDP only")
        if candidate.type is CandidateType.PEER_REFLEXIVE:
            raise LocalProtocolError("peer-reflexive candidates are learned, not given")

    # -- bookkeeping ------------------------------------------------------------
    def _progress(self, now: float) -> None:
        self._last_progress = now

    def _failure_deadline(self) -> float | None:
        if self._selected is not None or self._nominating is not None:
            return None
        if any(p.state in _PENDING for p in self._pairs.values()):
            return None
        return self._last_progress + self._config.failed_grace

    @property
    def _finished(self) -> bool:
        return self._state in (AgentState.FAILED, AgentState.DISCONNECTED, AgentState.CLOSED)

    def _finish(self, state: AgentState, event: Event) -> None:
        self._state = state
        self._stop()
        self._events.append(event)

    def _stop(self) -> None:
        self._transactions.clear()
        self._triggered.clear()
        self._selected = None
        self._nominating = None
        self._next_consent = math.inf

    def _snapshot(self, pair: _Pair) -> CandidatePair:
        return CandidatePair(
            local=pair.local,
            remote=pair.remote,
            base=pair.base,
            state=pair.state,
            priority=pair.priority,
            nominated=pair.nominated,
            valid_local=pair.valid_local,
            valid_priority=pair.valid_priority,
        )
