"""The WireGuard device: many peers, cryptokey routing, sessions and timers.

Sans-IO: bytes and the current time in, datagrams / events / the next deadline
out. ``now`` is a monotonic clock in seconds and drives every timer; the wall
clock (``unix_time`` given once at construction) is only used for TAI64N
timestamps and ``Peer.last_handshake_unix``.

Sessions (whitepaper §5.4.6, wireguard-go device/keypair.go, noise-protocol.go):
each peer holds up to three keypairs. ``current`` encrypts; ``previous`` still
decrypts packets that were in flight during a rekey; ``next`` is a session the
responder derived but may not send on until the initiator's first packet
arrives on it (then it becomes ``current``). Keys cannot be wiped in place in
Python (bytes are immutable); an expired keypair is removed from every table
and dropped, so nothing can use it and its cipher objects are freed.

Timers (whitepaper §6, wireguard-go timers.go) are deadlines per peer on the
``now`` clock; :meth:`Device.handle_timeout` fires the due ones.

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
import os
import random
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from zerogate.proto.wireguard import noise
from zerogate.proto.wireguard.allowed_ips import AllowedIPs, IPNetwork
from zerogate.proto.wireguard.constants import (
    COOKIE_REFRESH_TIME,
    COOKIE_REPLY_SIZE,
    HANDSHAKE_INITIATION_RATE,
    INITIATION_SIZE,
    KEEPALIVE_TIMEOUT,
    KEY_LEN,
    MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    NEW_HANDSHAKE_TIMEOUT,
    RECEIVE_REKEY_AGE,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    RESPONSE_SIZE,
    TRANSPORT_MIN_SIZE,
    ZERO_KEYS_AFTER,
)
from zerogate.proto.wireguard.cookie import CookieChecker, RateLimiter, open_cookie_reply
from zerogate.proto.wireguard.crypto import dh, tai64n
from zerogate.proto.wireguard.errors import LocalProtocolError, RemoteProtocolError
from zerogate.proto.wireguard.events import (
    Endpoint,
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
    CookieReply,
)
from zerogate.proto.wireguard.replay import ReplayWindow

__all__ = ["UNSET", "Device", "IPNetwork", "Keypair", "Peer"]

_PADDING = tuple(bytes(n) for n in range(16))  # zero padding to a multiple of 16, §5.4.6


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


_NONCE_PREFIX = b"\0\0\0\0"
_TRANSPORT_TYPE_BYTES = MESSAGE_TRANSPORT.to_bytes(4, "little")
_INF = float("inf")
_HANDSHAKE_SIZES = frozenset((INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE))


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET
"""Default of :meth:`Device.update_peer` keywords: "leave as it is"."""


class Keypair:
    """One session's transport keys and counters (whitepaper §5.4.6)."""

    __slots__ = (
        "created",
        "is_initiator",
        "local_index",
        "peer",
        "receive",
        "remote_index",
        "replay",
        "send",
        "send_counter",
    )

    def __init__(
        self,
        peer: Peer,
        keys: noise.SessionKeys,
        *,
        is_initiator: bool,
        local_index: int,
        remote_index: int,
        now: float,
    ) -> None:
        self.peer = peer
        self.send = ChaCha20Poly1305(keys.send)
        self.receive = ChaCha20Poly1305(keys.receive)
        self.send_counter = 0
        self.replay = ReplayWindow()
        self.created = now
        self.is_initiator = is_initiator
        self.local_index = local_index
        self.remote_index = remote_index


