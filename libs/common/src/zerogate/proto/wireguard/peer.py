"""A peer's state: its configuration (:class:`Peer`), its sessions and timers
(:class:`Session`) and the keys of one session (:class:`Keypair`).

Ownership. A :class:`Session` owns everything about a peer that changes while
traffic flows: the endpoint it roams to, up to three keypairs, the initiation
we wait an answer for, what protects us from replayed initiations, the cookie
the peer gave us, the timers of whitepaper §6, the packets staged behind a
handshake and the byte counters. The :class:`~zerogate.proto.wireguard.device.Device`
orchestrates: it owns what all peers share (the static key, the tables of
receiver indices and cryptokey routes, the queues of transmits and events),
builds and consumes handshake messages, and acts on what a session reports.
A session never builds a handshake message and never sees another peer; when
it needs a handshake it says so through the ``want_handshake`` callback its
device gave it (wireguard-go: ``peer.SendHandshakeInitiation``).

Keypairs (whitepaper §5.4.6, wireguard-go device/keypair.go, noise-protocol.go):
``current`` encrypts; ``previous`` still decrypts packets that were in flight
during a rekey; ``next`` is a session the responder derived but may not send on
until the initiator's first packet arrives on it (then it becomes ``current``).
Keys cannot be wiped in place in Python (bytes are immutable); a session hands
back the receiver indices of the keypairs it lets go, the device removes them
from its table, and nothing refers to them any more.

Timers (whitepaper §6, wireguard-go timers.go) are deadlines on the device's
``now`` clock. Setting one also lowers the device's shared :class:`WakeUp`, so
the device answers ``poll_timeout`` in O(1). The events that move them are
methods named as in wireguard-go (``data_sent``, ``authenticated_received``,
...); :meth:`Session.seal` and :meth:`Session.received`, which run once per
packet, apply the events of a transport packet inline instead of calling them.

Per-packet path. :meth:`Session.seal` is the one place a transport message is
built (the device's ``encrypt``, staged packets and keepalives all go through
it); :meth:`Session.received` books an authenticated transport packet. Both
bind what they use to locals, and keypairs precompute their deadlines and keep
bound cipher methods, so a packet costs as few lookups as we can manage.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from zerogate.proto.net import Endpoint, IPNetwork
from zerogate.proto.wireguard import noise
from zerogate.proto.wireguard.constants import (
    COOKIE_REFRESH_TIME,
    HANDSHAKE_INITIATION_RATE,
    KEEPALIVE_TIMEOUT,
    MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES,
    MESSAGE_TRANSPORT,
    NEW_HANDSHAKE_TIMEOUT,
    RECEIVE_REKEY_AGE,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
    ZERO_KEYS_AFTER,
)
from zerogate.proto.wireguard.errors import RemoteProtocolError
from zerogate.proto.wireguard.messages import TRANSPORT_HEADER, TRANSPORT_NONCE
from zerogate.proto.wireguard.replay import ReplayWindow

__all__ = [
    "RECEIVED_CONFIRMS",
    "RECEIVED_ROAMED",
    "Keypair",
    "Peer",
    "Session",
    "Timer",
    "WakeUp",
    "padding_size",
]

_INF: Final = float("inf")
_PADDING: Final = tuple(bytes(n) for n in range(16))  # zero padding to a multiple of 16, §5.4.6
_pack_nonce: Final = TRANSPORT_NONCE.pack
_pack_header: Final = TRANSPORT_HEADER.pack

#: :meth:`Session.received` flags: the packet came from a new endpoint (roaming, §2.1).
RECEIVED_ROAMED: Final = 1
#: :meth:`Session.received` flags: it arrived on ``next``; call :meth:`Session.confirm_next`.
RECEIVED_CONFIRMS: Final = 2


def padding_size(size: int, mtu: int) -> int:
    """Zero bytes to append to a ``size``-byte packet (whitepaper §5.4.6).

    Pad to a multiple of 16, but never past the interface MTU (as wireguard-go
    does), so a full-size packet does not grow into a fragmented datagram.
    ``mtu == 0`` means no MTU is known: pad to a multiple of 16.
    """
    if mtu <= 0:
        return -size & 15
    last = size % mtu if size > mtu else size
    return min((last + 15) & ~15, mtu) - last


class WakeUp:
    """A lower bound of every deadline of a device's sessions (inf: none).

    Sessions lower it in O(1) when they set a deadline; the device recomputes
    it exactly after firing timers. So the device can wake early, never late.
    """

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = _INF

    def lower(self, deadline: float) -> None:
        if deadline < self.at:
            self.at = deadline


class Timer(enum.IntEnum):
    """The per-peer timers of whitepaper §6, in the order they are fired."""

    RETRANSMIT_HANDSHAKE = 0  # §6.4: no response to our initiation within REKEY_TIMEOUT
    SEND_KEEPALIVE = 1  # §6.5: received data and sent nothing back for KEEPALIVE_TIMEOUT
    NEW_HANDSHAKE = 2  # §6.5: sent data and heard nothing for KEEPALIVE + REKEY_TIMEOUT
    ZERO_KEY_MATERIAL = 3  # §6.3: no new session for REJECT_AFTER_TIME * 3
    PERSISTENT_KEEPALIVE = 4  # wg(8) persistent-keepalive: nothing sent or received


class Keypair:
    """One session's transport keys and counters (whitepaper §5.4.6).

    The deadlines of this keypair are computed once: ``reject_at`` (it may not
    send or receive from then on, §6.2), ``rekey_at`` (the initiator rekeys
    when it sends on it from then on) and ``receive_rekey_at`` (the initiator
    rekeys when it receives on it from then on); a responder's keypair never
    triggers the last two (``inf``).
    """

    __slots__ = (
        "created",
        "is_initiator",
        "local_index",
        "open",
        "receive",
        "receive_rekey_at",
        "reject_at",
        "rekey_at",
        "remote_index",
        "replay",
        "replay_check",
        "seal",
        "send",
        "send_counter",
        "session",
    )

    def __init__(
        self,
        session: Session,
        keys: noise.SessionKeys,
        *,
        is_initiator: bool,
        local_index: int,
        remote_index: int,
        now: float,
    ) -> None:
        self.session = session
        self.send = ChaCha20Poly1305(keys.send)
        self.receive = ChaCha20Poly1305(keys.receive)
        self.seal = self.send.encrypt  # bound once: called per packet
        self.open = self.receive.decrypt
        self.send_counter = 0
        self.replay = ReplayWindow()
        self.replay_check = self.replay.check
        self.created = now
        self.is_initiator = is_initiator
        self.local_index = local_index
        self.remote_index = remote_index
        self.reject_at = now + REJECT_AFTER_TIME
        self.rekey_at = now + REKEY_AFTER_TIME if is_initiator else _INF
        self.receive_rekey_at = now + RECEIVE_REKEY_AGE if is_initiator else _INF


class Session:
    """The session and timer state of one peer (whitepaper §5.4.6, §6).

    ``want_handshake(session, now)`` is called when this session needs a new
    handshake (no usable keypair, or the current one is due for a rekey); the
    device decides whether and when to send one. ``wakeup`` is the device's
    lower bound of all deadlines.
    """

    __slots__ = (
        "_cookie",
        "_cookie_resent",
        "_cookie_time",
        "_current",
        "_endpoint",
        "_greatest_timestamp",
        "_handshake",
        "_handshake_attempts",
        "_keepalive_interval",
        "_last_handshake_unix",
        "_last_initiation_consumed",
        "_last_initiation_sent",
        "_last_mac1",
        "_need_another_keepalive",
        "_next",
        "_previous",
        "_roaming",
        "_rx_bytes",
        "_sent_last_minute_handshake",
        "_staged",
        "_t_keepalive",
        "_t_new_handshake",
        "_t_persistent",
        "_t_retransmit",
        "_t_zero_keys",
        "_tx_bytes",
        "_wakeup",
        "_want_handshake",
        "peer",
    )

    def __init__(
        self,
        peer: Peer,
        *,
        want_handshake: Callable[[Session, float], None],
        wakeup: WakeUp,
    ) -> None:
        self.peer = peer
        self._want_handshake = want_handshake
        self._wakeup = wakeup
        self._endpoint: Endpoint | None = None
        self._roaming = True
        self._keepalive_interval = 0
        self._rx_bytes = 0
        self._tx_bytes = 0
        self._last_handshake_unix: float | None = None
        # keypairs
        self._previous: Keypair | None = None
        self._current: Keypair | None = None
        self._next: Keypair | None = None
        # our initiation, and what protects us from replayed ones (§5.1)
        self._handshake: noise.InitiatorHandshake | None = None
        self._handshake_attempts = 0
        self._last_initiation_sent: float | None = None
        self._greatest_timestamp = b""
        self._last_initiation_consumed: float | None = None
        self._sent_last_minute_handshake = False
        # the cookie this peer gave us (§5.4.7)
        self._cookie: bytes | None = None
        self._cookie_time = 0.0
        self._last_mac1: bytes | None = None
        self._cookie_resent = False
        # timers: deadlines on the `now` clock, None when not armed
        self._t_retransmit: float | None = None
        self._t_keepalive: float | None = None
        self._t_new_handshake: float | None = None
        self._t_zero_keys: float | None = None
        self._t_persistent: float | None = None
        self._need_another_keepalive = False
        self._staged: collections.deque[bytes] = collections.deque(maxlen=MAX_STAGED_PACKETS)

    def __repr__(self) -> str:
        return f"<Session endpoint={self._endpoint} current={self._current is not None}>"

    # --- reading --------------------------------------------------------------

    @property
    def endpoint(self) -> Endpoint | None:
        return self._endpoint

    @property
    def keepalive_interval(self) -> int:
        """Persistent keepalive interval in seconds (0: off)."""
        return self._keepalive_interval

    @property
    def rx_bytes(self) -> int:
        return self._rx_bytes

    @property
    def tx_bytes(self) -> int:
        return self._tx_bytes

    @property
    def last_handshake_unix(self) -> float | None:
        return self._last_handshake_unix

    @property
    def current(self) -> Keypair | None:
        return self._current

    @property
    def previous(self) -> Keypair | None:
        return self._previous

    @property
    def next(self) -> Keypair | None:
        return self._next

    @property
    def handshake(self) -> noise.InitiatorHandshake | None:
        """Our initiation waiting for a response, if any."""
        return self._handshake

    @property
    def greatest_timestamp(self) -> bytes:
        """The newest TAI64N of an initiation we accepted from this peer."""
        return self._greatest_timestamp

    @property
    def cookie(self) -> bytes | None:
        """The last cookie this peer sent us, fresh or not."""
        return self._cookie

    @property
    def last_mac1(self) -> bytes | None:
        """mac1 of our last handshake message, the associated data of a cookie reply."""
        return self._last_mac1

    @property
    def staged(self) -> int:
        """How many packets wait for a session."""
        return len(self._staged)

    def deadline(self, timer: Timer) -> float | None:
        """When ``timer`` fires, or None when it is not armed."""
        return (
            self._t_retransmit,
            self._t_keepalive,
            self._t_new_handshake,
            self._t_zero_keys,
            self._t_persistent,
        )[timer]

    def earliest_deadline(self) -> float:
        best = _INF
        for t in (
            self._t_retransmit,
            self._t_keepalive,
            self._t_new_handshake,
            self._t_zero_keys,
            self._t_persistent,
        ):
            if t is not None and t < best:
                best = t
        return best

    # --- configuration and roaming --------------------------------------------

    def set_endpoint(self, endpoint: Endpoint | None) -> bool:
        """Point at ``endpoint``; True when it changed."""
        if self._endpoint == endpoint:
            return False
        self._endpoint = endpoint
        return True

    def set_roaming(self, roaming: bool) -> None:
        """Whether authenticated packets from a new address move the endpoint (§2.1).

        Off for a peer whose path someone else decides (ICE): then only
        :meth:`set_endpoint` moves it, and a packet that still arrives over an
        older path is accepted without moving it back. A peer with no endpoint
        yet takes the first one either way, so it can answer.
        """
        self._roaming = roaming

    def set_keepalive_interval(self, interval: int) -> bool:
        """Set the persistent keepalive (0: off); True when it was just turned on."""
        was_off = self._keepalive_interval == 0
        self._keepalive_interval = interval
        if interval == 0:
            self._t_persistent = None
        return was_off and interval != 0

    def count_sent(self, size: int) -> None:
        """Count a handshake message sent to this peer (transport is counted by seal)."""
        self._tx_bytes += size

    def handshake_received(self, size: int, source: Endpoint) -> bool:
        """Count an authenticated handshake message; True when it roamed (§2.1)."""
        self._rx_bytes += size
        if not self._roaming and self._endpoint is not None:
            return False
        return self.set_endpoint(source)

    # --- the per-packet path ----------------------------------------------------

    def seal(
        self, packet: bytes | bytearray, now: float, mtu: int
    ) -> tuple[Endpoint, bytes] | None:
        """Build the transport message of ``packet`` (b"" is a keepalive), §5.4.6.

        Returns ``(endpoint, datagram)``. Returns None without an endpoint (the
        packet is dropped) or without a keypair that may send: then the packet
        is staged and a handshake asked for. Pads to 16 but not past ``mtu``.
        Applies the timer events "data sent" (unless a keepalive), "any
        authenticated packet sent" and "traversal", and asks for a rekey when
        the keypair is due (wireguard-go keepKeyFreshSending).
        """
        endpoint = self._endpoint
        if endpoint is None:
            return None
        kp = self._current
        if kp is None or now >= kp.reject_at or kp.send_counter >= REJECT_AFTER_MESSAGES:
            self._staged.append(bytes(packet))
            self._want_handshake(self, now)
            return None
        counter = kp.send_counter
        kp.send_counter = counter + 1
        n = len(packet)
        pad = -n & 15
        if pad:
            if n + pad > mtu > 0:
                pad = padding_size(n, mtu)
            if pad:
                packet = packet + _PADDING[pad]
        data = _pack_header(MESSAGE_TRANSPORT, kp.remote_index, counter) + kp.seal(
            _pack_nonce(counter), packet, None
        )
        self._tx_bytes += len(data)
        if n and self._t_new_handshake is None:  # data sent
            t = now + NEW_HANDSHAKE_TIMEOUT
            self._t_new_handshake = t
            wakeup = self._wakeup
            if t < wakeup.at:
                wakeup.at = t
        self._t_keepalive = None  # any authenticated packet sent
        interval = self._keepalive_interval
        if interval:  # any authenticated packet traversal
            t = now + interval
            self._t_persistent = t
            wakeup = self._wakeup
            if t < wakeup.at:
                wakeup.at = t
        if counter >= REKEY_AFTER_MESSAGES or now >= kp.rekey_at:
            self._want_handshake(self, now)
        return endpoint, data

    def received(self, kp: Keypair, plain: bytes, size: int, source: Endpoint, now: float) -> int:
        """Book an authenticated transport message of ``size`` bytes on ``kp``.

        ``plain`` is its plaintext (empty for a keepalive). Applies the timer
        events "any authenticated packet received", "traversal" and "data
        received", moves the endpoint to ``source`` (when roaming), and asks for a handshake
        when the initiator's current keypair is older than RECEIVE_REKEY_AGE
        (once per session, §6.2). Returns 0, or :data:`RECEIVED_ROAMED` and/or
        :data:`RECEIVED_CONFIRMS` for the device to act upon.
        """
        self._rx_bytes += size
        flags = 0
        if self._endpoint != source and (self._roaming or self._endpoint is None):
            self._endpoint = source
            flags = RECEIVED_ROAMED
        self._t_new_handshake = None  # any authenticated packet received
        interval = self._keepalive_interval
        if interval:  # any authenticated packet traversal
            t = now + interval
            self._t_persistent = t
            wakeup = self._wakeup
            if t < wakeup.at:
                wakeup.at = t
        if kp is self._next:
            flags |= RECEIVED_CONFIRMS
        else:
            current = self._current
            if (
                current is not None
                and now >= current.receive_rekey_at
                and not self._sent_last_minute_handshake
            ):
                self._sent_last_minute_handshake = True
                self._want_handshake(self, now)
        if plain:  # data received
            if self._t_keepalive is None:
                t = now + KEEPALIVE_TIMEOUT
                self._t_keepalive = t
                wakeup = self._wakeup
                if t < wakeup.at:
                    wakeup.at = t
            else:
                self._need_another_keepalive = True
        return flags

    # --- staged packets -----------------------------------------------------------

    def stage_keepalive(self) -> None:
        """Make sure the next flush sends something: a keepalive if nothing is staged."""
        if not self._staged:
            self._staged.append(b"")

    def flush_staged(self, now: float, mtu: int) -> list[tuple[Endpoint, bytes]]:
        """Seal every staged packet, or ask for a handshake when no keypair may send."""
        staged = self._staged
        if not staged or self._endpoint is None:
            return []
        kp = self._current
        if kp is None or now >= kp.reject_at or kp.send_counter >= REJECT_AFTER_MESSAGES:
            self._want_handshake(self, now)
            return []
        out: list[tuple[Endpoint, bytes]] = []
        seal = self.seal
        for _ in range(len(staged)):
            # seal re-stages a packet (in order) if the keypair runs out meanwhile
            sealed = seal(staged.popleft(), now, mtu)
            if sealed is not None:
                out.append(sealed)
        return out

    # --- handshakes -----------------------------------------------------------------

    def may_initiate(self, now: float, *, retry: bool, force: bool) -> bool:
        """wireguard-go SendHandshakeInitiation: at most one initiation per REKEY_TIMEOUT.

        ``retry`` keeps counting the attempts of the current try; ``force``
        skips the rate limit (the resend after a cookie reply). True when an
        initiation is to be sent now (it is then counted as sent).
        """
        if not retry:
            self._handshake_attempts = 0
        last = self._last_initiation_sent
        if not force and last is not None and now - last < REKEY_TIMEOUT:
            return False
        if self._endpoint is None:
            return False
        if not force:
            self._cookie_resent = False
        self._last_initiation_sent = now
        return True

    def fresh_cookie(self, now: float) -> bytes | None:
        """The peer's cookie for our mac2, while younger than COOKIE_REFRESH_TIME (§5.4.7)."""
        if self._cookie is not None and now - self._cookie_time < COOKIE_REFRESH_TIME:
            return self._cookie
        return None

    def forget_handshake(self) -> int | None:
        """Abandon our initiation; returns its receiver index for the device to free."""
        handshake = self._handshake
        if handshake is None:
            return None
        self._handshake = None
        return handshake.local_index

    def initiation_sent(
        self, handshake: noise.InitiatorHandshake, mac1: bytes, now: float, jitter: float
    ) -> None:
        """We sent an initiation: remember it and arm the retransmit timer (§6.4)."""
        self._handshake = handshake
        self._last_mac1 = mac1
        self.authenticated_traversal(now)
        self.authenticated_sent()
        self.handshake_initiated(now, jitter)

    def accept_initiation(self, timestamp: bytes, now: float) -> None:
        """Refuse a replayed or too frequent initiation (§5.1), else remember it.

        Raises :class:`RemoteProtocolError` when its TAI64N is not newer than
        the newest seen, or it comes within HANDSHAKE_INITIATION_RATE of the last.
        """
        if timestamp <= self._greatest_timestamp:
            raise RemoteProtocolError("replayed or old initiation")
        last = self._last_initiation_consumed
        if last is not None and now - last < HANDSHAKE_INITIATION_RATE:
            raise RemoteProtocolError("initiations too fast")
        self._greatest_timestamp = timestamp
        self._last_initiation_consumed = now

    def response_sent(self, mac1: bytes, now: float) -> None:
        """We answered an initiation (the initiation was received, the response sent)."""
        self._last_mac1 = mac1
        self.authenticated_received()
        self.authenticated_sent()
        self.authenticated_traversal(now)

    def response_received(self, now: float) -> None:
        """Our initiation was answered."""
        self.authenticated_received()
        self.authenticated_traversal(now)

    def cookie_received(self, cookie: bytes, receiver: int, now: float) -> bool:
        """Keep the peer's cookie (§5.4.7). True when the initiation it answered is
        still pending and was not resent with a cookie yet: resend it now."""
        self._cookie = cookie
        self._cookie_time = now
        self._last_mac1 = None
        handshake = self._handshake
        if handshake is not None and handshake.local_index == receiver and not self._cookie_resent:
            self._cookie_resent = True
            return True
        return False

    def retry_handshake(self) -> bool:
        """The retransmit timer fired: True to try again, False once
        MAX_TIMER_HANDSHAKES retries were sent (REKEY_ATTEMPT_TIME, §6.4)."""
        if self._handshake_attempts >= MAX_TIMER_HANDSHAKES:
            return False
        self._handshake_attempts += 1
        return True

    def give_up_handshake(self, now: float) -> int | None:
        """Stop trying: drop the staged packets and our initiation; keys are
        zeroed in ZERO_KEYS_AFTER unless already scheduled. Returns the index to free."""
        self._t_keepalive = None
        self._staged.clear()
        if self._t_zero_keys is None:
            self.session_derived(now)
        return self.forget_handshake()

    # --- keypairs -------------------------------------------------------------------

    def install(self, kp: Keypair, now: float) -> list[int]:
        """Install a fresh keypair (wireguard-go BeginSymmetricSession).

        The initiator sends on it at once; the responder keeps it as ``next``
        until the initiator uses it. Returns the receiver indices of the
        keypairs let go.
        """
        dropped: list[int] = []
        if kp.is_initiator:
            if self._next is not None:
                dropped += _indices(self._current, self._previous)
                self._previous = self._next
                self._next = None
            else:
                dropped += _indices(self._previous)
                self._previous = self._current
            self._current = kp
        else:
            dropped += _indices(self._next, self._previous)
            self._next = kp
            self._previous = None
        self.session_derived(now)
        return dropped

    def confirm_next(self) -> list[int]:
        """The initiator used our ``next`` keypair: it becomes current.
        Returns the receiver indices let go."""
        dropped = _indices(self._previous)
        self._previous = self._current
        self._current = self._next
        self._next = None
        return dropped

    def drop_keys(self) -> list[int]:
        """Forget every key (wireguard-go: zero key material). Returns the
        receiver indices let go; empty when there were none."""
        dropped = _indices(self._previous, self._current, self._next)
        self._previous = self._current = self._next = None
        index = self.forget_handshake()
        if index is not None:
            dropped.append(index)
        self._t_zero_keys = None
        return dropped

    def close(self) -> list[int]:
        """The peer is removed: drop keys, staged packets and every timer."""
        dropped = self.drop_keys()
        self._staged.clear()
        self._t_retransmit = self._t_keepalive = self._t_new_handshake = None
        self._t_persistent = None
        return dropped

    # --- timer events (whitepaper §6, wireguard-go timers.go) -----------------------

    def _arm(self, deadline: float) -> float:
        self._wakeup.lower(deadline)
        return deadline

    def data_sent(self, now: float) -> None:
        """Arm NEW_HANDSHAKE unless armed: an answer is due within KEEPALIVE + REKEY_TIMEOUT."""
        if self._t_new_handshake is None:
            self._t_new_handshake = self._arm(now + NEW_HANDSHAKE_TIMEOUT)

    def data_received(self, now: float) -> None:
        """Arm SEND_KEEPALIVE, or note that another one is due after it (§6.5)."""
        if self._t_keepalive is None:
            self._t_keepalive = self._arm(now + KEEPALIVE_TIMEOUT)
        else:
            self._need_another_keepalive = True

    def authenticated_sent(self) -> None:
        """Anything we send carries the keepalive: disarm SEND_KEEPALIVE."""
        self._t_keepalive = None

    def authenticated_received(self) -> None:
        """The peer is alive: disarm NEW_HANDSHAKE."""
        self._t_new_handshake = None

    def authenticated_traversal(self, now: float) -> None:
        """Re-arm PERSISTENT_KEEPALIVE when it is on."""
        if self._keepalive_interval:
            self._t_persistent = self._arm(now + self._keepalive_interval)

    def handshake_initiated(self, now: float, jitter: float) -> None:
        """Arm RETRANSMIT_HANDSHAKE at REKEY_TIMEOUT plus ``jitter`` (§6.4)."""
        self._t_retransmit = self._arm(now + REKEY_TIMEOUT + jitter)

    def handshake_completed(self, unix_time: float) -> None:
        """Disarm RETRANSMIT_HANDSHAKE, reset the attempts, note the wall-clock time."""
        self._t_retransmit = None
        self._handshake_attempts = 0
        self._sent_last_minute_handshake = False
        self._last_handshake_unix = unix_time

    def session_derived(self, now: float) -> None:
        """Arm ZERO_KEY_MATERIAL at REJECT_AFTER_TIME * 3 (§6.3)."""
        self._t_zero_keys = self._arm(now + ZERO_KEYS_AFTER)

    def pop_due(self, now: float) -> Timer | None:
        """Disarm and return the first timer due at ``now``, in :class:`Timer` order."""
        t = self._t_retransmit
        if t is not None and t <= now:
            self._t_retransmit = None
            return Timer.RETRANSMIT_HANDSHAKE
        t = self._t_keepalive
        if t is not None and t <= now:
            self._t_keepalive = None
            return Timer.SEND_KEEPALIVE
        t = self._t_new_handshake
        if t is not None and t <= now:
            self._t_new_handshake = None
            return Timer.NEW_HANDSHAKE
        t = self._t_zero_keys
        if t is not None and t <= now:
            self._t_zero_keys = None
            return Timer.ZERO_KEY_MATERIAL
        t = self._t_persistent
        if t is not None and t <= now:
            self._t_persistent = None
            return Timer.PERSISTENT_KEEPALIVE
        return None

    def keepalive_sent(self, now: float) -> None:
        """After SEND_KEEPALIVE sent one: arm it again if more data arrived meanwhile."""
        if self._need_another_keepalive:
            self._need_another_keepalive = False
            self._t_keepalive = self._arm(now + KEEPALIVE_TIMEOUT)


