"""The Noise_IKpsk2 handshake of WireGuard (whitepaper §5.4.2-§5.4.5).

Pure functions over the message codecs: no peers, no timers, no indices of
their own. The device decides who may handshake and when; these functions
only build and check messages and derive the transport keys. Any failure to
authenticate raises :class:`RemoteProtocolError` and leaves nothing changed.

Naming follows the whitepaper: ``C`` chaining key, ``H`` hash, ``S`` static,
``E`` ephemeral, ``i`` initiator, ``r`` responder.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zerogate.proto.wireguard.constants import (
    CONSTRUCTION,
    IDENTIFIER,
    KEY_LEN,
    LABEL_COOKIE,
    LABEL_MAC1,
    MAC_LEN,
    TAI64N_LEN,
)
from zerogate.proto.wireguard.crypto import (
    aead_decrypt,
    aead_encrypt,
    dh,
    hash_,
    kdf1,
    kdf2,
    kdf3,
    mac,
)
from zerogate.proto.wireguard.errors import RemoteProtocolError
from zerogate.proto.wireguard.messages import (
    INITIATION_MAC1_OFFSET,
    RESPONSE_MAC1_OFFSET,
    Initiation,
    Response,
)

INITIAL_CHAINING_KEY = hash_(CONSTRUCTION)  # Ci := HASH(CONSTRUCTION), §5.4.2
INITIAL_HASH = hash_(INITIAL_CHAINING_KEY, IDENTIFIER)  # Hi := HASH(Ci || IDENTIFIER)
ZERO_PSK = bytes(KEY_LEN)  # Q when no preshared key is configured, §5.2
_EMPTY_MAC = bytes(MAC_LEN)


def mac1_key(public_key: bytes) -> bytes:
    """HASH(LABEL_MAC1 || Spub_m): the key of mac1 for messages to ``public_key`` (§5.4.4)."""
    return hash_(LABEL_MAC1, public_key)


def cookie_key(public_key: bytes) -> bytes:
    """HASH(LABEL_COOKIE || Spub_m): the key of cookie replies sent by ``public_key`` (§5.4.7)."""
    return hash_(LABEL_COOKIE, public_key)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """Transport keys derived at the end of a handshake (§5.4.5)."""

    send: bytes
    receive: bytes


@dataclass(slots=True)
class InitiatorHandshake:
    """What an initiator remembers between sending an initiation and its response."""

    local_index: int
    ephemeral: X25519PrivateKey
    chaining_key: bytes
    hash: bytes
    peer_public: bytes


@dataclass(frozen=True, slots=True)
class ConsumedInitiation:
    """A fully authenticated initiation, before any replay policy is applied."""

    peer_public: bytes
    remote_index: int
    remote_ephemeral: bytes
    timestamp: bytes
    chaining_key: bytes
    hash: bytes


def add_macs(message: bytearray, mac1_offset: int, key_mac1: bytes, cookie: bytes | None) -> bytes:
    """Fill mac1 (always) and mac2 (when we hold a fresh cookie) in place (§5.4.4)."""
    message[mac1_offset : mac1_offset + MAC_LEN] = mac(key_mac1, bytes(message[:mac1_offset]))
    mac2_offset = mac1_offset + MAC_LEN
    if cookie is not None:
        message[mac2_offset:] = mac(cookie, bytes(message[:mac2_offset]))
    else:
        message[mac2_offset:] = _EMPTY_MAC
    return bytes(message)


def check_mac1(message: bytes, mac1_offset: int, key_mac1: bytes) -> bool:
    expected = mac(key_mac1, message[:mac1_offset])
    return hmac.compare_digest(expected, message[mac1_offset : mac1_offset + MAC_LEN])


def check_mac2(message: bytes, mac2_offset: int, cookie: bytes) -> bool:
    expected = mac(cookie, message[:mac2_offset])
    return hmac.compare_digest(expected, message[mac2_offset : mac2_offset + MAC_LEN])


def generate_ephemeral(rng: random.Random | None = None) -> X25519PrivateKey:
    """A fresh ephemeral key: 32 bytes of ``rng`` (X25519 clamps them), or of
    the OS generator when ``rng`` is None. Tests pass a seeded ``rng`` to make
    a handshake reproducible."""
    if rng is None:
        return X25519PrivateKey.generate()
    return X25519PrivateKey.from_private_bytes(rng.randbytes(KEY_LEN))


def create_initiation(
    *,
    static_public: bytes,
    peer_public: bytes,
    static_static: bytes,
    local_index: int,
    timestamp: bytes,
    cookie: bytes | None,
    rng: random.Random | None = None,
) -> tuple[bytes, InitiatorHandshake]:
    """Build a handshake initiation (§5.4.2). ``static_static`` = DH(Spriv_i, Spub_r).

    The ephemeral key comes from ``rng`` (see :func:`generate_ephemeral`).
    """
    c = INITIAL_CHAINING_KEY
    h = hash_(INITIAL_HASH, peer_public)
    ephemeral = generate_ephemeral(rng)
    e_pub = ephemeral.public_key().public_bytes_raw()
    c = kdf1(c, e_pub)
    h = hash_(h, e_pub)
    c, k = kdf2(c, dh(ephemeral, peer_public))
    encrypted_static = aead_encrypt(k, 0, static_public, h)
    h = hash_(h, encrypted_static)
    c, k = kdf2(c, static_static)
    encrypted_timestamp = aead_encrypt(k, 0, timestamp, h)
    h = hash_(h, encrypted_timestamp)
    msg = Initiation(
        local_index, e_pub, encrypted_static, encrypted_timestamp, _EMPTY_MAC, _EMPTY_MAC
    )
    data = add_macs(bytearray(msg.encode()), INITIATION_MAC1_OFFSET, mac1_key(peer_public), cookie)
    return data, InitiatorHandshake(local_index, ephemeral, c, h, peer_public)


def consume_initiation(
    data: bytes,
    *,
    static_private: X25519PrivateKey,
    static_public: bytes,
    static_static_for: Callable[[bytes], bytes | None],
) -> ConsumedInitiation:
    """Authenticate an initiation (MACs are the caller's business).

    ``static_static_for(peer_public)`` returns DH(Spriv_r, Spub_i) for a known
    peer, or None: an unknown peer is refused.
    """
    msg = Initiation.decode(data)
    c = INITIAL_CHAINING_KEY
    h = hash_(INITIAL_HASH, static_public)
    c = kdf1(c, msg.ephemeral)
    h = hash_(h, msg.ephemeral)
    c, k = kdf2(c, dh(static_private, msg.ephemeral))
    peer_public = aead_decrypt(k, 0, msg.encrypted_static, h)
    h = hash_(h, msg.encrypted_static)
    static_static = static_static_for(peer_public)
    if static_static is None:
        raise RemoteProtocolError("initiation from an unknown peer")
    c, k = kdf2(c, static_static)
    timestamp = aead_decrypt(k, 0, msg.encrypted_timestamp, h)
    h = hash_(h, msg.encrypted_timestamp)
    if len(timestamp) != TAI64N_LEN:  # pragma: no cover - the AEAD fixes the length
        raise RemoteProtocolError("bad timestamp length")
    return ConsumedInitiation(peer_public, msg.sender, msg.ephemeral, timestamp, c, h)


def create_response(
    consumed: ConsumedInitiation,
    *,
    preshared_key: bytes,
    local_index: int,
    cookie: bytes | None,
    rng: random.Random | None = None,
) -> tuple[bytes, SessionKeys]:
    """Build the response to an authenticated initiation and derive the keys (§5.4.3, §5.4.5).

    The ephemeral key comes from ``rng`` (see :func:`generate_ephemeral`).
    """
    c, h = consumed.chaining_key, consumed.hash
    ephemeral = generate_ephemeral(rng)
    e_pub = ephemeral.public_key().public_bytes_raw()
    c = kdf1(c, e_pub)
    h = hash_(h, e_pub)
    c = kdf1(c, dh(ephemeral, consumed.remote_ephemeral))
    c = kdf1(c, dh(ephemeral, consumed.peer_public))
    c, t, k = kdf3(c, preshared_key)
    h = hash_(h, t)
    encrypted_nothing = aead_encrypt(k, 0, b"", h)
    msg = Response(
        local_index, consumed.remote_index, e_pub, encrypted_nothing, _EMPTY_MAC, _EMPTY_MAC
    )
    data = add_macs(
        bytearray(msg.encode()), RESPONSE_MAC1_OFFSET, mac1_key(consumed.peer_public), cookie
    )
    receive, send = kdf2(c, b"")  # responder: (Trecv_r, Tsend_r) := KDF2(Cr, ε)
    return data, SessionKeys(send=send, receive=receive)


def consume_response(
    data: bytes,
    handshake: InitiatorHandshake,
    *,
    static_private: X25519PrivateKey,
    preshared_key: bytes,
) -> tuple[Response, SessionKeys]:
    """Authenticate a response to ``handshake`` and derive the keys (§5.4.3, §5.4.5)."""
    msg = Response.decode(data)
    if msg.receiver != handshake.local_index:
        raise RemoteProtocolError("response to another handshake")
    c, h = handshake.chaining_key, handshake.hash
    c = kdf1(c, msg.ephemeral)
    h = hash_(h, msg.ephemeral)
    c = kdf1(c, dh(handshake.ephemeral, msg.ephemeral))
    c = kdf1(c, dh(static_private, msg.ephemeral))
    c, t, k = kdf3(c, preshared_key)
    h = hash_(h, t)
    aead_decrypt(k, 0, msg.encrypted_nothing, h)
    send, receive = kdf2(c, b"")  # initiator: (Tsend_i, Trecv_i) := KDF2(Ci, ε)
    return msg, SessionKeys(send=send, receive=receive)


__all__ = [
    "INITIAL_CHAINING_KEY",
    "INITIAL_HASH",
    "ZERO_PSK",
    "ConsumedInitiation",
    "InitiatorHandshake",
    "SessionKeys",
    "add_macs",
    "check_mac1",
    "check_mac2",
    "consume_initiation",
    "consume_response",
    "cookie_key",
    "create_initiation",
    "create_response",
    "generate_ephemeral",
    "mac1_key",
]
