"""Random and mutated bytes into every parser and into Device.decrypt: only our
own error type may escape a parser, and decrypt never raises (it drops)."""

from __future__ import annotations

import contextlib
import functools

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wg_helpers import A_ADDR, A_TUN4, B_ADDR, B_TUN4, Link, ipv4, make_link

from zerogate.proto.ip import packet as ip_packet
from zerogate.proto.wireguard import RemoteProtocolError, noise
from zerogate.proto.wireguard.cookie import open_cookie_reply
from zerogate.proto.wireguard.crypto import generate_private_key
from zerogate.proto.wireguard.messages import CookieReply, decode

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def _samples() -> tuple[Link, dict[str, bytes]]:
    """A linked pair and one genuine datagram of every kind."""
    lk = make_link()
    lk.b.set_under_load(True)
    lk.send("a", ipv4(A_TUN4, B_TUN4, b"first"))
    lk.b.set_under_load(False)
    lk.advance(11)  # b's keepalive
    by_kind: dict[str, bytes] = {}
    for w in lk.wire:
        name = {1: "initiation", 2: "response", 3: "cookie", 4: "transport"}[w.kind]
        by_kind.setdefault(name, w.data)
    out = lk.a.encrypt(ipv4(A_TUN4, B_TUN4, b"x" * 100), lk.now)
    assert out is not None
    by_kind["data"] = out[1]
    by_kind["keepalive"] = next(w.data for w in lk.wire if w.kind == 4 and len(w.data) == 32)
    return lk, by_kind


def _decrypt_both(data: bytes) -> None:
    lk, _ = _samples()
    for dev, src in ((lk.a, B_ADDR), (lk.b, A_ADDR), (lk.b, ("203.0.113.1", 1))):
        for load in (False, True):
            dev.set_under_load(load)
            out = dev.decrypt(data, src, lk.now)
            assert out is None or isinstance(out, bytes)
        dev.set_under_load(False)
    # drain what the device may have queued (cookie replies)
    while lk.a.poll_transmit() is not None or lk.b.poll_transmit() is not None:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_decrypt_random_bytes(data: bytes) -> None:
    _decrypt_both(data)


@FUZZ
@given(st.binary(min_size=1, max_size=300), st.sampled_from([1, 2, 3, 4]))
def test_decrypt_random_bodies_with_a_valid_type(body: bytes, kind: int) -> None:
    _decrypt_both(kind.to_bytes(4, "little") + body)


@FUZZ
@given(
    st.sampled_from(["initiation", "response", "cookie", "transport", "data", "keepalive"]),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(-20, 20),
)
def test_decrypt_mutated_datagrams(kind: str, flips: list[tuple[int, int]], resize: int) -> None:
    lk, samples = _samples()
    data = bytearray(samples[kind])
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data[: len(data) + resize] if resize < 0 else data + bytes(resize)
    _decrypt_both(bytes(data))
    # the genuine session still works afterwards
    assert lk.send("a", ipv4(A_TUN4, B_TUN4, b"still")) == ipv4(A_TUN4, B_TUN4, b"still")


_STATIC = X25519PrivateKey.from_private_bytes(generate_private_key())


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(min_size=144, max_size=144).map(lambda b: b"\x01\0\0\0" + b),
        st.binary(min_size=60, max_size=60).map(lambda b: b"\x03\0\0\0" + b),
    )
)
def test_parsers_raise_only_our_error(data: bytes) -> None:
    # anything but RemoteProtocolError escaping fails the test
    with contextlib.suppress(RemoteProtocolError):
        decode(data)
    with contextlib.suppress(RemoteProtocolError):
        noise.consume_initiation(
            data,
            static_private=_STATIC,
            static_public=_STATIC.public_key().public_bytes_raw(),
            static_static_for=lambda _k: bytes(32),
        )
    with contextlib.suppress(RemoteProtocolError):
        open_cookie_reply(CookieReply.decode(data), bytes(32), bytes(16))


@FUZZ
@given(st.binary(max_size=80))
def test_ip_helpers_never_raise(data: bytes) -> None:
    v = ip_packet.version(data)
    assert v in (None, 4, 6)
    for fn in (ip_packet.source, ip_packet.destination):
        got = fn(data)
        assert got is None or got[0] == v
    n = ip_packet.total_length(data)
    assert n is None or n <= len(data)


@FUZZ
@given(st.binary(min_size=148, max_size=148))
def test_random_initiations_of_the_right_size(body: bytes) -> None:
    _decrypt_both(b"\x01\0\0\0" + body[4:])
