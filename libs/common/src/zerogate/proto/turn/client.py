"""The sans-IO TURN client: one allocation on one TURN server (RFC 8656 over UDP).

An agent runs ICE, TURN and WireGuard on one UDP socket (DESIGN.md, "One UDP
socket per agent"); :class:`Allocation` is the TURN part for one server. It
never reads the clock, never sleeps and never touches a socket.

How the shell drives it (and nothing else):

1. Make one per TURN server: ``Allocation(server, username, password, now=...)``.
   It queues a Binding (the server-reflexive address, then a keepalive every
   :data:`KEEPALIVE_INTERVAL`) and an Allocate at once.
2. A datagram arrives from ``server`` on the agent's socket:

   * ChannelData (first byte 0x40-0x4F): :meth:`Allocation.decapsulate` gives
     ``(peer, payload)``, or ``None`` (drop);
   * STUN: :meth:`Allocation.handle_datagram`; ``True`` means it was the answer
     to one of this allocation's requests and is consumed. Otherwise try
     :meth:`Allocation.decapsulate` (a Data indication), else it is not TURN's.

   A payload that came out of :meth:`~Allocation.decapsulate` arrived on the
   relayed address :meth:`Allocation.relayed_address_for` ``(peer)``: that is
   the local base to give ICE.
3. To reach a peer through the relay, call :meth:`Allocation.bind_peer` once
   (CreatePermission and ChannelBind, then both kept alive); then
   :meth:`Allocation.encapsulate` frames each payload: ChannelData once the
   channel is bound, a Send indication while only the permission is, ``None``
   before (the first ICE checks to a new peer are dropped; ICE retransmits).
   Send the result to ``server``. For runs of equal-sized datagrams sent with
   GSO, :meth:`Allocation.channel_for` gives the channel number and the shell
   frames ``number, length, payload`` itself (no padding over UDP, RFC 8656
   §12.5). :meth:`Allocation.unbind_peer` stops using and refreshing both.
4. After any input (and after calling any method that takes ``now``) drain
   :meth:`Allocation.poll_transmit` (send ``data`` to ``destination``, always the
   server, from the agent's socket) and :meth:`Allocation.poll_event`, then re-arm
   one timer at :meth:`Allocation.poll_timeout` and call
   :meth:`Allocation.handle_timeout` when it fires.

Events (facts, frozen dataclasses): :class:`Allocated` (again after a credential
rollover, with the new relayed addresses), :class:`ServerReflexive` (the mapped
address, first learned or changed), :class:`ChannelBound`, :class:`PeerRefused`,
:class:`AllocationFailed`, :class:`AllocationLost`, :class:`AllocationClosed`
(the last three are final).

Decisions:

* Requests are retransmitted RFC 8489 §6.2.1 style but with a short total:
  RTO :data:`REQUEST_RTO` (500 ms) doubling, a request fails
  :data:`REQUEST_TIMEOUT` (8 s, Firezone's figure) after its first transmission
  (transmissions at 0, 0.5, 1.5, 3.5 and 7.5 s).
* Long-term credentials (RFC 8489 §9.2): the first Allocate goes unsigned and
  learns REALM and NONCE from the 401; every later request is signed
  (MESSAGE-INTEGRITY, HMAC-SHA1) and carries FINGERPRINT. A 438 (stale nonce)
  retries with the new nonce, at most :data:`MAX_AUTH_RETRIES` times per request.
  Every answer to a signed request must carry a valid MESSAGE-INTEGRITY, else it
  is dropped as if never received, except 401 and 438, which are unsigned by
  nature and only ever make us retry.
* Lifetimes are counted from the first transmission of the request that got the
  answer (the server started its clock later). The allocation is refreshed at
  half its granted lifetime; a Refresh that times out is retried until the
  allocation would have expired (then :class:`AllocationLost`).
* A permission lives 300 s (RFC 8656 §9) and a channel 600 s (RFC 8656 §12);
  each is refreshed :data:`REFRESH_MARGIN` (60 s) before it lapses:
  CreatePermission every 240 s, ChannelBind every 540 s. A successful
  ChannelBind also refreshes the permission (RFC 8656 §11.2).
* Channel numbers count up from 0x4000 (0x4000-0x4FFF, RFC 8656 §12) and a
  number is never given to another peer within one allocation, which also keeps
  clear of the server's 5-minute rebind cooldown. Past 0x4FFF a peer is reached
  with Send indications only.
* A 437 (allocation mismatch) to any request means the server no longer knows
  the allocation (it restarted, or it expired): :class:`AllocationLost`. A server
  restart is noticed at the next Refresh, CreatePermission or ChannelBind.
* Credentials: the server ties an allocation to its username (RFC 8656 §5: 441
  otherwise), and a TURN REST username stops working at its expiry. So
  :meth:`Allocation.update_credentials` before the allocation exists takes
  effect at once; afterwards the new credentials replace the allocation
  ("rollover": Refresh with lifetime 0 under the old credentials, then a new
  Allocate under the new ones, and every bound peer bound again) at the last
  Refresh before the old credentials expire (``expires`` given), or at the next
  Refresh (``expires`` unknown). The relayed address changes: a new
  :class:`Allocated` says so. Data cannot be relayed for the two round trips
  the rollover takes.
* :meth:`Allocation.close` sends a Refresh with lifetime 0 and reports
  :class:`AllocationClosed` when it is answered or has timed out.
* Garbage never raises and changes no state: :meth:`handle_datagram` and
  :meth:`decapsulate` answer ``False`` / ``None``.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from zerogate.proto import stun
from zerogate.proto.net import Endpoint, PeerAddr, RelayAddr
from zerogate.proto.stun import Attr, Message, MessageClass, Method
from zerogate.proto.turn.channeldata import CHANNEL_NUMBER_MAX, CHANNEL_NUMBER_MIN
from zerogate.proto.turn.credentials import long_term_key
from zerogate.proto.turn.outputs import Transmit

__all__ = [
    "CHANNEL_LIFETIME",
    "DEFAULT_LIFETIME",
    "KEEPALIVE_INTERVAL",
    "MAX_AUTH_RETRIES",
    "PERMISSION_LIFETIME",
    "REFRESH_MARGIN",
    "REQUEST_RTO",
    "REQUEST_TIMEOUT",
    "ROLLOVER_LEAD",
    "Allocated",
    "Allocation",
    "AllocationClosed",
    "AllocationEvent",
    "AllocationFailed",
    "AllocationLost",
    "AllocationState",
    "ChannelBound",
    "PeerRefused",
    "ServerReflexive",
]

DEFAULT_LIFETIME: Final = 600  # RFC 8656 §7.2: the default allocation lifetime
PERMISSION_LIFETIME: Final = 300  # RFC 8656 §9: a permission lives 300 seconds
CHANNEL_LIFETIME: Final = 600  # RFC 8656 §12: a channel binding lives 600 seconds
REFRESH_MARGIN: Final = 60.0  # refresh a permission or channel this long before it lapses
KEEPALIVE_INTERVAL: Final = 25.0  # Binding keepalive (Firezone's relay keepalive)
REQUEST_RTO: Final = 0.5  # RFC 8489 §6.2.1: initial RTO, doubled per retransmission
REQUEST_TIMEOUT: Final = 8.0  # a request fails this long after its first transmission
MAX_AUTH_RETRIES: Final = 3  # resends of one request after 401/438 challenges
ROLLOVER_LEAD: Final = 60.0  # replace the allocation this long before credentials expire
TRANSPORT_UDP: Final = 17  # RFC 8656 §18.11
FAMILY_IPV4: Final = 0x01  # RFC 8656 §18.12
FAMILY_IPV6: Final = 0x02

_COOKIE = stun.MAGIC_COOKIE.to_bytes(4, "big")
_DATA_INDICATION = stun.message_type(Method.DATA, MessageClass.INDICATION).to_bytes(2, "big")


class AllocationState(enum.StrEnum):
    """Where the allocation is. ``FAILED``, ``LOST`` and ``CLOSED`` are final."""

    ALLOCATING = "allocating"  # Allocate in flight (also during a credential rollover)
    ALLOCATED = "allocated"
    CLOSING = "closing"  # close(): Refresh with lifetime 0 in flight
    FAILED = "failed"  # the Allocate was refused or never answered
    LOST = "lost"  # the server no longer has it (437, expired, credentials refused)
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Allocated:
    """The server relays for us on ``relayed`` (one address per family), sees us at
    ``mapped``, for ``lifetime`` seconds (kept alive by the core). Again after a
    credential rollover: the previous relayed addresses are gone."""

    relayed: tuple[RelayAddr, ...]
    mapped: Endpoint | None
    lifetime: int


@dataclass(frozen=True, slots=True)
class ServerReflexive:
    """The server sees us at ``mapped`` (first learned, or changed: the NAT rebound)."""

    mapped: Endpoint


@dataclass(frozen=True, slots=True)
class ChannelBound:
    """``channel`` now carries ``peer``: ChannelData frames from here on."""

    peer: PeerAddr
    channel: int


@dataclass(frozen=True, slots=True)
class PeerRefused:
    """The server refused the permission or channel for ``peer`` (e.g. 403: a peer it
    does not relay to). The core stops asking; :meth:`Allocation.bind_peer` again
    retries."""

    peer: PeerAddr
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class AllocationFailed:
    """The Allocate was refused (``code``) or never answered (``code`` None). Final."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class AllocationLost:
    """The allocation is gone: the server forgot it (437, a restart), refused our
    credentials, or it expired unrefreshed (``code`` None). Final."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class AllocationClosed:
    """:meth:`Allocation.close` finished. Final."""


AllocationEvent = (
    Allocated
    | ServerReflexive
    | ChannelBound
    | PeerRefused
    | AllocationFailed
    | AllocationLost
    | AllocationClosed
)


class _Kind(enum.Enum):
    BINDING = enum.auto()
    ALLOCATE = enum.auto()
    REFRESH = enum.auto()
    PERMISSION = enum.auto()
    CHANNEL = enum.auto()
    CLOSE = enum.auto()  # Refresh with lifetime 0 (close, or the first half of a rollover)


@dataclass(slots=True)
class _Transaction:
    kind: _Kind
    method: int
    attributes: dict[int, object]  # without USERNAME/REALM/NONCE (added per attempt)
    authenticated: bool
    key: bytes | None
    data: bytes
    started: float  # first transmission of the first attempt: lifetimes count from here
    deadline: float
    next_send: float
    rto: float
    generation: int
    auth_retries: int = 0
    peer: PeerAddr | None = None  # CHANNEL
    ip: str | None = None  # PERMISSION
    channel: int | None = None  # CHANNEL


@dataclass(slots=True)
class _Permission:
    ip: str
    users: int = 0  # bound peers on this IP
    expires: float | None = None  # None: not installed
    pending: bool = False
    refused: bool = False


@dataclass(slots=True)
class _Peer:
    peer: PeerAddr
    channel: int | None = None  # None: not numbered yet (or numbers ran out)
    pending: bool = False
    refused: bool = False


@dataclass(slots=True)
class _Credentials:
    username: str
    password: str
    expires: float | None  # monotonic time the server stops accepting them; None: unknown
    realm: str | None = None
    key: bytes | None = field(default=None, repr=False)

    def key_for(self, realm: str) -> bytes:
        if self.key is None or self.realm != realm:
            self.realm = realm
            self.key = long_term_key(self.username, realm, self.password)
        return self.key


def _canonical(addr: Endpoint) -> Endpoint:
    return (str(ipaddress.ip_address(addr[0])), int(addr[1]))


def _family(host: str) -> int:
    return 6 if ":" in host else 4


class Allocation:
    """One TURN allocation on one server; see the module docstring for the driving."""

    def __init__(
        self,
        server: Endpoint,
        username: str,
        password: str,
        *,
        now: float,
        rng: random.Random | None = None,
        lifetime: int = DEFAULT_LIFETIME,
        software: str | None = None,
        family: int = 4,
        dual_stack: bool = False,
        credentials_expire: float | None = None,
    ) -> None:
        """``family`` 4 or 6 is the relayed address family asked for
        (REQUESTED-ADDRESS-FAMILY); ``dual_stack`` asks for an IPv6 one besides the
        IPv4 one (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2). ``credentials_expire``:
        when the server stops accepting these credentials (monotonic, like ``now``).
        Raises ``ValueError`` for a bad server address or option."""
        if family not in (4, 6) or (dual_stack and family != 4):
            raise ValueError("family must be 4 or 6; dual_stack goes with family 4")
        if lifetime < 1:
            raise ValueError("lifetime must be positive")
        self._server: Endpoint = _canonical(server)
        self._credentials = _Credentials(username, password, credentials_expire)
        self._next_credentials: _Credentials | None = None
        self._rng = rng if rng is not None else random.SystemRandom()
        self._lifetime_asked = lifetime
        self._software = software
        self._family = family
        self._dual_stack = dual_stack
        self._realm: str | None = None
        self._nonce: str | None = None
        self._state = AllocationState.ALLOCATING
        self._generation = 0  # bumped by a rollover: older answers are ignored
        self._rolling_over = False
        self._close_requested = False
        self._relayed: tuple[RelayAddr, ...] = ()
        self._relayed_by_family: dict[int, RelayAddr] = {}
        self._mapped: Endpoint | None = None
        self._lifetime = 0
        self._expires = 0.0
        self._refresh_at: float | None = None
        self._keepalive_at = now
        self._transactions: dict[bytes, _Transaction] = {}
        self._transmits: deque[Transmit] = deque()
        self._events: deque[AllocationEvent] = deque()
        # what the shell asked for
        self._peers: dict[PeerAddr, _Peer] = {}
        self._permissions: dict[str, _Permission] = {}
        # channels of this allocation: numbers are never reused for another peer
        self._next_channel = CHANNEL_NUMBER_MIN
        self._channel_numbers: dict[PeerAddr, int] = {}
        self._channel_expires: dict[int, float] = {}  # confirmed channel -> lapses at
        # data path indexes (confirmed state only)
        self._by_number: dict[int, PeerAddr] = {}  # confirmed channel -> peer
        self._bound: dict[Endpoint, bytes] = {}  # bound peer -> 2-byte channel number
        self._permitted: set[str] = set()  # peer IPs with an installed permission
        self._send_keepalive(now)
        self._send_allocate(now, authenticated=False)

    # -- properties ------------------------------------------------------------
    @property
    def server(self) -> Endpoint:
        return self._server

    @property
    def state(self) -> AllocationState:
        return self._state

    @property
    def relayed_address(self) -> RelayAddr | None:
        """The (first) relayed address, once allocated."""
        return self._relayed[0] if self._relayed else None

    @property
    def relayed_addresses(self) -> tuple[RelayAddr, ...]:
        return self._relayed

    @property
    def mapped_address(self) -> Endpoint | None:
        """Our server-reflexive address as the server sees it."""
        return self._mapped

    @property
    def lifetime(self) -> int:
        """The lifetime the server granted (0 before it did)."""
        return self._lifetime

    def relayed_address_for(self, peer: Endpoint) -> RelayAddr | None:
        """The relayed address datagrams to and from ``peer`` use (its family's)."""
        return self._relayed_by_family.get(_family(peer[0]))

    # -- inputs ----------------------------------------------------------------
    def handle_datagram(self, data: bytes | memoryview, source: Endpoint, now: float) -> bool:
        """A datagram from the agent's socket. True when it was the answer to one of
        this allocation's requests (consumed, even if it had to be dropped); False
        otherwise (try :meth:`decapsulate`, then ICE). Never raises."""
        # A STUN response: top bits 00, class bit C1 set (RFC 8489 §5), magic cookie.
        if (
            source != self._server
            or len(data) < stun.HEADER_SIZE
            or data[0] & 0xC1 != 0x01
            or bytes(data[4:8]) != _COOKIE
        ):
            return False
        tx = self._transactions.get(bytes(data[8:20]))
        if tx is None:
            return False
        try:
            message = stun.decode(data)
        except stun.RemoteProtocolError:
            return True  # ours by transaction id, but garbage: as if never received
        if message.method != tx.method:
            return True
        error = message.error_code() if message.message_class == MessageClass.ERROR else None
        if message.message_class == MessageClass.ERROR and error is None:
            return True
        code = error.code if error is not None else None
        challenge = code in (401, 438)
        if tx.key is not None and not challenge and not stun.check_integrity(message, tx.key):
            return True  # RFC 8489 §9.2.5: not authenticated, as if never received
        del self._transactions[message.transaction_id]
        if tx.generation != self._generation and tx.kind is not _Kind.BINDING:
            return True  # an answer about the allocation a rollover replaced
        if challenge and self._retry_challenged(tx, message, code, now):
            return True
        if error is None:
            self._on_success(tx, message, now)
        else:
            self._on_error(tx, error.code, error.reason, now)
        return True

    def handle_timeout(self, now: float) -> None:
        """Retransmit, refresh, roll over and expire whatever is due by ``now``."""
        for tid, tx in list(self._transactions.items()):
            if self._transactions.get(tid) is not tx:
                continue  # an earlier timeout in this loop cleared it
            if now >= tx.deadline:
                del self._transactions[tid]
                self._on_timeout(tx, now)
            elif now >= tx.next_send:
                self._transmits.append(Transmit(None, self._server, tx.data))
                tx.rto *= 2
                tx.next_send = now + tx.rto
        if self._final() or self._state is AllocationState.CLOSING:
            return
        if now >= self._keepalive_at:
            self._send_keepalive(now)
        if self._state is not AllocationState.ALLOCATED:
            return
        if now >= self._expires:
            self._lose(None, "the allocation expired unrefreshed")
            return
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            if self._rollover_due(now):
                self._start_rollover(now)
                return
            self._send_refresh(now)
        self._tend_peers(now)

    def bind_peer(self, peer: Endpoint, now: float) -> None:
        """Reach ``peer`` through the relay: CreatePermission and ChannelBind (at once
        when allocated, else once allocated), then keep both alive. Binding a peer
        again retries after a :class:`PeerRefused`."""
        if self._final() or self._state is AllocationState.CLOSING:
            return
        try:
            key = PeerAddr(_canonical(peer))
        except ValueError:
            return
        state = self._peers.get(key)
        if state is None:
            state = _Peer(key, self._channel_numbers.get(key))
            self._peers[key] = state
            self._permissions.setdefault(key[0], _Permission(key[0])).users += 1
            if state.channel is not None and state.channel in self._channel_expires:
                self._bound[key] = state.channel.to_bytes(2, "big")  # still bound
        state.refused = False
        self._permissions[key[0]].refused = False
        if self._state is AllocationState.ALLOCATED:
            self._tend_peers(now)

    def unbind_peer(self, peer: Endpoint) -> None:
        """Stop sending to ``peer`` and stop refreshing its channel and permission: they
        lapse at the server. Datagrams from it are still unwrapped until they do."""
        try:
            key = PeerAddr(_canonical(peer))
        except ValueError:
            return
        if self._peers.pop(key, None) is None:
            return
        self._bound.pop(key, None)
        for tid, tx in list(self._transactions.items()):
            if tx.kind is _Kind.CHANNEL and tx.peer == key:
                del self._transactions[tid]
        permission = self._permissions.get(key[0])
        if permission is not None:
            permission.users -= 1

    def update_credentials(
        self, username: str, password: str, *, expires: float | None = None
    ) -> None:
        """Fresh credentials (e.g. TURN REST ones before the old expire); ``expires``
        is when the server stops accepting them (monotonic). Before the allocation
        exists they take effect at once; afterwards at a rollover (module docstring)."""
        current = self._credentials
        if (username, password) == (current.username, current.password):
            current.expires = expires
            self._next_credentials = None
            return
        fresh = _Credentials(username, password, expires)
        if self._state is AllocationState.ALLOCATING and not self._rolling_over:
            self._credentials = fresh
            self._next_credentials = None
        else:
            self._next_credentials = fresh

    def close(self, now: float) -> None:
        """Delete the allocation at the server (Refresh with lifetime 0); then
        :class:`AllocationClosed`."""
        if self._final() or self._state is AllocationState.CLOSING:
            return
        self._clear_data_path()
        self._peers.clear()
        self._permissions.clear()
        self._refresh_at = None
        state, self._state = self._state, AllocationState.CLOSING
        if self._rolling_over:
            self._rolling_over = False  # its Refresh with lifetime 0 is in flight already
            return
        if state is AllocationState.ALLOCATED:
            self._transactions.clear()
            self._send(_Kind.CLOSE, Method.REFRESH, {Attr.LIFETIME: 0}, now)
            return
        signed = {
            tid: tx
            for tid, tx in self._transactions.items()
            if tx.kind is _Kind.ALLOCATE and tx.authenticated
        }
        self._transactions = signed
        if signed:
            self._close_requested = True  # the server may be creating it right now
        else:
            self._finish(AllocationState.CLOSED, AllocationClosed())

    # -- outputs ---------------------------------------------------------------
    def poll_transmit(self) -> Transmit | None:
        """Next datagram to send (to the server, from the agent's socket), or None."""
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> AllocationEvent | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` should next be called, or None."""
        deadlines = [min(tx.next_send, tx.deadline) for tx in self._transactions.values()]
        if self._state in (AllocationState.ALLOCATING, AllocationState.ALLOCATED):
            deadlines.append(self._keepalive_at)
        if self._state is AllocationState.ALLOCATED:
            deadlines.append(self._expires)
            if self._refresh_at is not None:
                deadlines.append(self._refresh_at)
            deadlines.extend(self._peer_deadlines())
        return min(deadlines, default=None)

    # -- data path (per packet: no message objects) ------------------------------
    def channel_for(self, peer: Endpoint) -> int | None:
        """The channel number bound for ``peer`` (as a socket writes it), or None."""
        header = self._bound.get(peer)
        if header is None:
            return None
        return (header[0] << 8) | header[1]

    def encapsulate(self, peer: Endpoint, payload: bytes | memoryview) -> bytes | None:
        """``payload`` framed for ``peer``: ChannelData on a bound channel (no padding
        over UDP, RFC 8656 §12.5), a Send indication while only the permission is
        installed, else None."""
        header = self._bound.get(peer)
        if header is not None:
            return header + len(payload).to_bytes(2, "big") + payload
        try:
            key = PeerAddr(_canonical(peer))
        except ValueError:
            return None
        header = self._bound.get(key)
        if header is not None:
            return header + len(payload).to_bytes(2, "big") + payload
        if key not in self._peers or key[0] not in self._permitted:
            return None
        if len(payload) > 0xFFFF - 64:
            return None
        message = Message(
            Method.SEND,
            MessageClass.INDICATION,
            self._new_tid(),
            {Attr.XOR_PEER_ADDRESS: key, Attr.DATA: bytes(payload)},
        )
        return stun.encode(message)

    def decapsulate(
        self, data: bytes | memoryview, source: Endpoint
    ) -> tuple[PeerAddr, bytes] | None:
        """ChannelData or a Data indication from the server: ``(peer, payload)``, or
        None (not from the server, unknown channel, no permission, malformed)."""
        if source != self._server or len(data) < 4:
            return None
        if data[0] & 0xC0 == 0x40:
            peer = self._by_number.get((data[0] << 8) | data[1])
            if peer is None:
                return None
            end = 4 + ((data[2] << 8) | data[3])
            if end > len(data):
                return None
            return peer, bytes(data[4:end])
        if bytes(data[0:2]) != _DATA_INDICATION:
            return None
        try:
            message = stun.decode(data)
        except stun.RemoteProtocolError:
            return None
        address = message.get_address(Attr.XOR_PEER_ADDRESS)
        payload = message.get_bytes(Attr.DATA)
        if address is None or payload is None or message.unknown_required:
            return None
        if address[0] not in self._permitted:
            return None
        return PeerAddr(address), payload

    # -- requests --------------------------------------------------------------
    def _send(
        self,
        kind: _Kind,
        method: int,
        attributes: dict[int, object],
        now: float,
        *,
        authenticated: bool = True,
        started: float | None = None,
        auth_retries: int = 0,
        peer: PeerAddr | None = None,
        ip: str | None = None,
        channel: int | None = None,
    ) -> None:
        attrs = dict(attributes)
        if self._software is not None:
            attrs[Attr.SOFTWARE] = self._software
        key: bytes | None = None
        if authenticated and self._realm is not None and self._nonce is not None:
            credentials = self._credentials
            attrs[Attr.USERNAME] = credentials.username
            attrs[Attr.REALM] = self._realm
            attrs[Attr.NONCE] = self._nonce
            key = credentials.key_for(self._realm)
        tid = self._new_tid()
        request = Message(method, MessageClass.REQUEST, tid, attrs)
        data = stun.encode(request, key=key, fingerprint=True)
        self._transactions[tid] = _Transaction(
            kind=kind,
            method=method,
            attributes=dict(attributes),
            authenticated=key is not None,
            key=key,
            data=data,
            started=now if started is None else started,
            deadline=now + REQUEST_TIMEOUT,
            next_send=now + REQUEST_RTO,
            rto=REQUEST_RTO,
            generation=self._generation,
            auth_retries=auth_retries,
            peer=peer,
            ip=ip,
            channel=channel,
        )
        self._transmits.append(Transmit(None, self._server, data))

    def _new_tid(self) -> bytes:
        return self._rng.getrandbits(96).to_bytes(12, "big")

    def _send_keepalive(self, now: float) -> None:
        self._keepalive_at = now + KEEPALIVE_INTERVAL
        if not any(tx.kind is _Kind.BINDING for tx in self._transactions.values()):
            self._send(_Kind.BINDING, Method.BINDING, {}, now, authenticated=False)

    def _send_allocate(self, now: float, *, authenticated: bool) -> None:
        attrs: dict[int, object] = {
            Attr.REQUESTED_TRANSPORT: TRANSPORT_UDP,
            Attr.LIFETIME: self._lifetime_asked,
        }
        if self._dual_stack:
            attrs[Attr.ADDITIONAL_ADDRESS_FAMILY] = FAMILY_IPV6
        elif self._family == 6:
            attrs[Attr.REQUESTED_ADDRESS_FAMILY] = FAMILY_IPV6
        self._send(_Kind.ALLOCATE, Method.ALLOCATE, attrs, now, authenticated=authenticated)

    def _send_refresh(self, now: float) -> None:
        self._send(_Kind.REFRESH, Method.REFRESH, {Attr.LIFETIME: self._lifetime_asked}, now)

    def _retry_challenged(
        self, tx: _Transaction, message: Message, code: int | None, now: float
    ) -> bool:
        """Learn REALM and NONCE from a 401/438 and send the request again as a new
        transaction; False when that is no use (the answer then counts as an error)."""
        realm = message.get_str(Attr.REALM)
        nonce = message.get_str(Attr.NONCE)
        if nonce is None or (realm is None and self._realm is None):
            return False
        if code == 401 and tx.authenticated:
            return False  # signed and still refused: the credentials are wrong or expired
        if tx.auth_retries >= MAX_AUTH_RETRIES:
            return False
        if realm is not None:
            self._realm = realm
        self._nonce = nonce
        self._send(
            tx.kind,
            tx.method,
            tx.attributes,
            now,
            started=tx.started,
            auth_retries=tx.auth_retries + 1,
            peer=tx.peer,
            ip=tx.ip,
            channel=tx.channel,
        )
        return True

    # -- answers ----------------------------------------------------------------
    def _on_success(self, tx: _Transaction, message: Message, now: float) -> None:
        kind = tx.kind
        if kind is _Kind.BINDING:
            mapped = message.get_address(Attr.XOR_MAPPED_ADDRESS)
            if mapped is not None:
                self._learn_mapped(mapped)
        elif kind is _Kind.ALLOCATE:
            self._on_allocated(tx, message, now)
        elif kind is _Kind.REFRESH:
            granted = message.get_int(Attr.LIFETIME)
            if granted is None or granted <= 0:
                self._lose(None, "Refresh answered without a lifetime")
            else:
                self._set_lifetime(tx.started, granted)
        elif kind is _Kind.CLOSE:
            self._closed_at_server(now)
        elif kind is _Kind.PERMISSION:
            assert tx.ip is not None
            self._permission_installed(tx.ip, tx.started)
        else:
            assert tx.peer is not None
            assert tx.channel is not None
            self._channel_bound(tx.peer, tx.channel, tx.started)

    def _on_allocated(self, tx: _Transaction, message: Message, now: float) -> None:
        if self._close_requested:
            self._close_requested = False
            self._send(_Kind.CLOSE, Method.REFRESH, {Attr.LIFETIME: 0}, now)
            return
        relayed = tuple(
            RelayAddr(_canonical(address))
            for address in message.get_all_addresses(Attr.XOR_RELAYED_ADDRESS)
        )
        granted = message.get_int(Attr.LIFETIME)
        if not relayed or granted is None or granted <= 0:
            reason = "Allocate answered without a relayed address or a lifetime"
            self._finish(AllocationState.FAILED, AllocationFailed(None, reason))
            return
        self._state = AllocationState.ALLOCATED
        self._relayed = relayed
        self._relayed_by_family = {}
        for address in relayed:
            self._relayed_by_family.setdefault(_family(address[0]), address)
        self._set_lifetime(tx.started, granted)
        mapped = message.get_address(Attr.XOR_MAPPED_ADDRESS)
        self._events.append(Allocated(relayed, mapped and _canonical(mapped), granted))
        if mapped is not None:
            self._learn_mapped(mapped)
        self._tend_peers(now)

    def _set_lifetime(self, started: float, granted: int) -> None:
        self._lifetime = granted
        self._expires = started + granted
        self._refresh_at = started + granted / 2

    def _learn_mapped(self, mapped: Endpoint) -> None:
        mapped = _canonical(mapped)
        if mapped != self._mapped:
            self._mapped = mapped
            self._events.append(ServerReflexive(mapped))

    def _on_error(self, tx: _Transaction, code: int, reason: str, now: float) -> None:
        kind = tx.kind
        if kind is _Kind.BINDING:
            return  # a keepalive is a keepalive
        if kind is _Kind.ALLOCATE:
            if self._close_requested:
                self._finish(AllocationState.CLOSED, AllocationClosed())
            else:
                self._finish(AllocationState.FAILED, AllocationFailed(code, reason))
        elif kind is _Kind.CLOSE:
            self._closed_at_server(now)  # 437: gone already; else it lapses on its own
        elif kind is _Kind.REFRESH or code in (401, 437, 441):
            self._lose(code, reason)
        elif kind is _Kind.PERMISSION:
            permission = self._permissions.get(tx.ip or "")
            if permission is not None:
                permission.pending = False
                permission.refused = True
            for wanted in self._peers.values():
                if wanted.peer[0] == tx.ip and not wanted.refused:
                    wanted.refused = True
                    self._events.append(PeerRefused(wanted.peer, code, reason))
        else:
            assert tx.peer is not None
            state = self._peers.get(tx.peer)
            if state is not None:
                state.pending = False
                if not state.refused:
                    state.refused = True
                    self._events.append(PeerRefused(tx.peer, code, reason))

    def _on_timeout(self, tx: _Transaction, now: float) -> None:
        kind = tx.kind
        if kind is _Kind.ALLOCATE:
            if self._close_requested:
                self._finish(AllocationState.CLOSED, AllocationClosed())
            else:
                self._finish(AllocationState.FAILED, AllocationFailed(None, "no answer"))
        elif kind is _Kind.CLOSE:
            self._closed_at_server(now)
        elif self._state is not AllocationState.ALLOCATED:
            return
        elif kind is _Kind.REFRESH:
            if now < self._expires:
                self._send_refresh(now)  # until handle_timeout finds it expired
        elif kind is _Kind.PERMISSION:
            permission = self._permissions.get(tx.ip or "")
            if permission is not None:
                permission.pending = False  # _tend_peers asks again
        elif kind is _Kind.CHANNEL:
            state = self._peers.get(tx.peer) if tx.peer is not None else None
            if state is not None:
                state.pending = False

    # -- peers -----------------------------------------------------------------
    def _tend_peers(self, now: float) -> None:
        """Lapse what expired; send the CreatePermission and ChannelBind that are due."""
        for ip, permission in list(self._permissions.items()):
            if permission.expires is not None and now >= permission.expires:
                permission.expires = None
                self._permitted.discard(ip)
            if permission.users <= 0:
                if permission.expires is None and not permission.pending:
                    del self._permissions[ip]
                continue
            if permission.pending or permission.refused:
                continue
            if permission.expires is None or now >= permission.expires - REFRESH_MARGIN:
                permission.pending = True
                port = next(s.peer[1] for s in self._peers.values() if s.peer[0] == ip)
                self._send(
                    _Kind.PERMISSION,
                    Method.CREATE_PERMISSION,
                    {Attr.XOR_PEER_ADDRESS: (ip, port)},
                    now,
                    ip=ip,
                )
        for number, expires in list(self._channel_expires.items()):
            if now >= expires:
                del self._channel_expires[number]
                self._bound.pop(self._by_number.pop(number), None)
        for state in self._peers.values():
            if state.pending or state.refused:
                continue
            if state.channel is None:
                if self._next_channel > CHANNEL_NUMBER_MAX:
                    continue  # numbers ran out: Send indications only
                state.channel = self._next_channel
                self._next_channel += 1
                self._channel_numbers[state.peer] = state.channel
            lapses = self._channel_expires.get(state.channel)
            if lapses is None or now >= lapses - REFRESH_MARGIN:
                state.pending = True
                self._send(
                    _Kind.CHANNEL,
                    Method.CHANNEL_BIND,
                    {Attr.CHANNEL_NUMBER: state.channel, Attr.XOR_PEER_ADDRESS: state.peer},
                    now,
                    peer=state.peer,
                    channel=state.channel,
                )

    def _peer_deadlines(self) -> list[float]:
        out = list(self._channel_expires.values())
        for permission in self._permissions.values():
            if permission.expires is not None:
                out.append(permission.expires)
                if permission.users > 0 and not permission.pending and not permission.refused:
                    out.append(permission.expires - REFRESH_MARGIN)
            elif permission.users > 0 and not permission.pending and not permission.refused:
                out.append(0.0)  # wanted and not asked for yet: now
        for state in self._peers.values():
            if state.pending or state.refused:
                continue
            if state.channel is None:
                if self._next_channel <= CHANNEL_NUMBER_MAX:
                    out.append(0.0)
                continue
            expires = self._channel_expires.get(state.channel)
            out.append(0.0 if expires is None else expires - REFRESH_MARGIN)
        return out

    def _permission_installed(self, ip: str, started: float) -> None:
        permission = self._permissions.get(ip)
        if permission is None:
            return
        permission.pending = False
        permission.expires = max(permission.expires or 0.0, started + PERMISSION_LIFETIME)
        self._permitted.add(ip)

    def _channel_bound(self, peer: PeerAddr, number: int, started: float) -> None:
        # RFC 8656 §11.2: a ChannelBind installs or refreshes the permission too.
        permission = self._permissions.get(peer[0])
        if permission is not None:
            permission.expires = max(permission.expires or 0.0, started + PERMISSION_LIFETIME)
            self._permitted.add(peer[0])
        first = number not in self._channel_expires
        self._channel_expires[number] = started + CHANNEL_LIFETIME
        self._by_number[number] = peer
        state = self._peers.get(peer)
        if state is None:
            return
        state.pending = False
        self._bound[peer] = number.to_bytes(2, "big")
        if first:
            self._events.append(ChannelBound(peer, number))

    # -- the end of an allocation, and rollover ---------------------------------
    def _final(self) -> bool:
        return self._state in (
            AllocationState.FAILED,
            AllocationState.LOST,
            AllocationState.CLOSED,
        )

    def _finish(self, state: AllocationState, event: AllocationEvent) -> None:
        self._state = state
        self._transactions.clear()
        self._clear_data_path()
        self._peers.clear()
        self._permissions.clear()
        self._refresh_at = None
        self._events.append(event)

    def _lose(self, code: int | None, reason: str) -> None:
        self._finish(AllocationState.LOST, AllocationLost(code, reason))

    def _clear_data_path(self) -> None:
        self._bound.clear()
        self._by_number.clear()
        self._channel_expires.clear()
        self._permitted.clear()
        self._relayed = ()
        self._relayed_by_family = {}

    def _rollover_due(self, now: float) -> bool:
        """New credentials wait, and the old ones would not last to the next Refresh."""
        if self._next_credentials is None:
            return False
        old_expiry = self._credentials.expires
        return old_expiry is None or old_expiry - ROLLOVER_LEAD <= now + self._lifetime / 2

    def _start_rollover(self, now: float) -> None:
        """Delete this allocation under the old credentials, then allocate anew."""
        self._transactions = {
            tid: tx for tid, tx in self._transactions.items() if tx.kind is _Kind.BINDING
        }
        self._clear_data_path()
        self._channel_numbers.clear()
        self._next_channel = CHANNEL_NUMBER_MIN
        for state in self._peers.values():
            state.channel = None
            state.pending = False
        for permission in self._permissions.values():
            permission.expires = None
            permission.pending = False
        self._state = AllocationState.ALLOCATING
        self._rolling_over = True
        self._send(_Kind.CLOSE, Method.REFRESH, {Attr.LIFETIME: 0}, now)

    def _closed_at_server(self, now: float) -> None:
        if not self._rolling_over:
            self._finish(AllocationState.CLOSED, AllocationClosed())
            return
        self._rolling_over = False
        if self._next_credentials is not None:
            self._credentials = self._next_credentials
            self._next_credentials = None
        self._generation += 1
        self._send_allocate(now, authenticated=True)
