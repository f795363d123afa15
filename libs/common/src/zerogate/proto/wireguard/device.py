"""The WireGuard device: many peers, cryptokey routing, handshakes and timers.

Sans-IO: bytes and the current time in, datagrams / events / the next deadline
out. ``now`` is a monotonic clock in seconds and drives every timer; the wall
clock (``unix_time`` given once at construction) is only used for TAI64N
timestamps and ``Peer.last_handshake_unix``.

The device orchestrates; each peer owns its state (:mod:`.peer`). The device
holds what peers share: the static key, the receiver-index tables of keypairs
and pending initiations, the cryptokey routes, the cookie checker, and the
queues of transmits and events. It builds and consumes handshake messages
(:mod:`.noise`) and acts on what a :class:`~.peer.Session` reports. Per
packet: :meth:`Device.encrypt` routes and calls :meth:`Session.seal`, the one
place a transport message is built; :meth:`Device.decrypt` opens it, checks
the replay window, lets :meth:`Session.received` book it and checks the inner
source against the AllowedIPs.

Randomness (sender indices, ephemeral keys, the cookie secret and cookie
nonces, the retransmit jitter) all comes from ``rng``: ``random.SystemRandom``
(the OS generator) unless a test passes a seeded ``random.Random`` to make a
handshake reproducible. Padding is zeros (§5.4.6) and takes no randomness.

Deviations from wireguard-go, on purpose:

- A handshake is retried while fewer than MAX_TIMER_HANDSHAKES (18) retries
  were sent, so no initiation leaves later than REKEY_ATTEMPT_TIME (90 s, plus
  jitter) after the first; wireguard-go sends one more.
- When a cookie reply arrives for our pending initiation we resend at once with
  mac2 (once per attempt) instead of waiting for the retransmit timer.
- ``encrypt`` drops packets for a peer without an endpoint instead of queueing.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import ipaddress
import random
import struct
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zerogate.proto.net import Endpoint, IPNetwork
from zerogate.proto.wireguard import noise
from zerogate.proto.wireguard.allowed_ips import AllowedIPs
from zerogate.proto.wireguard.constants import (
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    KEY_LEN,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    REJECT_AFTER_MESSAGES,
    REKEY_TIMEOUT_JITTER_MAX,
    RESPONSE_SIZE,
    TRANSPORT_MIN_SIZE,
)
from zerogate.proto.wireguard.cookie import CookieChecker, RateLimiter, open_cookie_reply
from zerogate.proto.wireguard.crypto import dh, tai64n
from zerogate.proto.wireguard.errors import LocalProtocolError, RemoteProtocolError
from zerogate.proto.wireguard.events import (
    Event,
    HandshakeCompleted,
    HandshakeTimedOut,
    PeerEndpointChanged,
    SessionExpired,
    Transmit,
)
from zerogate.proto.wireguard.messages import (
    INITIATION_MAC1_OFFSET,
    INITIATION_MAC2_OFFSET,
    RESPONSE_MAC1_OFFSET,
    RESPONSE_MAC2_OFFSET,
    TRANSPORT_HEADER,
    TRANSPORT_NONCE,
    CookieReply,
)
from zerogate.proto.wireguard.peer import (
    RECEIVED_CONFIRMS,
    RECEIVED_ROAMED,
    Keypair,
    Peer,
    Session,
    Timer,
    WakeUp,
    padding_size,
)

__all__ = ["UNSET", "Device", "IPNetwork", "Keypair", "Peer", "Session", "padding_size"]

_INF = float("inf")
_HANDSHAKE_SIZES = frozenset((INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE))
# Per-packet helpers, bound once (a struct read beats a slice and int.from_bytes).
_unpack_header = TRANSPORT_HEADER.unpack_from
_pack_nonce = TRANSPORT_NONCE.pack
_ipv4_destination = struct.Struct(">16xI").unpack_from  # RFC 791: bytes 16..20
_ipv4_length_source = struct.Struct(">2xH8xI").unpack_from  # total length, source
_ipv6_payload_length = struct.Struct(">4xH").unpack_from  # RFC 8200: bytes 4..6
_from_bytes = int.from_bytes


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET
"""Default of :meth:`Device.update_peer` keywords: "leave as it is"."""


def _check_key(name: str, key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
        raise LocalProtocolError(f"{name} must be {KEY_LEN} bytes")
    return bytes(key)


def _check_networks(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    out: list[IPNetwork] = []
    for net in networks:
        if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise LocalProtocolError(f"allowed IPs must be IPv4Network/IPv6Network, got {net!r}")
        out.append(net)
    return out


class Device:
    """A WireGuard interface's protocol state (one static key, many peers).

    ``rng`` supplies every random choice of the device and its handshakes
    (default: ``random.SystemRandom()``, the OS generator). Pass a seeded
    ``random.Random`` only in tests.
    """

    def __init__(
        self,
        private_key: bytes,
        *,
        now: float,
        unix_time: float,
        rng: random.Random | None = None,
    ) -> None:
        self.listen_port: int | None = None
        self.fwmark: int | None = None  # accepted for UAPI, ignored
        self._rng = rng if rng is not None else random.SystemRandom()
        self._unix_offset = unix_time - now
        self._mtu = 0
        self._peers: dict[bytes, Peer] = {}
        self._peers_view = MappingProxyType(self._peers)
        # cryptokey routes lead to the session of the peer that owns the prefix
        self._routes: AllowedIPs[Session] = AllowedIPs()
        self._route_v4 = self._routes.v4.lookup  # bound once: called per packet
        self._route_v6 = self._routes.v6.lookup
        # receiver indices: our keypairs, and our initiations waiting for a response
        self._keypairs: dict[int, Keypair] = {}
        self._keypair_for = self._keypairs.get
        self._handshakes: dict[int, Session] = {}
        self._transmits: collections.deque[Transmit] = collections.deque()
        self._events: collections.deque[Event] = collections.deque()
        self._under_load = False
        self._ratelimiter = RateLimiter()
        # A lower bound of every session's deadlines, shared with the sessions:
        # poll_timeout is O(1) and at worst wakes the shell early, never late.
        self._wakeup = WakeUp()
        self._set_static(_check_key("private key", private_key))
        self._cookies = CookieChecker(noise.cookie_key(self._public_key), now, rng=self._rng)

    # --- configuration ----------------------------------------------------------

    def _set_static(self, private_key: bytes) -> None:
        self._private_key = private_key
        self._static = X25519PrivateKey.from_private_bytes(private_key)
        self._public_key = self._static.public_key().public_bytes_raw()
        self._mac1_key = noise.mac1_key(self._public_key)

    @property
    def private_key(self) -> bytes:
        return self._private_key

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def peers(self) -> Mapping[bytes, Peer]:
        return self._peers_view

    @property
    def under_load(self) -> bool:
        return self._under_load

    def set_private_key(self, private_key: bytes, now: float) -> None:
        """Change the static key (``wg set private-key``): every session ends."""
        key = _check_key("private key", private_key)
        if key == self._private_key:
            return
        self._set_static(key)
        self._cookies = CookieChecker(noise.cookie_key(self._public_key), now, rng=self._rng)
        if self._public_key in self._peers:  # a peer with our own key makes no sense
            self.remove_peer(self._public_key)
        for peer in self._peers.values():
            self._precompute(peer)
            self._drop_keys(peer.session, announce=True)

    def _precompute(self, peer: Peer) -> None:
        try:
            peer.set_static_static(dh(self._static, peer.public_key))
        except RemoteProtocolError:
            peer.set_static_static(None)  # a low-order key: handshakes will fail

    def add_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None = None,
        allowed_ips: Iterable[IPNetwork] = (),
        endpoint: Endpoint | None = None,
        persistent_keepalive: int | None = None,
        roaming: bool | None = None,
        now: float,
    ) -> Peer:
        """Add a peer (``wg set peer ...``).

        For a key that is already a peer this updates it instead: values given
        replace the old ones, ``None`` leaves them, allowed IPs are added.
        ``roaming=False``: only configuration moves the endpoint (a path that
        ICE chooses), see :meth:`Session.set_roaming`.
        """
        key = _check_key("public key", public_key)
        if key == self._public_key:
            raise LocalProtocolError("a peer cannot have the device's own public key")
        if key in self._peers:
            # like ``wg set``: given values change, omitted (None) ones stay
            return self.update_peer(
                key,
                preshared_key=UNSET if preshared_key is None else preshared_key,
                allowed_ips=allowed_ips,
                endpoint=UNSET if endpoint is None else endpoint,
                persistent_keepalive=UNSET
                if persistent_keepalive is None
                else persistent_keepalive,
                roaming=UNSET if roaming is None else roaming,
                now=now,
            )
        peer = Peer(key, want_handshake=self._handshake_wanted, wakeup=self._wakeup)
        self._precompute(peer)
        self._peers[key] = peer
        return self.update_peer(
            key,
            preshared_key=preshared_key,
            allowed_ips=allowed_ips,
            endpoint=endpoint,
            persistent_keepalive=persistent_keepalive,
            roaming=True if roaming is None else roaming,
            now=now,
        )

    def update_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | _Unset | None = UNSET,
        allowed_ips: Iterable[IPNetwork] | _Unset = UNSET,
        replace_allowed_ips: bool = False,
        endpoint: Endpoint | _Unset | None = UNSET,
        persistent_keepalive: int | _Unset | None = UNSET,
        roaming: bool | _Unset = UNSET,
        now: float,
    ) -> Peer:
        """Change a peer. Keywords left at UNSET keep their value; ``None`` clears
        (preshared key, endpoint, persistent keepalive). ``allowed_ips`` are added,
        or replace the peer's list when ``replace_allowed_ips`` is true."""
        peer = self._peers.get(bytes(public_key))
        if peer is None:
            raise LocalProtocolError("no such peer")
        session = peer.session
        if not isinstance(preshared_key, _Unset):
            psk = noise.ZERO_PSK if preshared_key is None else preshared_key
            peer.set_preshared_key(_check_key("preshared key", psk))
        if not isinstance(roaming, _Unset):
            session.set_roaming(roaming)
        if not isinstance(endpoint, _Unset):
            session.set_endpoint(_check_endpoint(endpoint))
        if replace_allowed_ips:
            for net in peer.clear_allowed_ips():
                self._routes.remove(net)
        if not isinstance(allowed_ips, _Unset):
            for net in _check_networks(allowed_ips):
                net_previous = self._routes.insert(net, session)
                if net_previous is not None and net_previous is not session:
                    net_previous.peer.remove_allowed_ip(net)
                if net_previous is not session:
                    peer.add_allowed_ip(net)
        if not isinstance(persistent_keepalive, _Unset):
            interval = persistent_keepalive or 0
            if not 0 <= interval <= 0xFFFF:
                raise LocalProtocolError("persistent keepalive must be 0..65535 seconds")
            if session.set_keepalive_interval(interval) and session.endpoint is not None:
                # wireguard-go: turning it on sends a keepalive at once
                self._send_keepalive(session, now)
        return peer

    def remove_peer(self, public_key: bytes) -> None:
        peer = self._peers.pop(bytes(public_key), None)
        if peer is None:
            raise LocalProtocolError("no such peer")
        for net in peer.clear_allowed_ips():
            self._routes.remove(net)
        self._free(peer.session.close())

    def peer_for(self, packet: bytes | bytearray) -> Peer | None:
        """The peer an outgoing IP packet is routed to (longest AllowedIPs match)."""
        session = None
        if len(packet) >= 20 and packet[0] >> 4 == 4:
            session = self._route_v4(_ipv4_destination(packet)[0])
        elif len(packet) >= 40 and packet[0] >> 4 == 6:
            session = self._route_v6(_from_bytes(packet[24:40], "big"))
        return None if session is None else session.peer

    # --- fast paths -------------------------------------------------------------

    def encrypt(self, packet: bytes | bytearray, now: float) -> tuple[Endpoint, bytes] | None:
        """Encrypt an IP packet from the TUN for the peer its destination routes to.

        Returns ``(endpoint, datagram)`` when a usable session exists. Otherwise
        the packet is queued (at most MAX_STAGED_PACKETS per peer, oldest
        dropped) and a handshake started (see :meth:`poll_transmit`), or dropped
        when no peer's AllowedIPs match or the peer has no endpoint.
        """
        n = len(packet)
        if n >= 20 and packet[0] >> 4 == 4:
            session = self._route_v4(_ipv4_destination(packet)[0])
        elif n >= 40 and packet[0] >> 4 == 6:
            session = self._route_v6(_from_bytes(packet[24:40], "big"))
        else:
            return None
        if session is None:
            return None
        return session.seal(packet, now, self._mtu)

    def decrypt(self, datagram: bytes, source: Endpoint, now: float) -> bytes | None:
        """Handle one received UDP datagram.

        Returns the decrypted IP packet to write to the TUN, or None: a handshake
        message or cookie was handled, a keepalive arrived, or the datagram was
        dropped (bad, replayed, or from outside the peer's AllowedIPs). Never
        raises for bad input.
        """
        n = len(datagram)
        if n >= TRANSPORT_MIN_SIZE:
            msg_type, index, counter = _unpack_header(datagram)
            if msg_type == MESSAGE_TRANSPORT:
                kp = self._keypair_for(index)
                if kp is None or counter >= REJECT_AFTER_MESSAGES or now >= kp.reject_at:
                    return None
                try:
                    # a bytes slice is cheaper for the AEAD than a memoryview
                    plain = kp.open(_pack_nonce(counter), datagram[16:], None)
                except InvalidTag:
                    return None
                if not kp.replay_check(counter):
                    return None
                session = kp.session
                flags = session.received(kp, plain, n, source, now)
                if flags:
                    self._received_flags(session, flags, source, now)
                # cryptokey routing: the inner source must be one of the peer's AllowedIPs
                m = len(plain)
                if m >= 20 and plain[0] >> 4 == 4:
                    length, inner_source = _ipv4_length_source(plain)
                    if length < 20 or length > m or self._route_v4(inner_source) is not session:
                        return None
                elif m >= 40 and plain[0] >> 4 == 6:
                    length = _ipv6_payload_length(plain)[0] + 40
                    if length > m or self._route_v6(_from_bytes(plain[8:24], "big")) is not session:
                        return None
                else:
                    return None  # a keepalive (empty), or not IP
                return plain if length == m else plain[:length]
        if n in _HANDSHAKE_SIZES:
            # a refused handshake message is dropped silently (it is unauthenticated)
            with contextlib.suppress(RemoteProtocolError):
                self._handle_handshake(bytes(datagram), source, now)
        return None

    def _received_flags(self, session: Session, flags: int, source: Endpoint, now: float) -> None:
        if flags & RECEIVED_ROAMED:
            self._events.append(PeerEndpointChanged(session.peer.public_key, source))
        if flags & RECEIVED_CONFIRMS:
            # the initiator used our ``next`` keypair: it is current now
            self._free(session.confirm_next())
            self._handshake_complete(session, now)
            self._send_staged(session, now)

    # --- handshake --------------------------------------------------------------

    def _handle_handshake(self, data: bytes, source: Endpoint, now: float) -> None:
        msg_type = int.from_bytes(data[:4], "little")
        if msg_type == MESSAGE_INITIATION and len(data) == INITIATION_SIZE:
            if not self._admit(data, INITIATION_MAC1_OFFSET, INITIATION_MAC2_OFFSET, source, now):
                return
            self._consume_initiation(data, source, now)
        elif msg_type == MESSAGE_RESPONSE and len(data) == RESPONSE_SIZE:
            if not self._admit(data, RESPONSE_MAC1_OFFSET, RESPONSE_MAC2_OFFSET, source, now):
                return
            self._consume_response(data, source, now)
        elif msg_type == MESSAGE_COOKIE_REPLY and len(data) == COOKIE_REPLY_SIZE:
            self._consume_cookie_reply(data, now)

    def _admit(
        self, data: bytes, mac1_offset: int, mac2_offset: int, source: Endpoint, now: float
    ) -> bool:
        """mac1 always; under load a valid mac2 (else a cookie reply) and the rate limit."""
        if not noise.check_mac1(data, mac1_offset, self._mac1_key):
            return False  # no answer at all
        if not self._under_load:
            return True
        if not noise.check_mac2(data, mac2_offset, self._cookies.cookie(source, now)):
            sender = int.from_bytes(data[4:8], "little")
            mac1 = data[mac1_offset : mac1_offset + 16]
            reply = self._cookies.reply(sender, mac1, source, now)
            self._transmits.append(Transmit(source, reply, b""))
            return False
        return self._ratelimiter.allow(source[0], now)

    def _consume_initiation(self, data: bytes, source: Endpoint, now: float) -> None:
        def static_static_for(public: bytes) -> bytes | None:
            p = self._peers.get(public)
            return None if p is None else p.static_static

        consumed = noise.consume_initiation(
            data,
            static_private=self._static,
            static_public=self._public_key,
            static_static_for=static_static_for,
        )
        peer = self._peers[consumed.peer_public]
        session = peer.session
        # replay and flood protection (whitepaper §5.1; wireguard-go noise-protocol.go)
        session.accept_initiation(consumed.timestamp, now)
        if session.handshake_received(len(data), source):
            self._events.append(PeerEndpointChanged(peer.public_key, source))
        # a crossing initiation of ours is abandoned, as in wireguard-go
        self._forget_handshake(session)
        local_index = self._new_index()
        response, keys = noise.create_response(
            consumed,
            preshared_key=peer.handshake_psk,
            local_index=local_index,
            cookie=session.fresh_cookie(now),
            rng=self._rng,
        )
        kp = Keypair(
            session,
            keys,
            is_initiator=False,
            local_index=local_index,
            remote_index=consumed.remote_index,
            now=now,
        )
        self._install(session, kp, now)
        session.response_sent(response[RESPONSE_MAC1_OFFSET : RESPONSE_MAC1_OFFSET + 16], now)
        self._queue(session, response)

    def _consume_response(self, data: bytes, source: Endpoint, now: float) -> None:
        receiver = int.from_bytes(data[8:12], "little")
        session = self._handshakes.get(receiver)
        handshake = None if session is None else session.handshake
        if session is None or handshake is None:
            raise RemoteProtocolError("response to no handshake of ours")
        peer = session.peer
        _, keys = noise.consume_response(
            data, handshake, static_private=self._static, preshared_key=peer.handshake_psk
        )
        msg_sender = int.from_bytes(data[4:8], "little")
        self._forget_handshake(session)
        if session.handshake_received(len(data), source):
            self._events.append(PeerEndpointChanged(peer.public_key, source))
        kp = Keypair(
            session,
            keys,
            is_initiator=True,
            local_index=handshake.local_index,
            remote_index=msg_sender,
            now=now,
        )
        self._install(session, kp, now)
        session.response_received(now)
        self._handshake_complete(session, now)
        self._send_keepalive(session, now)  # confirms the session to the responder

    def _consume_cookie_reply(self, data: bytes, now: float) -> None:
        reply = CookieReply.decode(data)
        session = self._handshakes.get(reply.receiver)
        if session is None:
            kp = self._keypairs.get(reply.receiver)
            session = None if kp is None else kp.session
        last_mac1 = None if session is None else session.last_mac1
        if session is None or last_mac1 is None:
            raise RemoteProtocolError("cookie reply to nothing we sent")
        cookie = open_cookie_reply(reply, session.peer.cookie_key, last_mac1)
        if session.cookie_received(cookie, reply.receiver, now):
            self._send_initiation(session, now, retry=True, force=True)

    def _new_index(self) -> int:
        getrandbits = self._rng.getrandbits
        while True:
            index = getrandbits(32)
            if index not in self._keypairs and index not in self._handshakes:
                return index

    def _forget_handshake(self, session: Session) -> None:
        index = session.forget_handshake()
        if index is not None:
            del self._handshakes[index]

    def _handshake_wanted(self, session: Session, now: float) -> None:
        """A session needs a handshake (no usable keypair, or a rekey is due)."""
        self._send_initiation(session, now, retry=False)

    def _send_initiation(
        self, session: Session, now: float, *, retry: bool, force: bool = False
    ) -> None:
        """wireguard-go SendHandshakeInitiation: at most one per REKEY_TIMEOUT."""
        peer = session.peer
        static_static = peer.static_static
        if static_static is None or not session.may_initiate(now, retry=retry, force=force):
            return
        self._forget_handshake(session)
        local_index = self._new_index()
        data, handshake = noise.create_initiation(
            static_public=self._public_key,
            peer_public=peer.public_key,
            static_static=static_static,
            local_index=local_index,
            timestamp=tai64n(now + self._unix_offset),
            cookie=session.fresh_cookie(now),
            rng=self._rng,
        )
        self._handshakes[local_index] = session
        jitter = self._rng.uniform(0.0, REKEY_TIMEOUT_JITTER_MAX)
        session.initiation_sent(
            handshake, data[INITIATION_MAC1_OFFSET : INITIATION_MAC1_OFFSET + 16], now, jitter
        )
        self._queue(session, data)

    def _install(self, session: Session, kp: Keypair, now: float) -> None:
        self._free(session.install(kp, now))
        self._keypairs[kp.local_index] = kp

    def _handshake_complete(self, session: Session, now: float) -> None:
        session.handshake_completed(now + self._unix_offset)
        self._events.append(HandshakeCompleted(session.peer.public_key))

    def _free(self, indices: Iterable[int]) -> None:
        """Forget receiver indices a session let go (keypairs or an initiation)."""
        for index in indices:
            self._keypairs.pop(index, None)
            self._handshakes.pop(index, None)

    def _drop_keys(self, session: Session, *, announce: bool) -> None:
        """Forget every key of a peer (wireguard-go: zero key material)."""
        dropped = session.drop_keys()
        self._free(dropped)
        if announce and dropped:
            self._events.append(SessionExpired(session.peer.public_key))

    # --- sending queued packets -------------------------------------------------

    def _queue(self, session: Session, data: bytes) -> None:
        endpoint = session.endpoint
        if endpoint is None:
            return
        session.count_sent(len(data))
        self._transmits.append(Transmit(endpoint, data, session.peer.public_key))

    def _send_keepalive(self, session: Session, now: float) -> None:
        session.stage_keepalive()
        self._send_staged(session, now)

    def _send_staged(self, session: Session, now: float) -> None:
        sealed = session.flush_staged(now, self._mtu)
        if sealed:
            public_key = session.peer.public_key
            append = self._transmits.append
            for endpoint, data in sealed:
                append(Transmit(endpoint, data, public_key))

    # --- outputs and timers -----------------------------------------------------

    def poll_transmit(self) -> Transmit | None:
        """The next datagram to send: handshake messages, cookie replies,
        keepalives and queued packets that are now sealed."""
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        """When to call :meth:`handle_timeout` next, on the ``now`` clock, or None.

        Never later than the earliest timer; it may be earlier (then
        handle_timeout finds nothing due and the next answer is exact).
        """
        at = self._wakeup.at
        return None if at == _INF else at

    def _earliest_deadline(self) -> float:
        return min(
            (peer.session.earliest_deadline() for peer in self._peers.values()), default=_INF
        )

    def handle_timeout(self, now: float) -> None:
        """Fire every timer due at ``now`` (whitepaper §6, wireguard-go timers.go)."""
        for peer in list(self._peers.values()):
            session = peer.session
            while (timer := session.pop_due(now)) is not None:
                self._fire(session, timer, now)
        self._wakeup.at = self._earliest_deadline()

    def _fire(self, session: Session, timer: Timer, now: float) -> None:
        if timer is Timer.RETRANSMIT_HANDSHAKE:
            if session.retry_handshake():
                self._send_initiation(session, now, retry=True)
            else:  # gave up after REKEY_ATTEMPT_TIME
                self._free(_maybe(session.give_up_handshake(now)))
                self._events.append(HandshakeTimedOut(session.peer.public_key))
        elif timer is Timer.SEND_KEEPALIVE:
            self._send_keepalive(session, now)
            session.keepalive_sent(now)
        elif timer is Timer.NEW_HANDSHAKE:
            # sent data, heard nothing for KEEPALIVE + REKEY_TIMEOUT
            self._send_initiation(session, now, retry=False)
        elif timer is Timer.ZERO_KEY_MATERIAL:
            self._drop_keys(session, announce=True)
        elif session.keepalive_interval:  # Timer.PERSISTENT_KEEPALIVE
            self._send_keepalive(session, now)

    @property
    def mtu(self) -> int:
        """The interface MTU that caps padding (0: unknown, pad to 16 only)."""
        return self._mtu

    @mtu.setter
    def mtu(self, value: int) -> None:
        if not 0 <= value <= 65535:
            raise LocalProtocolError(f"MTU {value} out of range")
        self._mtu = value

    def set_under_load(self, under_load: bool) -> None:
        """While under load, handshakes need a valid mac2 (else get a cookie reply)
        and pass a per-source-IP rate limit."""
        self._under_load = under_load


def _maybe(index: int | None) -> tuple[int, ...]:
    return () if index is None else (index,)


def _check_endpoint(endpoint: Endpoint | None) -> Endpoint | None:
    if endpoint is None:
        return None
    try:
        host, port = endpoint
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError("an endpoint is (host, port)") from exc
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise LocalProtocolError("an endpoint is (ip literal, port 1..65535)")
    return (host, port)
