"""Cryptographic primitives of WireGuard (whitepaper §5.4).

X25519 and ChaCha20-Poly1305 come from ``cryptography``; BLAKE2s and HMAC from
the standard library. XChaCha20-Poly1305 (cookies, §5.4.7) is built here from
HChaCha20 (draft-irtf-cfrg-xchacha-03 §2.2) plus ChaCha20-Poly1305 with the
derived subkey.

Errors of ``cryptography`` (an invalid tag, a low-order point) are translated to
:class:`RemoteProtocolError` at this boundary.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from zerogate.proto.wireguard.constants import KEY_LEN, MAC_LEN, XNONCE_LEN
from zerogate.proto.wireguard.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "aead_decrypt",
    "aead_encrypt",
    "dh",
    "generate_private_key",
    "hash_",
    "hchacha20",
    "hmac_",
    "kdf1",
    "kdf2",
    "kdf3",
    "mac",
    "public_key",
    "tai64n",
    "xaead_decrypt",
    "xaead_encrypt",
]


def hash_(*parts: bytes) -> bytes:
    """HASH(input): BLAKE2s-256 of the concatenation (§5.4)."""
    h = hashlib.blake2s()
    for part in parts:
        h.update(part)
    return h.digest()


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(key, input): keyed BLAKE2s with a 16-byte output (§5.4)."""
    return hashlib.blake2s(data, digest_size=MAC_LEN, key=key).digest()


def hmac_(key: bytes, data: bytes) -> bytes:
    """HMAC(key, input): HMAC-BLAKE2s-256 (§5.4)."""
    return hmac.digest(key, data, hashlib.blake2s)


def kdf1(key: bytes, data: bytes) -> bytes:
    """KDF1 (§5.4, HKDF with HMAC-BLAKE2s)."""
    t0 = hmac_(key, data)
    return hmac_(t0, b"\x01")


def kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    """KDF2 (§5.4)."""
    t0 = hmac_(key, data)
    t1 = hmac_(t0, b"\x01")
    t2 = hmac_(t0, t1 + b"\x02")
    return t1, t2


def kdf3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    """KDF3 (§5.4)."""
    t0 = hmac_(key, data)
    t1 = hmac_(t0, b"\x01")
    t2 = hmac_(t0, t1 + b"\x02")
    t3 = hmac_(t0, t2 + b"\x03")
    return t1, t2, t3


def generate_private_key() -> bytes:
    """A fresh X25519 private key (clamped as ``wg genkey`` does)."""
    raw = bytearray(os.urandom(KEY_LEN))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return bytes(raw)


def _private(key: bytes) -> X25519PrivateKey:
    if len(key) != KEY_LEN:
        raise LocalProtocolError(f"an X25519 private key has {KEY_LEN} bytes, got {len(key)}")
    return X25519PrivateKey.from_private_bytes(key)


def public_key(private_key: bytes) -> bytes:
    """The X25519 public key of ``private_key``."""
    return _private(private_key).public_key().public_bytes_raw()


def dh(private_key: bytes | X25519PrivateKey, peer_public: bytes) -> bytes:
    """DH(private, public): X25519. A low-order public key is a remote fault."""
    priv = _private(private_key) if isinstance(private_key, bytes) else private_key
    try:
        return priv.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise RemoteProtocolError("X25519 with an invalid public key") from exc


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    """AEAD(key, counter, plain, ad): ChaCha20-Poly1305, 32 zero bits + 64-bit LE counter."""
    nonce = b"\0\0\0\0" + counter.to_bytes(8, "little")
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    nonce = b"\0\0\0\0" + counter.to_bytes(8, "little")
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, ad)
    except InvalidTag as exc:
        raise RemoteProtocolError("AEAD authentication failed") from exc


_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_WORDS16 = struct.Struct("<16I")
_WORDS4 = struct.Struct("<4I")
_WORDS8 = struct.Struct("<8I")
_M32 = 0xFFFFFFFF
_ZERO_BLOCK = bytes(64)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha-03 §2.2).

    It is the ChaCha20 block function without the final addition of the input
    state, keeping words 0-3 and 12-15. We run one ChaCha20 block through
    ``cryptography`` with the 16 nonce bytes as counter+nonce (words 12-15) and
    subtract the known input words from those eight output words.
    """
    if len(key) != KEY_LEN or len(nonce16) != 16:
        raise LocalProtocolError("HChaCha20 needs a 32-byte key and a 16-byte nonce")
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(_ZERO_BLOCK)
    out = _WORDS16.unpack(block)
    n = _WORDS4.unpack(nonce16)
    return _WORDS8.pack(
        (out[0] - _SIGMA[0]) & _M32,
        (out[1] - _SIGMA[1]) & _M32,
        (out[2] - _SIGMA[2]) & _M32,
        (out[3] - _SIGMA[3]) & _M32,
        (out[12] - n[0]) & _M32,
        (out[13] - n[1]) & _M32,
        (out[14] - n[2]) & _M32,
        (out[15] - n[3]) & _M32,
    )


def _xsubkey(key: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    if len(nonce) != XNONCE_LEN:
        raise LocalProtocolError(f"XChaCha20 needs a {XNONCE_LEN}-byte nonce")
    return hchacha20(key, nonce[:16]), b"\0\0\0\0" + nonce[16:]


def xaead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """XAEAD: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03 §2.3)."""
    subkey, nonce12 = _xsubkey(key, nonce)
    return ChaCha20Poly1305(subkey).encrypt(nonce12, plaintext, ad)


def xaead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    subkey, nonce12 = _xsubkey(key, nonce)
    try:
        return ChaCha20Poly1305(subkey).decrypt(nonce12, ciphertext, ad)
    except InvalidTag as exc:
        raise RemoteProtocolError("XAEAD authentication failed") from exc


_TAI64_BASE = 0x400000000000000A  # TAI64 label 2^62 + 10 s TAI-UTC offset (wireguard-go)
_WHITENER_MASK = 0x1000000 - 1  # wireguard-go drops the low 24 bits of the nanoseconds
_TAI64N = struct.Struct(">QI")


def tai64n(unix_time: float) -> bytes:
    """TAI64N timestamp (§5.4.2) of a wall-clock time, nanoseconds whitened."""
    secs = int(unix_time // 1)
    nanos = int((unix_time - secs) * 1e9) & ~_WHITENER_MASK & _M32
    return _TAI64N.pack(_TAI64_BASE + secs, nanos)