class Peer:
    """A configured peer. Read its attributes; change it through :class:`Device`."""

    __slots__ = (
        "_allowed_ips",
        "_cookie",
        "_cookie_key",
        "_cookie_resent",
        "_cookie_time",
        "_current",
        "_endpoint",
        "_greatest_timestamp",
        "_handshake",
        "_handshake_attempts",
        "_last_handshake_unix",
        "_last_initiation_consumed",
        "_last_initiation_sent",
        "_last_mac1",
        "_mac1_key",
        "_need_another_keepalive",
        "_next",
        "_persistent_keepalive",
        "_preshared_key",
        "_previous",
        "_public_key",
        "_sent_last_minute_handshake",
        "_staged",
        "_static_static",
        "_t_keepalive",
        "_t_new_handshake",
        "_t_persistent",
        "_t_retransmit",
        "_t_zero_keys",
        "rx_bytes",
        "tx_bytes",
    )

    def __init__(self, public_key: bytes) -> None:
        self._public_key = public_key
        self._preshared_key = noise.ZERO_PSK
        self._endpoint: Endpoint | None = None
        self._allowed_ips: list[IPNetwork] = []
        self._persistent_keepalive = 0
        self._last_handshake_unix: float | None = None
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._mac1_key = noise.mac1_key(public_key)
        self._cookie_key = noise.cookie_key(public_key)
        self._static_static: bytes | None = None
        # keypairs
        self._previous: Keypair | None = None
        self._current: Keypair | None = None
        self._next: Keypair | None = None
        # handshake
        self._handshake: noise.InitiatorHandshake | None = None
        self._handshake_attempts = 0
        self._last_initiation_sent: float | None = None
        self._greatest_timestamp = b""
        self._last_initiation_consumed: float | None = None
        self._sent_last_minute_handshake = False
        # cookies we received from this peer
        self._cookie: bytes | None = None
        self._cookie_time = 0.0
        self._last_mac1: bytes | None = None
        self._cookie_resent = False
        # timers (deadlines on the `now` clock)
        self._t_retransmit: float | None = None
        self._t_keepalive: float | None = None
        self._t_new_handshake: float | None = None
        self._t_zero_keys: float | None = None
        self._t_persistent: float | None = None
        self._need_another_keepalive = False
        self._staged: collections.deque[bytes] = collections.deque(maxlen=MAX_STAGED_PACKETS)

    def __repr__(self) -> str:
        return f"<Peer {self._public_key.hex()[:8]}… endpoint={self._endpoint}>"

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def preshared_key(self) -> bytes | None:
        psk = self._preshared_key
        return None if psk == noise.ZERO_PSK else psk

    @property
    def endpoint(self) -> Endpoint | None:
        return self._endpoint

    @property
    def allowed_ips(self) -> list[IPNetwork]:
        return list(self._allowed_ips)

    @property
    def persistent_keepalive(self) -> int | None:
        return self._persistent_keepalive or None

    @property
    def last_handshake_unix(self) -> float | None:
        """Wall-clock time of the last completed handshake."""
        return self._last_handshake_unix

    @property
    def has_session(self) -> bool:
        """True when a current keypair exists (it may still be too old to use)."""
        return self._current is not None

    def _deadlines(self) -> tuple[float | None, ...]:
        return (
            self._t_retransmit,
            self._t_keepalive,
            self._t_new_handshake,
            self._t_zero_keys,
            self._t_persistent,
        )


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
    """A WireGuard interface's protocol state (one static key, many peers)."""

    def __init__(self, private_key: bytes, *, now: float, unix_time: float) -> None:
        self.listen_port: int | None = None
        self.fwmark: int | None = None  # accepted for UAPI, ignored
        self._unix_offset = unix_time - now
        self._mtu = 0
        self._peers: dict[bytes, Peer] = {}
        self._peers_view = MappingProxyType(self._peers)
        self._routes: AllowedIPs[Peer] = AllowedIPs()
        self._keypairs: dict[int, Keypair] = {}
        self._handshakes: dict[int, Peer] = {}
        self._transmits: collections.deque[Transmit] = collections.deque()
        self._events: collections.deque[Event] = collections.deque()
        self._under_load = False
        self._ratelimiter = RateLimiter()
        self._random = random.Random()
        # A lower bound of every peer's timer deadlines (inf: none). Setting a
        # deadline lowers it in O(1); handle_timeout recomputes it exactly. So
        # poll_timeout is O(1) and at worst wakes the shell early, never late.
        self._hint = _INF
        self._set_static(_check_key("private key", private_key))
        self._cookies = CookieChecker(noise.cookie_key(self._public_key), now)

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
        self._cookies = CookieChecker(noise.cookie_key(self._public_key), now)
        if self._public_key in self._peers:  # a peer with our own key makes no sense
            self.remove_peer(self._public_key)
        for peer in self._peers.values():
            self._precompute(peer)
            self._drop_keys(peer, announce=True)

    def _precompute(self, peer: Peer) -> None:
        try:
            peer._static_static = dh(self._static, peer._public_key)
        except RemoteProtocolError:
            peer._static_static = None  # a low-order key: handshakes will fail

    def add_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None = None,
        allowed_ips: Iterable[IPNetwork] = (),
        endpoint: Endpoint | None = None,
        persistent_keepalive: int | None = None,
        now: float,
    ) -> Peer:
        """Add a peer (``wg set peer ...``).

        For a key that is already a peer this updates it instead: values given
        replace the old ones, ``None`` leaves them, allowed IPs are added.
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
                now=now,
            )
        peer = Peer(key)
        self._precompute(peer)
        self._peers[key] = peer
        return self.update_peer(
            key,
            preshared_key=preshared_key,
            allowed_ips=allowed_ips,
            endpoint=endpoint,
            persistent_keepalive=persistent_keepalive,
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
        now: float,
    ) -> Peer:
        """Change a peer. Keywords left at UNSET keep their value; ``None`` clears
        (preshared key, endpoint, persistent keepalive). ``allowed_ips`` are added,
        or replace the peer's list when ``replace_allowed_ips`` is true."""
        peer = self._peers.get(bytes(public_key))
        if peer is None:
            raise LocalProtocolError("no such peer")
        if not isinstance(preshared_key, _Unset):
            psk = noise.ZERO_PSK if preshared_key is None else preshared_key
            peer._preshared_key = _check_key("preshared key", psk)
        if not isinstance(endpoint, _Unset):
            peer._endpoint = _check_endpoint(endpoint)
        if replace_allowed_ips:
            for net in peer._allowed_ips:
                self._routes.remove(net)
            peer._allowed_ips = []
        if not isinstance(allowed_ips, _Unset):
            for net in _check_networks(allowed_ips):
                net_previous = self._routes.insert(net, peer)
                if net_previous is not None and net_previous is not peer:
                    net_previous._allowed_ips.remove(net)
                if net_previous is not peer:
                    peer._allowed_ips.append(net)
        if not isinstance(persistent_keepalive, _Unset):
            interval = persistent_keepalive or 0
            if not 0 <= interval <= 0xFFFF:
                raise LocalProtocolError("persistent keepalive must be 0..65535 seconds")
            was_off = peer._persistent_keepalive == 0
            peer._persistent_keepalive = interval
            if interval == 0:
                peer._t_persistent = None
            elif was_off and peer._endpoint is not None:
                # wireguard-go: turning it on sends a keepalive at once
                self._send_keepalive(peer, now)
        return peer

    def remove_peer(self, public_key: bytes) -> None:
        peer = self._peers.pop(bytes(public_key), None)
        if peer is None:
            raise LocalProtocolError("no such peer")
        for net in peer._allowed_ips:
            self._routes.remove(net)
        peer._allowed_ips = []
        self._drop_keys(peer, announce=False)
        peer._staged.clear()
        for attr in ("_t_retransmit", "_t_keepalive", "_t_new_handshake", "_t_persistent"):
            setattr(peer, attr, None)

    def peer_for(self, packet: bytes) -> Peer | None:
        """The peer an outgoing IP packet is routed to (longest AllowedIPs match)."""
        if len(packet) >= 20 and packet[0] >> 4 == 4:
            return self._routes.v4.lookup(int.from_bytes(packet[16:20], "big"))
        if len(packet) >= 40 and packet[0] >> 4 == 6:
            return self._routes.v6.lookup(int.from_bytes(packet[24:40], "big"))
        return None

    # --- fast paths -------------------------------------------------------------

    def encrypt(self, packet: bytes, now: float) -> tuple[Endpoint, bytes] | None:
        """Encrypt an IP packet from the TUN for the peer its destination routes to.

        Returns ``(endpoint, datagram)`` when a usable session exists. Otherwise
        the packet is queued (at most MAX_STAGED_PACKETS per peer, oldest
        dropped) and a handshake started (see :meth:`poll_transmit`), or dropped
        when no peer's AllowedIPs match or the peer has no endpoint.
        """
        n = len(packet)
        if n >= 20 and packet[0] >> 4 == 4:
            peer = self._routes.v4.lookup(int.from_bytes(packet[16:20], "big"))
        elif n >= 40 and packet[0] >> 4 == 6:
            peer = self._routes.v6.lookup(int.from_bytes(packet[24:40], "big"))
        else:
            return None
        if peer is None:
            return None
        endpoint = peer._endpoint
        if endpoint is None:
            return None
        kp = peer._current
        if (
            kp is None
            or kp.send_counter >= REJECT_AFTER_MESSAGES
            or now - kp.created >= REJECT_AFTER_TIME
        ):
            peer._staged.append(bytes(packet))
            self._send_initiation(peer, now, retry=False)
            return None
        counter = kp.send_counter
        kp.send_counter = counter + 1
        pad = -n & 15
        if pad and n + pad > self._mtu > 0:
            pad = padding_size(n, self._mtu)
        if pad:
            packet = bytes(packet) + _PADDING[pad]
        data = TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, kp.remote_index, counter) + kp.send.encrypt(
            _NONCE_PREFIX + counter.to_bytes(8, "little"), packet, None
        )
        peer.tx_bytes += len(data)
        # timers: data sent, any authenticated packet sent / traversal
        if peer._t_new_handshake is None:
            peer._t_new_handshake = now + NEW_HANDSHAKE_TIMEOUT
            if peer._t_new_handshake < self._hint:
                self._hint = peer._t_new_handshake
        peer._t_keepalive = None
        if peer._persistent_keepalive:
            peer._t_persistent = now + peer._persistent_keepalive
            if peer._t_persistent < self._hint:
                self._hint = peer._t_persistent
        # keep the key fresh (wireguard-go keepKeyFreshSending): any side after
        # REKEY_AFTER_MESSAGES, the initiator after REKEY_AFTER_TIME
        if counter >= REKEY_AFTER_MESSAGES or (
            kp.is_initiator and now - kp.created >= REKEY_AFTER_TIME
        ):
            self._send_initiation(peer, now, retry=False)
        return endpoint, data

    def decrypt(self, datagram: bytes, source: Endpoint, now: float) -> bytes | None:
        """Handle one received UDP datagram.

        Returns the decrypted IP packet to write to the TUN, or None: a handshake
        message or cookie was handled, a keepalive arrived, or the datagram was
        dropped (bad, replayed, or from outside the peer's AllowedIPs). Never
        raises for bad input.
        """
        n = len(datagram)
        if n >= TRANSPORT_MIN_SIZE and datagram[:4] == _TRANSPORT_TYPE_BYTES:
            _, index, counter = TRANSPORT_HEADER.unpack_from(datagram)
            kp = self._keypairs.get(index)
            if (
                kp is None
                or counter >= REJECT_AFTER_MESSAGES
                or now - kp.created >= REJECT_AFTER_TIME
            ):
                return None
            try:
                plain = kp.receive.decrypt(
                    _NONCE_PREFIX + datagram[8:16], memoryview(datagram)[16:], None
                )
            except InvalidTag:
                return None
            if not kp.replay.check(counter):
                return None
            return self._received_transport(kp, plain, n, source, now)
        if n in _HANDSHAKE_SIZES:
            # a refused handshake message is dropped silently (it is unauthenticated)
            with contextlib.suppress(RemoteProtocolError):
                self._handle_handshake(bytes(datagram), source, now)
        return None

    def _received_transport(
        self, kp: Keypair, plain: bytes, size: int, source: Endpoint, now: float
    ) -> bytes | None:
        peer = kp.peer
        peer.rx_bytes += size
        if peer._endpoint != source:
            peer._endpoint = source
            self._events.append(PeerEndpointChanged(peer._public_key, source))
        if kp is peer._next:
            self._confirm_next(peer, now)
        # timers: any authenticated packet received / traversal
        peer._t_new_handshake = None
        if peer._persistent_keepalive:
            peer._t_persistent = now + peer._persistent_keepalive
            if peer._t_persistent < self._hint:
                self._hint = peer._t_persistent
        current = peer._current
        if (
            current is not None
            and current.is_initiator
            and not peer._sent_last_minute_handshake
            and now - current.created >= RECEIVE_REKEY_AGE
        ):
            peer._sent_last_minute_handshake = True
            self._send_initiation(peer, now, retry=False)
        if not plain:
            return None  # keepalive
        # data received
        if peer._t_keepalive is None:
            peer._t_keepalive = now + KEEPALIVE_TIMEOUT
            if peer._t_keepalive < self._hint:
                self._hint = peer._t_keepalive
        else:
            peer._need_another_keepalive = True
        # cryptokey routing: the inner source must be one of the peer's AllowedIPs
        m = len(plain)
        version = plain[0] >> 4
        if version == 4 and m >= 20:
            length = int.from_bytes(plain[2:4], "big")
            if length < 20 or length > m:
                return None
            if self._routes.v4.lookup(int.from_bytes(plain[12:16], "big")) is not peer:
                return None
        elif version == 6 and m >= 40:
            length = int.from_bytes(plain[4:6], "big") + 40
            if length > m:
                return None
            if self._routes.v6.lookup(int.from_bytes(plain[8:24], "big")) is not peer:
                return None
        else:
            return None
        return plain if length == m else plain[:length]

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
            return None if p is None else p._static_static

        consumed = noise.consume_initiation(
            data,
            static_private=self._static,
            static_public=self._public_key,
            static_static_for=static_static_for,
        )
        peer = self._peers[consumed.peer_public]
        # replay and flood protection (whitepaper §5.1; wireguard-go noise-protocol.go)
        if consumed.timestamp <= peer._greatest_timestamp:
            raise RemoteProtocolError("replayed or old initiation")
        last = peer._last_initiation_consumed
        if last is not None and now - last < HANDSHAKE_INITIATION_RATE:
            raise RemoteProtocolError("initiations too fast")
        peer._greatest_timestamp = consumed.timestamp
        peer._last_initiation_consumed = now
        peer.rx_bytes += len(data)
        self._set_endpoint(peer, source)
        # a crossing initiation of ours is abandoned, as in wireguard-go
        self._forget_handshake(peer)
        local_index = self._new_index()
        cookie = self._fresh_cookie(peer, now)
        response, keys = noise.create_response(
            consumed, preshared_key=peer._preshared_key, local_index=local_index, cookie=cookie
        )
        peer._last_mac1 = response[RESPONSE_MAC1_OFFSET : RESPONSE_MAC1_OFFSET + 16]
        kp = Keypair(
            peer,
            keys,
            is_initiator=False,
            local_index=local_index,
            remote_index=consumed.remote_index,
            now=now,
        )
        self._begin_session(peer, kp, now)
        # timers: authenticated traversal and sent
        peer._t_new_handshake = None
        peer._t_keepalive = None
        if peer._persistent_keepalive:
            peer._t_persistent = now + peer._persistent_keepalive
            self._lower_hint(peer._t_persistent)
        self._queue(peer, response)

    def _consume_response(self, data: bytes, source: Endpoint, now: float) -> None:
        receiver = int.from_bytes(data[8:12], "little")
        peer = self._handshakes.get(receiver)
        if peer is None or peer._handshake is None:
            raise RemoteProtocolError("response to no handshake of ours")
        _, keys = noise.consume_response(
            data,
            peer._handshake,
            static_private=self._static,
            preshared_key=peer._preshared_key,
        )
        msg_sender = int.from_bytes(data[4:8], "little")
        local_index = peer._handshake.local_index
        del self._handshakes[local_index]
        peer._handshake = None
        peer.rx_bytes += len(data)
        self._set_endpoint(peer, source)
        kp = Keypair(
            peer, keys, is_initiator=True, local_index=local_index, remote_index=msg_sender, now=now
        )
        self._begin_session(peer, kp, now)
        peer._t_new_handshake = None
        if peer._persistent_keepalive:
            peer._t_persistent = now + peer._persistent_keepalive
            self._lower_hint(peer._t_persistent)
        self._handshake_complete(peer, now)
        self._send_keepalive(peer, now)  # confirms the session to the responder

    def _consume_cookie_reply(self, data: bytes, now: float) -> None:
        reply = CookieReply.decode(data)
        peer = self._handshakes.get(reply.receiver)
        if peer is None:
            kp = self._keypairs.get(reply.receiver)
            peer = None if kp is None else kp.peer
        if peer is None or peer._last_mac1 is None:
            raise RemoteProtocolError("cookie reply to nothing we sent")
        cookie = open_cookie_reply(reply, peer._cookie_key, peer._last_mac1)
        peer._cookie = cookie
        peer._cookie_time = now
        peer._last_mac1 = None
        if (
            peer._handshake is not None
            and peer._handshake.local_index == reply.receiver
            and not peer._cookie_resent
        ):
            peer._cookie_resent = True
            self._send_initiation(peer, now, retry=True, force=True)

    def _fresh_cookie(self, peer: Peer, now: float) -> bytes | None:
        if peer._cookie is not None and now - peer._cookie_time < COOKIE_REFRESH_TIME:
            return peer._cookie
        return None

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(os.urandom(4), "little")
            if index not in self._keypairs and index not in self._handshakes:
                return index

    def _forget_handshake(self, peer: Peer) -> None:
        if peer._handshake is not None:
            self._handshakes.pop(peer._handshake.local_index, None)
            peer._handshake = None

    def _send_initiation(self, peer: Peer, now: float, *, retry: bool, force: bool = False) -> None:
        """wireguard-go SendHandshakeInitiation: at most one per REKEY_TIMEOUT."""
        if not retry:
            peer._handshake_attempts = 0
        last = peer._last_initiation_sent
        if not force and last is not None and now - last < REKEY_TIMEOUT:
            return
        if peer._endpoint is None or peer._static_static is None:
            return
        if not force:
            peer._cookie_resent = False
        peer._last_initiation_sent = now
        self._forget_handshake(peer)
        local_index = self._new_index()
        data, handshake = noise.create_initiation(
            static_public=self._public_key,
            peer_public=peer._public_key,
            static_static=peer._static_static,
            local_index=local_index,
            timestamp=tai64n(now + self._unix_offset),
            cookie=self._fresh_cookie(peer, now),
        )
        peer._handshake = handshake
        self._handshakes[local_index] = peer
        peer._last_mac1 = data[INITIATION_MAC1_OFFSET : INITIATION_MAC1_OFFSET + 16]
        # timers: traversal, sent, handshake initiated
        if peer._persistent_keepalive:
            peer._t_persistent = now + peer._persistent_keepalive
            self._lower_hint(peer._t_persistent)
        peer._t_keepalive = None
        peer._t_retransmit = (
            now + REKEY_TIMEOUT + self._random.uniform(0.0, REKEY_TIMEOUT_JITTER_MAX)
        )
        self._lower_hint(peer._t_retransmit)
        self._queue(peer, data)

    def _begin_session(self, peer: Peer, kp: Keypair, now: float) -> None:
        """Install a fresh keypair (wireguard-go BeginSymmetricSession)."""
        if kp.is_initiator:
            if peer._next is not None:
                old_previous, old_current = peer._previous, peer._current
                peer._previous = peer._next
                peer._next = None
                self._drop_keypair(old_current)
                self._drop_keypair(old_previous)
            else:
                self._drop_keypair(peer._previous)
                peer._previous = peer._current
            peer._current = kp
        else:
            self._drop_keypair(peer._next)
            peer._next = kp
            self._drop_keypair(peer._previous)
            peer._previous = None
        self._keypairs[kp.local_index] = kp
        peer._t_zero_keys = now + ZERO_KEYS_AFTER  # timersSessionDerived
        self._lower_hint(peer._t_zero_keys)

    def _confirm_next(self, peer: Peer, now: float) -> None:
        """The initiator used our ``next`` keypair: it becomes current."""
        self._drop_keypair(peer._previous)
        peer._previous = peer._current
        peer._current = peer._next
        peer._next = None
        self._handshake_complete(peer, now)
        self._send_staged(peer, now)

    def _handshake_complete(self, peer: Peer, now: float) -> None:
        peer._t_retransmit = None
        peer._handshake_attempts = 0
        peer._sent_last_minute_handshake = False
        peer._last_handshake_unix = now + self._unix_offset
        self._events.append(HandshakeCompleted(peer._public_key))

    def _drop_keypair(self, kp: Keypair | None) -> None:
        if kp is not None:
            self._keypairs.pop(kp.local_index, None)

    def _drop_keys(self, peer: Peer, *, announce: bool) -> None:
        """Forget every key of ``peer`` (wireguard-go: zero key material)."""
        had_keys = any(
            x is not None for x in (peer._previous, peer._current, peer._next, peer._handshake)
        )
        for kp in (peer._previous, peer._current, peer._next):
            self._drop_keypair(kp)
        peer._previous = peer._current = peer._next = None
        self._forget_handshake(peer)
        peer._t_zero_keys = None
        if announce and had_keys:
            self._events.append(SessionExpired(peer._public_key))

    def _set_endpoint(self, peer: Peer, source: Endpoint) -> None:
        if peer._endpoint != source:
            peer._endpoint = source
            self._events.append(PeerEndpointChanged(peer._public_key, source))

    # --- sending queued packets -------------------------------------------------

    def _queue(self, peer: Peer, data: bytes) -> None:
        endpoint = peer._endpoint
        if endpoint is None:
            return
        peer.tx_bytes += len(data)
        self._transmits.append(Transmit(endpoint, data, peer._public_key))

    def _seal(self, peer: Peer, kp: Keypair, packet: bytes, now: float) -> bytes:
        counter = kp.send_counter
        kp.send_counter = counter + 1
        pad = padding_size(len(packet), self._mtu)
        if pad:
            packet = packet + _PADDING[pad]
        data = TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, kp.remote_index, counter) + kp.send.encrypt(
            _NONCE_PREFIX + counter.to_bytes(8, "little"), packet, None
        )
        if packet and peer._t_new_handshake is None:
            peer._t_new_handshake = now + NEW_HANDSHAKE_TIMEOUT
            if peer._t_new_handshake < self._hint:
                self._hint = peer._t_new_handshake
        peer._t_keepalive = None
        if peer._persistent_keepalive:
            peer._t_persistent = now + peer._persistent_keepalive
            if peer._t_persistent < self._hint:
                self._hint = peer._t_persistent
        return data

    def _send_keepalive(self, peer: Peer, now: float) -> None:
        if not peer._staged:
            peer._staged.append(b"")
        self._send_staged(peer, now)

    def _send_staged(self, peer: Peer, now: float) -> None:
        if not peer._staged:
            return
        kp = peer._current
        if (
            kp is None
            or kp.send_counter >= REJECT_AFTER_MESSAGES
            or now - kp.created >= REJECT_AFTER_TIME
        ):
            self._send_initiation(peer, now, retry=False)
            return
        if peer._endpoint is None:
            return
        while peer._staged:
            self._queue(peer, self._seal(peer, kp, peer._staged.popleft(), now))
        if kp.send_counter > REKEY_AFTER_MESSAGES or (
            kp.is_initiator and now - kp.created >= REKEY_AFTER_TIME
        ):
            self._send_initiation(peer, now, retry=False)

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
        hint = self._hint
        return None if hint == _INF else hint

    def _lower_hint(self, deadline: float) -> None:
        if deadline < self._hint:
            self._hint = deadline

    def _earliest_deadline(self) -> float:
        best = _INF
        for peer in self._peers.values():
            for t in peer._deadlines():
                if t is not None and t < best:
                    best = t
        return best

    def handle_timeout(self, now: float) -> None:
        """Fire every timer due at ``now`` (whitepaper §6, wireguard-go timers.go)."""
        for peer in list(self._peers.values()):
            t = peer._t_retransmit
            if t is not None and t <= now:
                peer._t_retransmit = None
                self._expired_retransmit(peer, now)
            t = peer._t_keepalive
            if t is not None and t <= now:
                peer._t_keepalive = None
                self._send_keepalive(peer, now)
                if peer._need_another_keepalive:
                    peer._need_another_keepalive = False
                    peer._t_keepalive = now + KEEPALIVE_TIMEOUT
                    self._lower_hint(peer._t_keepalive)
            t = peer._t_new_handshake
            if t is not None and t <= now:
                # sent data, heard nothing for KEEPALIVE + REKEY_TIMEOUT
                peer._t_new_handshake = None
                self._send_initiation(peer, now, retry=False)
            t = peer._t_zero_keys
            if t is not None and t <= now:
                self._drop_keys(peer, announce=True)
            t = peer._t_persistent
            if t is not None and t <= now:
                peer._t_persistent = None
                if peer._persistent_keepalive:
                    self._send_keepalive(peer, now)
        self._hint = self._earliest_deadline()

    def _expired_retransmit(self, peer: Peer, now: float) -> None:
        if peer._handshake_attempts >= MAX_TIMER_HANDSHAKES:
            # gave up after REKEY_ATTEMPT_TIME
            peer._t_keepalive = None
            peer._staged.clear()
            self._forget_handshake(peer)
            if peer._t_zero_keys is None:
                peer._t_zero_keys = now + ZERO_KEYS_AFTER
                self._lower_hint(peer._t_zero_keys)
            self._events.append(HandshakeTimedOut(peer._public_key))
            return
        peer._handshake_attempts += 1
        self._send_initiation(peer, now, retry=True)

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
