"""The sans-IO TURN server (RFC 8656 over UDP, RFC 8489 long-term credentials).

How the shell drives it (and nothing else):

0. After binding the listen sockets, tell the core where they are
   (:meth:`Server.listening_on`): their ports are the relay's own and never a peer.
1. A datagram arrives on the listen socket (port 3478):
   if ``data[0] & 0xC0 == 0x40`` (ChannelData) call :meth:`Server.channel_to_peer`;
   a result ``(relay, peer, payload)`` is sent from the relay socket ``relay`` to
   ``peer``; ``None`` means drop. Anything else goes to
   :meth:`Server.handle_client_datagram`.
2. A datagram arrives on a relay socket: call :meth:`Server.peer_to_client`; a
   result ``(client, framed)`` is sent from the listen socket to ``client``;
   ``None`` means "no channel is bound for that peer": then call
   :meth:`Server.handle_peer_datagram`, which sends a Data indication if a
   permission exists, or drops the datagram.
3. After feeding input, drain :meth:`Server.poll_command` **first**, carrying out
   each order before polling the next: for :class:`OpenRelaySocket` bind the
   socket and report :meth:`Server.handle_relay_bound` or
   :meth:`Server.handle_relay_bind_failed` (either may queue further commands);
   for :class:`CloseRelaySocket` close it. Then drain :meth:`Server.poll_transmit`.
4. Re-arm one timer at :meth:`Server.poll_timeout`; when it fires call
   :meth:`Server.handle_timeout`.

Relay ports: the core picks each allocation's port itself, at random from
``relay_port_min..relay_port_max``, skipping ports it already uses. A dual-stack
allocation uses the same port number on its IPv4 and IPv6 relay address. An
Allocate is answered only once the shell has bound every relay socket of it. When
a bind fails (another local socket holds the port, e.g. an ephemeral port of an
outgoing connection: Linux's ``net.ipv4.ip_local_port_range`` overlaps the
default range) the core closes the sibling socket already bound, picks another
port it has not tried for this allocation and orders new sockets; only when every
port of the range has been tried does the client get 508 (Insufficient Capacity).
A port reserved under a RESERVATION-TOKEN is the only one that token can have:
its bind failing answers 508 at once.

Addresses are ``(ip literal, port)`` 2-tuples exactly as a per-family socket
reports them (drop the flowinfo and scope of IPv6 4-tuples; use one socket per
family rather than a dual-stack socket, whose ``::ffff:a.b.c.d`` forms the core
treats as IPv6): :data:`~zerogate.proto.net.ClientAddr` for clients,
:data:`~zerogate.proto.net.PeerAddr` for peers,
:data:`~zerogate.proto.net.RelayAddr` for relayed addresses.

Time: ``now`` is any monotonic clock in seconds (``loop.time()``). The TURN REST
usernames carry a unix expiry, so give the constructor ``unix_now`` (``time.time()``
at the same instant); the core derives the wall clock from it. Without
``unix_now`` a ``now`` above 1e9 is taken to be unix time; a smaller one leaves the
wall clock unknown and then every REST username is refused (401) rather than an
expired one accepted.

Decisions (RFC 8656 leaves them to the server):

* Authentication, nonces and the one TURN REST rule live in
  :mod:`zerogate.proto.turn.auth` and :mod:`zerogate.proto.turn.credentials`.
* Responses to authenticated Allocate, Refresh, CreatePermission and ChannelBind
  requests are cached per (client address, transaction id) for
  ``transaction_cache_seconds`` and replayed to retransmissions (RFC 8489 §6.3.1).
  A retransmitted Allocate that arrives while its relay sockets are still being
  bound is dropped: the answer follows.
* Every response is encoded by :meth:`Server._encode` (signed when the request
  was authenticated, with FINGERPRINT).
* EVEN-PORT gives an even port; with its R bit the next port is held for 30 s
  under a RESERVATION-TOKEN (RFC 8656 §7.2), which a later Allocate may claim
  (an unknown or expired token gets 508). coturn's ``turnutils_uclient`` does this
  for its RTP/RTCP pairs.
* Channel numbers are 0x4000-0x4FFF (RFC 8656 §12); ``rfc5766_channel_numbers``
  widens them to RFC 5766's 0x4000-0x7FFF, which ``turnutils_uclient`` uses.
* After a channel binding expires, its number and its peer stay unusable for any
  other binding for 300 s (RFC 8656 §12).
* Over UDP, ChannelData is sent without padding (RFC 8656 §12.5).
* SOFTWARE goes only into authenticated responses, so that answers to spoofed
  unauthenticated requests stay small (reflection amplification, RFC 8656 §21.3).
* The relay is never its own peer (:mod:`zerogate.proto.turn.peers`): ChannelBind
  and CreatePermission to one of its own sockets get 403, Send indications to them
  and datagrams from them are dropped, and STUN arriving on the listen socket
  from one of them is dropped.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from zerogate.proto import stun
from zerogate.proto.net import ClientAddr, Endpoint, PeerAddr, RelayAddr
from zerogate.proto.stun import Attr, Message, MessageClass, Method
from zerogate.proto.turn.allocation import Opening, RelayAllocation
from zerogate.proto.turn.auth import Authenticated, Authenticator, Refused
from zerogate.proto.turn.channeldata import (
    CHANNEL_NUMBER_MAX,
    CHANNEL_NUMBER_MIN,
    LEGACY_CHANNEL_NUMBER_MAX,
)
from zerogate.proto.turn.config import ServerConfig
from zerogate.proto.turn.outputs import (
    AllocationId,
    CloseRelaySocket,
    Command,
    OpenRelaySocket,
    Transmit,
)
from zerogate.proto.turn.peers import PeerFilter
from zerogate.proto.turn.ports import RESERVATION_LIFETIME, RelayPorts

__all__ = ["REASONS", "Server", "Stats"]

_log = logging.getLogger(__name__)

TRANSPORT_UDP = 17  # RFC 8656 §18.11: REQUESTED-TRANSPORT protocol number for UDP
FAMILY_IPV4 = 0x01  # RFC 8656 §18.12
FAMILY_IPV6 = 0x02
RESERVATION_TOKEN_SIZE = 8  # RFC 8656 §18.9
MAX_CACHED_RESPONSES = 65_536  # bound on the retransmission cache
_PLAUSIBLE_UNIX_TIME = 1e9  # 2001-09-09: a larger `now` is taken to be unix time

REASONS: dict[int, str] = {
    400: "Bad Request",  # RFC 8489 §14.8
    401: "Unauthenticated",
    403: "Forbidden",  # RFC 8656 §18.14
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached",
    500: "Server Error",
    508: "Insufficient Capacity",
}

_TURN_METHODS = frozenset(
    {Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND}
)


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts for /metrics (``relay.allocations.active`` and friends)."""

    allocations: int
    permissions: int
    channels: int
    responses_by_code: dict[int, int]  # 200 for successes
    dropped: int  # datagrams dropped (garbage, no permission, unknown channel ...)