def _indices(*keypairs: Keypair | None) -> list[int]:
    return [kp.local_index for kp in keypairs if kp is not None]


class Peer:
    """A configured peer. Read its attributes; change it through the Device.

    Its identity, preshared key and AllowedIPs are configuration; everything
    that moves with traffic (endpoint, keys, timers, counters) lives in its
    :attr:`session` and is read here through properties.
    """

    __slots__ = (
        "_allowed_ips",
        "_cookie_key",
        "_preshared_key",
        "_public_key",
        "_session",
        "_static_static",
    )

    def __init__(
        self,
        public_key: bytes,
        *,
        want_handshake: Callable[[Session, float], None],
        wakeup: WakeUp,
    ) -> None:
        self._public_key = public_key
        self._preshared_key = noise.ZERO_PSK
        self._allowed_ips: list[IPNetwork] = []
        self._cookie_key = noise.cookie_key(public_key)
        self._static_static: bytes | None = None
        self._session = Session(self, want_handshake=want_handshake, wakeup=wakeup)

    def __repr__(self) -> str:
        return f"<Peer {self._public_key.hex()[:8]}… endpoint={self._session.endpoint}>"

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def preshared_key(self) -> bytes | None:
        psk = self._preshared_key
        return None if psk == noise.ZERO_PSK else psk

    @property
    def handshake_psk(self) -> bytes:
        """The Q of the handshake: the preshared key, or 32 zero bytes (§5.2)."""
        return self._preshared_key

    @property
    def cookie_key(self) -> bytes:
        """HASH(LABEL_COOKIE || its public key): opens the cookie replies it sends."""
        return self._cookie_key

    @property
    def static_static(self) -> bytes | None:
        """DH(our static private key, its public key); None for a low-order key."""
        return self._static_static

    @property
    def session(self) -> Session:
        return self._session

    @property
    def endpoint(self) -> Endpoint | None:
        return self._session.endpoint

    @property
    def allowed_ips(self) -> list[IPNetwork]:
        return list(self._allowed_ips)

    @property
    def persistent_keepalive(self) -> int | None:
        return self._session.keepalive_interval or None

    @property
    def last_handshake_unix(self) -> float | None:
        """Wall-clock time of the last completed handshake."""
        return self._session.last_handshake_unix

    @property
    def rx_bytes(self) -> int:
        return self._session.rx_bytes

    @property
    def tx_bytes(self) -> int:
        return self._session.tx_bytes

    @property
    def has_session(self) -> bool:
        """True when a current keypair exists (it may still be too old to use)."""
        return self._session.current is not None

    # --- changed by the Device only ---------------------------------------------

    def set_preshared_key(self, psk: bytes) -> None:
        self._preshared_key = psk

    def set_static_static(self, shared: bytes | None) -> None:
        self._static_static = shared

    def add_allowed_ip(self, network: IPNetwork) -> None:
        self._allowed_ips.append(network)

    def remove_allowed_ip(self, network: IPNetwork) -> None:
        self._allowed_ips.remove(network)

    def clear_allowed_ips(self) -> list[IPNetwork]:
        """Forget every AllowedIP; returns them for the device to unroute."""
        networks, self._allowed_ips = self._allowed_ips, []
        return networks
