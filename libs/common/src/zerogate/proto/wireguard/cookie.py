"""Denial-of-service protection: cookies and a per-source rate limit
(whitepaper §5.3, §5.4.7; wireguard-go device/cookie.go, ratelimiter/).

Under load the responder answers an initiation that lacks a valid mac2 with a
cookie reply instead of doing the expensive Diffie-Hellman work. The cookie is
``MAC(Rm, source ip || source port)`` under a random secret ``Rm`` rotated every
COOKIE_REFRESH_TIME (2 minutes), sent encrypted with XChaCha20-Poly1305 under
``HASH(LABEL_COOKIE || our public key)`` with the initiation's mac1 as
associated data. Initiations that do carry a valid mac2 then pass a token
bucket per source IP (20/s, burst 5).
"""

from __future__ import annotations

import ipaddress
import random

from zerogate.proto.net import Endpoint
from zerogate.proto.wireguard.constants import (
    COOKIE_REFRESH_TIME,
    KEY_LEN,
    RATELIMIT_BURST,
    RATELIMIT_GC_INTERVAL,
    RATELIMIT_PACKETS_PER_SECOND,
    XNONCE_LEN,
)
from zerogate.proto.wireguard.crypto import mac, xaead_decrypt, xaead_encrypt
from zerogate.proto.wireguard.messages import CookieReply


def source_bytes(source: Endpoint) -> bytes:
    """The address and port a cookie is bound to: packed IP || big-endian port."""
    host, port = source
    try:
        packed = ipaddress.ip_address(host.partition("%")[0]).packed
    except ValueError:
        packed = host.encode("utf-8", "surrogateescape")
    return packed + (port & 0xFFFF).to_bytes(2, "big")


class CookieChecker:
    """The responder side: makes cookies for sources and checks mac2.

    The secret Rm and the nonces of cookie replies come from ``rng`` (default:
    the OS generator; tests pass a seeded one).
    """

    __slots__ = ("_key", "_rng", "_secret", "_secret_time")

    def __init__(self, cookie_key: bytes, now: float, *, rng: random.Random | None = None) -> None:
        self._key = cookie_key  # HASH(LABEL_COOKIE || our public key)
        self._rng = rng if rng is not None else random.SystemRandom()
        self._secret = self._rng.randbytes(KEY_LEN)
        self._secret_time = now

    def set_key(self, cookie_key: bytes) -> None:
        self._key = cookie_key

    def cookie(self, source: Endpoint, now: float) -> bytes:
        """tau = MAC(Rm, Aip || Aport), rotating Rm after COOKIE_REFRESH_TIME."""
        if now - self._secret_time >= COOKIE_REFRESH_TIME:
            self._secret = self._rng.randbytes(KEY_LEN)
            self._secret_time = now
        return mac(self._secret, source_bytes(source))

    def reply(self, receiver: int, mac1: bytes, source: Endpoint, now: float) -> bytes:
        """A cookie reply (§5.4.7) for a message with sender index ``receiver`` and ``mac1``."""
        nonce = self._rng.randbytes(XNONCE_LEN)
        encrypted = xaead_encrypt(self._key, nonce, self.cookie(source, now), mac1)
        return CookieReply(receiver, nonce, encrypted).encode()


def open_cookie_reply(reply: CookieReply, peer_cookie_key: bytes, last_mac1: bytes) -> bytes:
    """The initiator side: decrypt tau from a cookie reply (raises RemoteProtocolError)."""
    return xaead_decrypt(peer_cookie_key, reply.nonce, reply.encrypted_cookie, last_mac1)


class RateLimiter:
    """Token bucket per source IP: RATELIMIT_PACKETS_PER_SECOND, burst RATELIMIT_BURST.

    Like wireguard-go, tokens are whole nanoseconds of credit (a packet costs
    1e9 / rate), so float rounding of ``now`` cannot lose a token.
    """

    __slots__ = ("_buckets", "_last_gc")

    _COST = 1_000_000_000 // RATELIMIT_PACKETS_PER_SECOND
    _MAX = _COST * RATELIMIT_BURST

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}  # ip -> [tokens (ns), last seen]
        self._last_gc = 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, ip: str, now: float) -> bool:
        if now - self._last_gc >= RATELIMIT_GC_INTERVAL:
            self._gc(now)
        bucket = self._buckets.get(ip)
        if bucket is None:
            self._buckets[ip] = [self._MAX - self._COST, now]
            return True
        tokens = min(self._MAX, bucket[0] + max(0, round((now - bucket[1]) * 1e9)))
        bucket[1] = now
        if tokens >= self._COST:
            bucket[0] = tokens - self._COST
            return True
        bucket[0] = tokens
        return False

    def _gc(self, now: float) -> None:
        # A bucket idle for a second is full again; forgetting it changes nothing.
        self._last_gc = now
        stale = [ip for ip, b in self._buckets.items() if now - b[1] >= RATELIMIT_GC_INTERVAL]
        for ip in stale:
            del self._buckets[ip]