class _Reply(Exception):
    """Internal: abort request processing with an error response."""

    def __init__(self, code: int, *, extra: dict[int, object] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra or {}


def _canonical(addr: Endpoint) -> Endpoint:
    """The form a socket reports: compressed IPv6, dotted IPv4."""
    return (str(ipaddress.ip_address(addr[0])), addr[1])


class Server:
    """One TURN server: all allocations of one listen address.

    Thread-unsafe and IO-free; time comes in as ``now`` (seconds, monotonic).
    No method raises on bad input from the network.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        now: float,
        unix_now: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        config.validate()
        self._config = config
        # Without a wall clock, REST usernames ("<unix expiry>:<id>") cannot be checked;
        # rather than accept expired ones, refuse them all (secure default).
        self._unix_offset: float | None
        if unix_now is not None:
            self._unix_offset = unix_now - now
        elif now >= _PLAUSIBLE_UNIX_TIME:
            self._unix_offset = 0.0  # the shell's clock is the unix clock itself
        else:
            self._unix_offset = None
            if config.auth_secret is not None:
                _log.warning(
                    "TURN REST credentials are refused: pass unix_now=time.time() to Server()"
                )
        self._rng = rng if rng is not None else random.SystemRandom()
        self._auth = Authenticator(
            realm=config.realm,
            nonce_secret=config.nonce_secret,
            nonce_lifetime=config.nonce_lifetime,
            static_users=config.static_users,
            auth_secret=config.auth_secret,
            max_credential_lifetime=config.max_credential_lifetime,
        )
        self._peers = PeerFilter(
            own_addresses=[
                *config.own_addresses,
                *config.relay_addresses_v4,
                *config.relay_addresses_v6,
            ],
            own_ports=[range(config.relay_port_min, config.relay_port_max + 1)],
            allow=config.allow_peers,
        )
        self._relay_ip = {
            4: config.relay_addresses_v4[0] if config.relay_addresses_v4 else None,
            6: config.relay_addresses_v6[0] if config.relay_addresses_v6 else None,
        }
        self._ports = RelayPorts(config.relay_port_min, config.relay_port_max, self._rng)
        self._allocations: dict[ClientAddr, RelayAllocation] = {}
        self._by_relay: dict[RelayAddr, RelayAllocation] = {}
        self._opening: dict[ClientAddr, RelayAllocation] = {}
        self._opening_by_relay: dict[RelayAddr, RelayAllocation] = {}
        self._per_user: dict[str, int] = {}
        self._next_id = 1
        # fast-path indexes, kept in step with channels and permissions
        self._chan_out: dict[tuple[ClientAddr, int], tuple[RelayAddr, PeerAddr]] = {}
        self._chan_in: dict[tuple[RelayAddr, PeerAddr], tuple[ClientAddr, bytes]] = {}
        self._tx_cache: OrderedDict[tuple[ClientAddr, bytes], tuple[float, bytes]] = OrderedDict()
        self._channel_max = (
            LEGACY_CHANNEL_NUMBER_MAX if config.rfc5766_channel_numbers else CHANNEL_NUMBER_MAX
        )
        self._timers: list[tuple[float, int, ClientAddr]] = []
        self._timer_seq = 0
        self._transmits: deque[Transmit] = deque()
        self._commands: deque[Command] = deque()
        self._responses: dict[int, int] = {}
        self._dropped = 0

    # -- input ---------------------------------------------------------------
    def listening_on(self, endpoints: Iterable[Endpoint]) -> None:
        """The listen sockets are bound on ``endpoints`` (ports resolved): they are the
        relay's own and never a peer, on any local address when one is a wildcard."""
        for host, port in endpoints:
            self._peers.add_listen_endpoint(host, port)

    def handle_client_datagram(self, data: bytes, source: ClientAddr, now: float) -> None:
        """A datagram from a client on the listen socket: a STUN message or ChannelData."""
        if len(data) >= 1 and data[0] & 0xC0 == 0x40:
            routed = self.channel_to_peer(data, source)
            if routed is None:
                self._dropped += 1
            else:
                relay, peer, payload = routed
                self._transmits.append(Transmit(relay, peer, bytes(payload)))
            return
        if self._from_ourselves(source):
            self._dropped += 1  # one of our own sockets: never serve ourselves
            return
        try:
            message = stun.decode(data)
        except stun.RemoteProtocolError as exc:
            header = exc.header
            if header is not None and header[1] == MessageClass.REQUEST:
                self._send_error(source, header[0], header[2], 400, None)
            else:
                self._dropped += 1
            return
        if message.message_class == MessageClass.REQUEST:
            self._handle_request(message, source, now)
        elif message.message_class == MessageClass.INDICATION and message.method == Method.SEND:
            self._handle_send(message, source)
        else:
            self._dropped += 1

    def handle_peer_datagram(
        self, relay: RelayAddr, data: bytes, peer: PeerAddr, now: float
    ) -> None:
        """A datagram that arrived on the relay socket ``relay`` from ``peer``.

        Queues a ChannelData (channel bound) or a Data indication (permission
        installed) to the client, or drops it.
        """
        routed = self.peer_to_client(relay, data, peer)
        if routed is not None:
            self._transmits.append(Transmit(None, routed[0], routed[1]))
            return
        allocation = self._by_relay.get(relay)
        if allocation is None or allocation.expires <= now:
            self._dropped += 1
            return
        expiry = allocation.permissions.get(peer[0])
        if (
            expiry is None
            or expiry <= now
            or len(data) > 0xFFFF - 64
            or self._peers.is_own_endpoint(peer[0], peer[1])
        ):
            self._dropped += 1
            return
        indication = Message(
            Method.DATA,
            MessageClass.INDICATION,
            self._rng.getrandbits(96).to_bytes(12, "big"),
            {Attr.XOR_PEER_ADDRESS: peer, Attr.DATA: bytes(data)},
        )
        self._transmits.append(Transmit(None, allocation.client, stun.encode(indication)))

    def handle_timeout(self, now: float) -> None:
        """Expire allocations, permissions, channels and cached responses due by ``now``."""
        due: set[ClientAddr] = set()
        while self._timers and self._timers[0][0] <= now:
            due.add(heapq.heappop(self._timers)[2])
        for client in due:
            allocation = self._allocations.get(client)
            if allocation is not None:
                allocation.armed = None
                if allocation.expires <= now:
                    self._delete(allocation)
                    continue
                if allocation.sweep(now):
                    self._reindex(allocation)
                self._arm(allocation.next_deadline(), allocation)
        while self._tx_cache:
            key, (expires, _) = next(iter(self._tx_cache.items()))
            if expires > now:
                break
            del self._tx_cache[key]
        self._ports.expire(now)

    def handle_relay_bound(self, relay: RelayAddr, now: float) -> None:
        """The shell bound the socket an :class:`OpenRelaySocket` ordered."""
        allocation = self._opening_by_relay.pop(relay, None)
        if allocation is None or allocation.opening is None:
            # Nothing waits for it (a bug in the shell): do not leak the socket.
            self._commands.append(CloseRelaySocket(relay, AllocationId(0)))
            return
        opening = allocation.opening
        opening.waiting.discard(relay)
        if not opening.waiting:
            self._finish_allocate(allocation, now)

    def handle_relay_bind_failed(self, relay: RelayAddr, now: float) -> None:
        """The shell could not bind ``relay``: try another port, or answer 508 when
        every port of the range has been tried."""
        allocation = self._opening_by_relay.pop(relay, None)
        if allocation is None or allocation.opening is None:
            return
        opening = allocation.opening
        # Withdraw the orders for sibling sockets not carried out yet, close those bound.
        self._commands = deque(
            c
            for c in self._commands
            if not (isinstance(c, OpenRelaySocket) and c.allocation == allocation.id)
        )
        for sibling in allocation.relays.values():
            if sibling == relay:
                continue
            self._opening_by_relay.pop(sibling, None)
            if sibling not in opening.waiting:
                self._commands.append(CloseRelaySocket(sibling, allocation.id))
        opening.waiting.clear()
        self._release_port(allocation.port, opening.reserve_next)
        opening.tried.add(allocation.port)
        port = None
        if not opening.claimed:
            port = self._ports.pick(
                even=opening.request.attributes.get(Attr.EVEN_PORT) is not None,
                pair=opening.reserve_next,
                exclude=opening.tried,
            )
        if port is None:
            self._abandon_opening(allocation)
            error = Message(
                Method.ALLOCATE,
                MessageClass.ERROR,
                opening.request.transaction_id,
                {Attr.ERROR_CODE: stun.ErrorCode(508, REASONS[508])},
            )
            self._respond(allocation.client, opening.request, error, allocation.auth, 508, now)
            return
        self._open_relays(allocation, port)

    # -- output --------------------------------------------------------------
    def poll_transmit(self) -> Transmit | None:
        """Next datagram to send, or ``None``."""
        return self._transmits.popleft() if self._transmits else None

    def poll_command(self) -> Command | None:
        """Next socket order (:class:`OpenRelaySocket` / :class:`CloseRelaySocket`)."""
        return self._commands.popleft() if self._commands else None

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` should next be called, or ``None`` (nothing pending)."""
        deadline = self._timers[0][0] if self._timers else None
        for expires in (
            next(iter(self._tx_cache.values()))[0] if self._tx_cache else None,
            self._ports.next_expiry(),
        ):
            if expires is not None:
                deadline = expires if deadline is None else min(deadline, expires)
        return deadline

    # -- fast paths (no allocation of message objects, no logging) -----------
    def channel_to_peer(
        self, data: bytes | memoryview, source: ClientAddr
    ) -> tuple[RelayAddr, PeerAddr, memoryview] | None:
        """ChannelData from a client: ``(relay, peer, payload)`` to send, or ``None`` to drop.

        ``None`` when the channel is not bound for ``source``, the permission is
        gone, or the Length field is wrong. Expiry is enforced by the timer, not here.
        """
        if len(data) < 4:
            return None
        route = self._chan_out.get((source, (data[0] << 8) | data[1]))
        if route is None:
            return None
        end = 4 + ((data[2] << 8) | data[3])
        if end > len(data):
            return None
        view = data if type(data) is memoryview else memoryview(data)
        return route[0], route[1], view[4:end]

    def peer_to_client(
        self, relay: RelayAddr, data: bytes | memoryview, peer: PeerAddr
    ) -> tuple[ClientAddr, bytes] | None:
        """A datagram from ``peer`` on ``relay``: ``(client, channeldata_bytes)`` when a
        channel is bound for that peer, else ``None`` (then call
        :meth:`handle_peer_datagram` for the Data-indication path)."""
        route = self._chan_in.get((relay, peer))
        if route is None or len(data) > 0xFFFF:
            return None
        return route[0], route[1] + len(data).to_bytes(2, "big") + data

    # -- introspection -------------------------------------------------------
    def stats(self) -> Stats:
        """Current counts for /metrics."""
        return Stats(
            allocations=len(self._allocations),
            permissions=sum(len(a.permissions) for a in self._allocations.values()),
            channels=sum(len(a.channels) for a in self._allocations.values()),
            responses_by_code=dict(self._responses),
            dropped=self._dropped,
        )

    def state_size(self) -> int:
        """Entries held in every internal table (to show unauthenticated input adds none)."""
        return (
            len(self._allocations)
            + len(self._by_relay)
            + len(self._opening)
            + len(self._opening_by_relay)
            + len(self._per_user)
            + len(self._ports)
            + len(self._chan_out)
            + len(self._chan_in)
            + len(self._tx_cache)
            + len(self._timers)
            + sum(
                len(a.permissions) + len(a.channels) + len(a.cooldown)
                for a in self._allocations.values()
            )
        )

    def unix_time(self, now: float) -> float | None:
        """The unix time corresponding to the monotonic ``now`` (None: not known)."""
        return None if self._unix_offset is None else now + self._unix_offset

    # -- requests ------------------------------------------------------------
    def _handle_request(self, message: Message, source: ClientAddr, now: float) -> None:
        method = message.method
        tid = message.transaction_id
        if method == Method.BINDING:
            if message.unknown_required:
                self._send_error(
                    source,
                    method,
                    tid,
                    420,
                    None,
                    extra={Attr.UNKNOWN_ATTRIBUTES: message.unknown_required},
                )
                return
            self._send_success(source, message, {Attr.XOR_MAPPED_ADDRESS: _canonical(source)}, None)
            return
        if method not in _TURN_METHODS:
            self._send_error(source, method, tid, 400, None)
            return
        cached = self._tx_cache.get((source, tid))
        if cached is not None:
            self._transmits.append(Transmit(None, source, cached[1]))
            return
        if source in self._opening:
            self._dropped += 1  # its Allocate is answered once the relay sockets are bound
            return
        auth = self._auth.authenticate(message, source, now, self.unix_time(now))
        if isinstance(auth, Refused):
            extra = self._auth.challenge(source, now) if auth.challenge else None
            self._send_error(source, method, tid, auth.code, None, extra=extra)
            return
        try:
            if message.unknown_required:
                raise _Reply(420, extra={Attr.UNKNOWN_ATTRIBUTES: message.unknown_required})
            allocation = self._allocations.get(source)
            if allocation is not None and allocation.expires <= now:
                self._delete(allocation)
                allocation = None
            if allocation is not None and allocation.auth.username != auth.username:
                raise _Reply(441 if method != Method.ALLOCATE else 437)
            if method == Method.ALLOCATE:
                self._allocate(message, source, auth, allocation, now)
            elif allocation is None:
                raise _Reply(437)
            elif method == Method.REFRESH:
                self._refresh(message, source, auth, allocation, now)
            elif method == Method.CREATE_PERMISSION:
                self._create_permission(message, source, auth, allocation, now)
            else:
                self._channel_bind(message, source, auth, allocation, now)
        except _Reply as reply:
            self._send_error(source, method, tid, reply.code, auth, extra=reply.extra)

    # -- Allocate (RFC 8656 §7.2) ------------------------------------------------
    def _allocate(
        self,
        message: Message,
        source: ClientAddr,
        auth: Authenticated,
        existing: RelayAllocation | None,
        now: float,
    ) -> None:
        config = self._config
        if existing is not None:
            raise _Reply(437)
        transport = message.get_int(Attr.REQUESTED_TRANSPORT)
        if transport is None:
            raise _Reply(400)
        if transport != TRANSPORT_UDP:
            raise _Reply(442)
        requested = message.get_int(Attr.REQUESTED_ADDRESS_FAMILY)
        additional = message.get_int(Attr.ADDITIONAL_ADDRESS_FAMILY)
        token = message.get_bytes(Attr.RESERVATION_TOKEN)
        even_port = message.attributes.get(Attr.EVEN_PORT)  # None, or the R bit
        if token is not None and (even_port is not None or requested is not None):
            raise _Reply(400)
        if requested is not None and additional is not None:
            raise _Reply(400)
        if additional is not None and additional != FAMILY_IPV6:
            raise _Reply(400)
        family = {None: 4, FAMILY_IPV4: 4, FAMILY_IPV6: 6}.get(requested)
        if family is None or self._relay_ip[family] is None:
            raise _Reply(440)
        families = [family]
        address_error: stun.AddressErrorCode | None = None
        if additional is not None:
            if self._relay_ip[6] is None:
                address_error = stun.AddressErrorCode(FAMILY_IPV6, 440, REASONS[440])
            else:
                families.append(6)
        if self._per_user.get(auth.username, 0) >= config.max_allocations_per_user:
            raise _Reply(486)
        if len(self._allocations) + len(self._opening) >= config.max_allocations_total:
            raise _Reply(508)
        if token is not None:
            claimed = self._ports.claim(token, now)
            if claimed is None:
                raise _Reply(508)  # RFC 8656 §7.2: unknown or expired token
            port = claimed
        else:
            picked = self._ports.pick(even=even_port is not None, pair=even_port is True)
            if picked is None:
                raise _Reply(508)
            port = picked
        allocation = RelayAllocation(
            id=AllocationId(self._next_id),
            client=source,
            auth=auth,
            port=port,
            relays={},
            expires=now,  # set when the relay sockets are bound
            opening=Opening(
                request=message,
                lifetime=self._lifetime(message.get_int(Attr.LIFETIME)),
                families=families,
                address_error=address_error,
                reserve_next=even_port is True,
                claimed=token is not None,
            ),
        )
        self._next_id += 1
        self._opening[source] = allocation
        self._per_user[auth.username] = self._per_user.get(auth.username, 0) + 1
        self._open_relays(allocation, port)

    def _open_relays(self, allocation: RelayAllocation, port: int) -> None:
        """Take ``port`` and order one relay socket per family of the opening allocation."""
        opening = allocation.opening
        assert opening is not None
        self._ports.take(port)
        if opening.reserve_next:
            self._ports.take(port + 1)
        allocation.port = port
        allocation.relays = {}
        for family in opening.families:
            relay_ip = self._relay_ip[family]
            assert relay_ip is not None
            relay = RelayAddr((relay_ip, port))
            allocation.relays[family] = relay
            opening.waiting.add(relay)
            self._opening_by_relay[relay] = allocation
            self._commands.append(OpenRelaySocket(relay, allocation.id))

    def _release_port(self, port: int, with_next: bool) -> None:
        self._ports.release(port)
        if with_next:
            self._ports.release(port + 1)

    def _abandon_opening(self, allocation: RelayAllocation) -> None:
        """Forget an allocation whose relay sockets could not be bound."""
        del self._opening[allocation.client]
        for relay in allocation.relays.values():
            self._opening_by_relay.pop(relay, None)
        allocation.relays.clear()
        self._drop_user(allocation.auth.username)

    def _finish_allocate(self, allocation: RelayAllocation, now: float) -> None:
        """Every relay socket is bound: the allocation goes live and is answered."""
        opening = allocation.opening
        assert opening is not None
        allocation.opening = None
        del self._opening[allocation.client]
        allocation.expires = now + opening.lifetime
        for relay in allocation.relays.values():
            self._by_relay[relay] = allocation
        self._allocations[allocation.client] = allocation
        self._arm(allocation.expires, allocation)
        request = opening.request
        response = Message(Method.ALLOCATE, MessageClass.SUCCESS, request.transaction_id)
        attrs = response.attributes
        relays = [allocation.relays[f] for f in opening.families]
        attrs[Attr.XOR_RELAYED_ADDRESS] = relays[0]
        response.repeated.extend((Attr.XOR_RELAYED_ADDRESS, r) for r in relays[1:])
        attrs[Attr.LIFETIME] = opening.lifetime
        attrs[Attr.XOR_MAPPED_ADDRESS] = _canonical(allocation.client)
        if opening.address_error is not None:
            attrs[Attr.ADDRESS_ERROR_CODE] = opening.address_error
        if opening.reserve_next:
            token = self._rng.getrandbits(64).to_bytes(RESERVATION_TOKEN_SIZE, "big")
            self._ports.reserve(token, allocation.port + 1, now + RESERVATION_LIFETIME)
            attrs[Attr.RESERVATION_TOKEN] = token
        self._respond(allocation.client, request, response, allocation.auth, 200, now)
        _log.debug(
            "allocation created", extra={"allocation": allocation.id, "port": allocation.port}
        )

    def _lifetime(self, requested: int | None) -> int:
        """RFC 8656 §7.3 "desired lifetime" for a non-zero request."""
        config = self._config
        if requested is None:
            return config.default_lifetime
        return max(min(requested, config.max_lifetime), config.default_lifetime)

    # -- Refresh (RFC 8656 §7.3) -------------------------------------------------
    def _refresh(
        self,
        message: Message,
        source: ClientAddr,
        auth: Authenticated,
        allocation: RelayAllocation,
        now: float,
    ) -> None:
        requested_family = message.get_int(Attr.REQUESTED_ADDRESS_FAMILY)
        family: int | None = None
        if requested_family is not None:
            family = {FAMILY_IPV4: 4, FAMILY_IPV6: 6}.get(requested_family)
            if family is None:
                raise _Reply(440)
            if family not in allocation.relays:
                raise _Reply(443)
        requested = message.get_int(Attr.LIFETIME)
        if requested == 0:
            if family is not None and len(allocation.relays) > 1:
                relay = allocation.relays.pop(family)
                del self._by_relay[relay]
                self._commands.append(CloseRelaySocket(relay, allocation.id))
                self._reindex(allocation)
            else:
                self._delete(allocation)
            lifetime = 0
        else:
            lifetime = self._lifetime(requested)
            allocation.expires = now + lifetime
            self._arm(allocation.expires, allocation)
        self._send_success(source, message, {Attr.LIFETIME: lifetime}, auth, cache=now)

    # -- CreatePermission (RFC 8656 §9) ------------------------------------------
    def _checked_peer(self, peer: Endpoint, allocation: RelayAllocation) -> PeerAddr:
        if allocation.relay_for(peer[0]) is None:
            raise _Reply(443)
        if not self._peers.permits(peer[0], peer[1]):
            raise _Reply(403)
        return PeerAddr(_canonical(peer))

    def _create_permission(
        self,
        message: Message,
        source: ClientAddr,
        auth: Authenticated,
        allocation: RelayAllocation,
        now: float,
    ) -> None:
        peers = message.get_all_addresses(Attr.XOR_PEER_ADDRESS)
        if not peers:
            raise _Reply(400)
        checked = [self._checked_peer(peer, allocation) for peer in peers]
        fresh = {peer[0] for peer in checked} - allocation.permissions.keys()
        if len(allocation.permissions) + len(fresh) > self._config.max_permissions_per_allocation:
            raise _Reply(508)
        expires = now + self._config.permission_lifetime
        for peer in checked:
            allocation.permissions[peer[0]] = expires
        self._arm(expires, allocation)
        self._reindex(allocation)
        self._send_success(source, message, {}, auth, cache=now)

    # -- ChannelBind (RFC 8656 §11) ----------------------------------------------
    def _channel_bind(
        self,
        message: Message,
        source: ClientAddr,
        auth: Authenticated,
        allocation: RelayAllocation,
        now: float,
    ) -> None:
        number = message.get_int(Attr.CHANNEL_NUMBER)
        raw_peer = message.get_address(Attr.XOR_PEER_ADDRESS)
        if number is None or raw_peer is None:
            raise _Reply(400)
        if not CHANNEL_NUMBER_MIN <= number <= self._channel_max:
            raise _Reply(400)
        peer = self._checked_peer(raw_peer, allocation)
        if (
            peer[0] not in allocation.permissions
            and len(allocation.permissions) >= self._config.max_permissions_per_allocation
        ):
            raise _Reply(508)
        if allocation.channel_conflict(number, peer, now):
            raise _Reply(400)
        expires = now + self._config.channel_lifetime
        allocation.bind_channel(number, peer, expires)
        permission_expires = now + self._config.permission_lifetime
        allocation.permit(peer[0], permission_expires)  # RFC 8656 §11.2
        self._arm(permission_expires, allocation)
        self._arm(expires, allocation)
        self._reindex(allocation)
        self._send_success(source, message, {}, auth, cache=now)

    # -- Send indication (RFC 8656 §10.2) -----------------------------------------
    def _handle_send(self, message: Message, source: ClientAddr) -> None:
        allocation = self._allocations.get(source)
        raw_peer = message.get_address(Attr.XOR_PEER_ADDRESS)
        data = message.get_bytes(Attr.DATA)
        if allocation is None or raw_peer is None or data is None or message.unknown_required:
            self._dropped += 1
            return
        relay = allocation.relay_for(raw_peer[0])
        if relay is None:
            self._dropped += 1
            return
        peer = _canonical(raw_peer)
        if peer[0] not in allocation.permissions or self._peers.is_own_endpoint(*peer):
            self._dropped += 1
            return
        self._transmits.append(Transmit(relay, peer, data))

    # -- bookkeeping ---------------------------------------------------------
    def _from_ourselves(self, source: Endpoint) -> bool:
        """True when ``source`` is one of the relay's bound sockets. Other ports of
        the relay range on an own address may be a local client's ephemeral port:
        those are served (the relay holds a port or another socket does, not both)."""
        port = source[1]
        if port not in self._peers.listen_ports and not self._ports.in_use(port):
            return False
        return self._peers.is_own_host(source[0])

    def _arm(self, deadline: float, allocation: RelayAllocation) -> None:
        """Make sure the allocation is swept at ``deadline`` at the latest.

        At most one live heap entry per allocation: a later deadline is left to the
        sweep at the earlier one, which re-arms for whatever is next, so a client
        refreshing in a loop cannot grow the heap.
        """
        if allocation.armed is not None and allocation.armed <= deadline:
            return
        allocation.armed = deadline
        self._timer_seq += 1
        heapq.heappush(self._timers, (deadline, self._timer_seq, allocation.client))

    def _reindex(self, allocation: RelayAllocation) -> None:
        """Rebuild the fast-path routes of ``allocation`` after its channels or
        permissions changed."""
        for out_key in allocation.fast_keys:
            self._chan_out.pop(out_key, None)
        for in_key in allocation.fast_in_keys:
            self._chan_in.pop(in_key, None)
        allocation.fast_keys = []
        allocation.fast_in_keys = []
        for number, peer, relay in allocation.routes():
            out_key = (allocation.client, number)
            in_key = (relay, peer)
            self._chan_out[out_key] = (relay, peer)
            self._chan_in[in_key] = (allocation.client, number.to_bytes(2, "big"))
            allocation.fast_keys.append(out_key)
            allocation.fast_in_keys.append(in_key)

    def _delete(self, allocation: RelayAllocation) -> None:
        if self._allocations.get(allocation.client) is not allocation:
            return
        del self._allocations[allocation.client]
        allocation.clear()
        self._reindex(allocation)
        for relay in allocation.relays.values():
            self._by_relay.pop(relay, None)
            self._commands.append(CloseRelaySocket(relay, allocation.id))
        allocation.relays.clear()
        self._ports.release(allocation.port)
        self._drop_user(allocation.auth.username)
        _log.debug("allocation deleted", extra={"allocation": allocation.id})

    def _drop_user(self, username: str) -> None:
        left = self._per_user.get(username, 1) - 1
        if left > 0:
            self._per_user[username] = left
        else:
            self._per_user.pop(username, None)

    # -- responses: every answer is encoded by _encode -----------------------
    def _encode(self, response: Message, auth: Authenticated | None) -> bytes:
        """Sign (when the request was authenticated) and fingerprint a response.

        SOFTWARE only in authenticated answers: unauthenticated ones stay small, so a
        spoofed source gains little reflection amplification.
        """
        if auth is None:
            return stun.encode(response, fingerprint=True)
        if self._config.software:
            response.attributes[Attr.SOFTWARE] = self._config.software
        return stun.encode(response, key=auth.key, sha256=auth.sha256, fingerprint=True)

    def _respond(
        self,
        destination: ClientAddr,
        request: Message,
        response: Message,
        auth: Authenticated | None,
        code: int,
        cache: float | None,
    ) -> None:
        data = self._encode(response, auth)
        if cache is not None:
            self._remember(destination, request.transaction_id, data, cache)
        self._responses[code] = self._responses.get(code, 0) + 1
        self._transmits.append(Transmit(None, destination, data))

    def _send_success(
        self,
        destination: ClientAddr,
        request: Message,
        attributes: dict[int, object],
        auth: Authenticated | None,
        *,
        cache: float | None = None,
    ) -> None:
        response = Message(
            request.method, MessageClass.SUCCESS, request.transaction_id, dict(attributes)
        )
        self._respond(destination, request, response, auth, 200, cache)

    def _send_error(
        self,
        destination: ClientAddr,
        method: int,
        tid: bytes,
        code: int,
        auth: Authenticated | None,
        *,
        extra: dict[int, object] | None = None,
    ) -> None:
        response = Message(
            method,
            MessageClass.ERROR,
            tid,
            {Attr.ERROR_CODE: stun.ErrorCode(code, REASONS.get(code, "Error")), **(extra or {})},
        )
        data = self._encode(response, auth)
        self._responses[code] = self._responses.get(code, 0) + 1
        self._transmits.append(Transmit(None, destination, data))

    def _remember(self, source: ClientAddr, tid: bytes, data: bytes, now: float) -> None:
        key = (source, tid)
        self._tx_cache.pop(key, None)
        self._tx_cache[key] = (now + self._config.transaction_cache_seconds, data)
        while len(self._tx_cache) > MAX_CACHED_RESPONSES:
            self._tx_cache.popitem(last=False)
