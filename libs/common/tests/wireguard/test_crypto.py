"""Primitives: HChaCha20 / XChaCha20-Poly1305 against draft-irtf-cfrg-xchacha-03,
HMAC-BLAKE2s and the KDF chain against their definitions, TAI64N."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.proto.wireguard import RemoteProtocolError
from zerogate.proto.wireguard.crypto import (
    aead_decrypt,
    aead_encrypt,
    dh,
    generate_private_key,
    hash_,
    hchacha20,
    hmac_,
    kdf1,
    kdf2,
    kdf3,
    mac,
    public_key,
    tai64n,
    xaead_decrypt,
    xaead_encrypt,
)
from zerogate.proto.wireguard.errors import LocalProtocolError


def test_hchacha20_matches_draft_xchacha_section_2_2_1() -> None:
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    expected = bytes.fromhex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
    assert hchacha20(key, nonce) == expected


def _hchacha20_reference(key: bytes, nonce: bytes) -> bytes:
    """HChaCha20 written out from the draft (20 rounds on 16 words, no final add)."""

    def rotl(v: int, c: int) -> int:
        return ((v << c) | (v >> (32 - c))) & 0xFFFFFFFF

    s = [*struct.unpack("<4I", b"expand 32-byte k"), *struct.unpack("<8I", key)]
    s += list(struct.unpack("<4I", nonce))

    def qr(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return struct.pack("<8I", *s[0:4], *s[12:16])


def test_reference_hchacha20_matches_the_draft_vector_too() -> None:
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert _hchacha20_reference(key, nonce) == bytes.fromhex(
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16))
def test_hchacha20_equals_the_round_function(key: bytes, nonce: bytes) -> None:
    assert hchacha20(key, nonce) == _hchacha20_reference(key, nonce)


XCHACHA_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it."
)
XCHACHA_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
XCHACHA_KEY = bytes(range(0x80, 0xA0))
XCHACHA_IV = bytes(range(0x40, 0x58))
XCHACHA_CIPHERTEXT = bytes.fromhex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
)
XCHACHA_TAG = bytes.fromhex("c0875924c1c7987947deafd8780acf49")


def test_xchacha20_poly1305_matches_draft_appendix_a_3_1() -> None:
    sealed = xaead_encrypt(XCHACHA_KEY, XCHACHA_IV, XCHACHA_PLAINTEXT, XCHACHA_AAD)
    assert sealed == XCHACHA_CIPHERTEXT + XCHACHA_TAG
    assert xaead_decrypt(XCHACHA_KEY, XCHACHA_IV, sealed, XCHACHA_AAD) == XCHACHA_PLAINTEXT


@pytest.mark.parametrize("where", ["ciphertext", "tag", "aad", "nonce"])
def test_xchacha20_poly1305_refuses_any_change(where: str) -> None:
    sealed = bytearray(XCHACHA_CIPHERTEXT + XCHACHA_TAG)
    aad, iv = bytearray(XCHACHA_AAD), bytearray(XCHACHA_IV)
    {"ciphertext": sealed, "tag": sealed, "aad": aad, "nonce": iv}[where][
        -1 if where == "tag" else 0
    ] ^= 1
    with pytest.raises(RemoteProtocolError):
        xaead_decrypt(XCHACHA_KEY, bytes(iv), bytes(sealed), bytes(aad))


def test_xaead_wants_a_24_byte_nonce() -> None:
    with pytest.raises(LocalProtocolError):
        xaead_encrypt(XCHACHA_KEY, bytes(12), b"", b"")


def _hmac_blake2s_by_definition(key: bytes, data: bytes) -> bytes:
    """RFC 2104 with BLAKE2s (block 64 bytes), as the whitepaper §5.4 defines HMAC."""
    block = 64
    if len(key) > block:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.blake2s(bytes(k ^ 0x36 for k in key) + data).digest()
    return hashlib.blake2s(bytes(k ^ 0x5C for k in key) + inner).digest()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.binary(max_size=100))
def test_hmac_is_hmac_blake2s(key: bytes, data: bytes) -> None:
    assert hmac_(key, data) == _hmac_blake2s_by_definition(key, data)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=64))
def test_kdf_chain_follows_the_whitepaper(key: bytes, data: bytes) -> None:
    # whitepaper §5.4: tau0 = HMAC(key, input), tau1 = HMAC(tau0, 0x1),
    # tau_i = HMAC(tau0, tau_{i-1} || i)
    t0 = _hmac_blake2s_by_definition(key, data)
    t1 = _hmac_blake2s_by_definition(t0, b"\x01")
    t2 = _hmac_blake2s_by_definition(t0, t1 + b"\x02")
    t3 = _hmac_blake2s_by_definition(t0, t2 + b"\x03")
    assert kdf1(key, data) == t1
    assert kdf2(key, data) == (t1, t2)
    assert kdf3(key, data) == (t1, t2, t3)


def test_hash_and_mac_sizes() -> None:
    # HASH is BLAKE2s-256 (32 bytes); MAC is keyed BLAKE2s with 16 bytes out
    assert hash_(b"a", b"b") == hashlib.blake2s(b"ab").digest()
    assert len(mac(bytes(32), b"x")) == 16
    assert mac(bytes(32), b"x") != mac(bytes(31) + b"\x01", b"x")


def test_aead_nonce_is_32_zero_bits_then_little_endian_counter() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key = bytes(range(32))
    counter = 0x0102030405060708
    expected = ChaCha20Poly1305(key).encrypt(
        bytes(4) + bytes.fromhex("0807060504030201"), b"data", b"ad"
    )
    assert aead_encrypt(key, counter, b"data", b"ad") == expected
    assert aead_decrypt(key, counter, expected, b"ad") == b"data"
    with pytest.raises(RemoteProtocolError):
        aead_decrypt(key, counter + 1, expected, b"ad")


def test_tai64n_layout() -> None:
    # TAI64 label: 2^62 + 10 s (TAI-UTC as wireguard-go writes it), big endian,
    # then big-endian nanoseconds with the low 24 bits cleared ("whitened").
    assert tai64n(0.0) == bytes.fromhex("400000000000000a00000000")
    stamp = tai64n(1_700_000_000.75)
    secs, nanos = struct.unpack(">QI", stamp)
    assert secs == 2**62 + 10 + 1_700_000_000
    assert nanos % 2**24 == 0
    assert 750_000_000 - 2**24 < nanos <= 750_000_000


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=0, max_value=2**40, allow_nan=False),
    st.floats(min_value=0.02, max_value=1e6),
)
def test_tai64n_orders_like_time(t: float, dt: float) -> None:
    # 2^24 ns is about 16.8 ms: further apart than that, the later stamp is greater
    assert tai64n(t + dt) > tai64n(t)


def test_dh_agrees_and_refuses_low_order_points() -> None:
    a, b = generate_private_key(), generate_private_key()
    assert dh(a, public_key(b)) == dh(b, public_key(a))
    with pytest.raises(RemoteProtocolError):
        dh(a, bytes(32))  # the identity: an all-zero shared secret


def test_generated_keys_are_clamped() -> None:
    k = generate_private_key()
    assert k[0] & 7 == 0
    assert k[31] & 0x80 == 0
    assert k[31] & 0x40


def test_bad_key_length_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        public_key(bytes(31))
