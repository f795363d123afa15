"""Cookies and rate limiting under load (whitepaper §5.3, §5.4.7; wireguard-go
cookie.go, ratelimiter.go)."""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest
from wg_helpers import A_ADDR, A_TUN4, B_ADDR, B_TUN4, NOW0, UNIX0, Link, ipv4, make_link

from zerogate.proto.wireguard import Device, HandshakeCompleted
from zerogate.proto.wireguard.cookie import RateLimiter
from zerogate.proto.wireguard.crypto import generate_private_key

INITIATION, RESPONSE, COOKIE, TRANSPORT = 1, 2, 3, 4
COOKIE_REFRESH_TIME = 120.0  # whitepaper §6.1: secret and cookie lifetime
RATE, BURST = 20, 5  # wireguard-go ratelimiter: packets per second per IP, burst
MAC2 = slice(132, 148)  # of an initiation (148 bytes)


def test_under_load_an_initiation_without_mac2_gets_a_cookie_then_succeeds(link: Link) -> None:
    link.b.set_under_load(True)
    link.send("a", ipv4(A_TUN4, B_TUN4, b"through"))
    kinds = [(w.sender, w.kind, len(w.data)) for w in link.wire]
    assert kinds[:4] == [
        ("a", INITIATION, 148),
        ("b", COOKIE, 64),
        ("a", INITIATION, 148),  # resent at once, now with mac2
        ("b", RESPONSE, 92),
    ]
    assert link.wire[0].data[MAC2] == bytes(16)
    assert link.wire[2].data[MAC2] != bytes(16)
    assert link.to_b == [ipv4(A_TUN4, B_TUN4, b"through")]
    assert HandshakeCompleted(link.b.public_key) in link.events_a


def test_cookie_reply_costs_the_responder_no_state(link: Link) -> None:
    link.b.set_under_load(True)
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    init = link.a.poll_transmit()
    assert init is not None
    assert link.b.decrypt(init.data, A_ADDR, link.now) is None
    reply = link.b.poll_transmit()
    assert reply is not None
    assert reply.data[0] == COOKIE
    assert len(reply.data) == 64
    assert reply.destination == A_ADDR
    assert reply.peer == b""
    assert struct.unpack_from("<I", reply.data, 4)[0] == struct.unpack_from("<I", init.data, 4)[0]
    pb = link.b.peers[link.a.public_key]
    assert pb.session.next is None
    assert pb.session.greatest_timestamp == b""
    assert pb.endpoint is None
    assert link.b._keypairs == {}


def test_bad_mac1_gets_no_cookie_either(link: Link) -> None:
    link.b.set_under_load(True)
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    init = link.a.poll_transmit()
    assert init is not None
    bad = bytearray(init.data)
    bad[120] ^= 0xFF
    assert link.b.decrypt(bytes(bad), A_ADDR, link.now) is None
    assert link.b.poll_transmit() is None


def _cookie_then(link: Link) -> bytes:
    """Run initiation -> cookie reply; return a's resent initiation (not delivered)."""
    link.b.set_under_load(True)
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    init = link.a.poll_transmit()
    assert init is not None
    link.b.decrypt(init.data, link.source_of_a, link.now)
    reply = link.b.poll_transmit()
    assert reply is not None
    assert reply.data[0] == COOKIE
    assert link.a.decrypt(reply.data, B_ADDR, link.now) is None
    resent = link.a.poll_transmit()
    assert resent is not None
    assert resent.data[0] == INITIATION
    return resent.data


def test_mac2_is_bound_to_the_source_address(link: Link) -> None:
    resent = _cookie_then(link)
    # the same initiation from another address or port is not covered by the cookie
    for other in (("192.0.2.99", A_ADDR[1]), (A_ADDR[0], A_ADDR[1] + 1)):
        assert link.b.decrypt(resent, other, link.now) is None
        tx = link.b.poll_transmit()
        assert tx is not None
        assert tx.data[0] == COOKIE
        assert tx.destination == other
    assert link.b.decrypt(resent, A_ADDR, link.now) is None
    tx = link.b.poll_transmit()
    assert tx is not None
    assert tx.data[0] == RESPONSE


def test_tampered_mac2_under_load_gets_a_cookie_not_a_response(link: Link) -> None:
    resent = bytearray(_cookie_then(link))
    resent[140] ^= 1
    link.b.decrypt(bytes(resent), A_ADDR, link.now)
    tx = link.b.poll_transmit()
    assert tx is not None
    assert tx.data[0] == COOKIE


def test_cookie_reply_is_used_once_and_forgeries_are_ignored(link: Link) -> None:
    link.b.set_under_load(True)
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    init = link.a.poll_transmit()
    assert init is not None
    link.b.decrypt(init.data, A_ADDR, link.now)
    reply = link.b.poll_transmit()
    assert reply is not None
    pa = link.a.peers[link.b.public_key]
    forged = bytearray(reply.data)
    forged[40] ^= 1
    assert link.a.decrypt(bytes(forged), B_ADDR, link.now) is None
    assert pa.session.cookie is None
    assert link.a.poll_transmit() is None
    link.a.decrypt(reply.data, B_ADDR, link.now)
    assert pa.session.cookie is not None
    assert link.a.poll_transmit() is not None  # one resend
    link.a.decrypt(reply.data, B_ADDR, link.now)  # the same reply again: no loop
    assert link.a.poll_transmit() is None


def test_initiator_stops_using_a_cookie_after_its_lifetime(link: Link) -> None:
    _cookie_then(link)
    pa = link.a.peers[link.b.public_key]
    link.now += COOKIE_REFRESH_TIME - 1
    link.a._send_initiation(pa.session, link.now, retry=False)
    tx = link.a.poll_transmit()
    assert tx is not None
    assert tx.data[MAC2] != bytes(16)
    link.now += 2
    link.a._send_initiation(pa.session, link.now, retry=False, force=True)
    tx = link.a.poll_transmit()
    assert tx is not None
    assert tx.data[MAC2] == bytes(16)


def test_responder_rotates_its_cookie_secret() -> None:
    lk = make_link()
    lk.b.set_under_load(True)
    src = ("192.0.2.50", 1234)
    first = lk.b._cookies.cookie(src, lk.now)
    assert lk.b._cookies.cookie(src, lk.now + COOKIE_REFRESH_TIME - 1) == first
    assert lk.b._cookies.cookie(("192.0.2.50", 1235), lk.now) != first
    assert lk.b._cookies.cookie(src, lk.now + COOKIE_REFRESH_TIME) != first


def test_not_under_load_mac2_is_ignored(link: Link) -> None:
    link.send("a", ipv4(A_TUN4, B_TUN4))
    assert [w.kind for w in link.wire[:3]] == [INITIATION, RESPONSE, TRANSPORT]


def test_under_load_the_initiator_answers_a_response_with_a_cookie() -> None:
    lk = make_link()
    lk.a.set_under_load(True)
    lk.send("a", ipv4(A_TUN4, B_TUN4, b"x"))
    kinds = [(w.sender, w.kind) for w in lk.wire]
    assert kinds[:3] == [("a", INITIATION), ("b", RESPONSE), ("a", COOKIE)]
    assert lk.b.peers[lk.a.public_key].session.cookie is not None
    lk.advance(6)  # a retransmits; b's response now carries mac2
    assert lk.a.peers[lk.b.public_key].has_session
    responses = [w for w in lk.wire if w.kind == RESPONSE]
    assert responses[-1].data[76:92] != bytes(16)
    assert ipv4(A_TUN4, B_TUN4, b"x") in lk.to_b


def test_per_source_ip_rate_limit_under_load() -> None:
    hub = Device(generate_private_key(), now=NOW0, unix_time=UNIX0)
    hub_addr = ("198.51.100.1", 51820)
    hub.set_under_load(True)
    now = NOW0
    initiators = []
    for i in range(12):
        dev = Device(generate_private_key(), now=now, unix_time=UNIX0)
        dev.add_peer(
            hub.public_key,
            allowed_ips=[ipaddress.ip_network("10.0.0.0/8")],
            endpoint=hub_addr,
            now=now,
        )
        hub.add_peer(dev.public_key, now=now)
        initiators.append((dev, ("203.0.113.5", 40000 + i)))  # one IP, many ports

    def attempt(dev: Device, src: tuple[str, int], t: float) -> bool:
        """Initiation -> cookie -> initiation with mac2; True if the hub responded."""
        dev.encrypt(ipv4("10.9.9.9", "10.0.0.1"), t)
        for _ in range(4):
            tx = dev.poll_transmit()
            if tx is None:
                return False
            hub.decrypt(tx.data, src, t)
            answer = hub.poll_transmit()
            if answer is None:
                return False
            if answer.data[0] == RESPONSE:
                return True
            dev.decrypt(answer.data, hub_addr, t)
        return False

    results = [attempt(dev, src, now) for dev, src in initiators[:8]]
    assert results == [True] * BURST + [False] * 3
    # one token comes back every 1/RATE seconds
    assert attempt(*initiators[8], now + 1 / RATE + 1e-6)
    assert not attempt(*initiators[9], now + 1 / RATE + 2e-6)
    # another IP has its own bucket
    dev, (_, port) = initiators[10]
    assert attempt(dev, ("203.0.113.6", port), now)


def test_rate_limiter_bucket() -> None:
    rl = RateLimiter()
    t = 50.0
    assert [rl.allow("192.0.2.1", t) for _ in range(BURST + 2)] == [True] * BURST + [False] * 2
    assert rl.allow("192.0.2.2", t)
    assert rl.allow("192.0.2.1", t + 1 / RATE)
    assert not rl.allow("192.0.2.1", t + 1 / RATE)
    # refills to the burst, not beyond
    later = t + 10
    assert [rl.allow("192.0.2.1", later) for _ in range(BURST + 1)] == [True] * BURST + [False]


def test_rate_limiter_forgets_idle_sources() -> None:
    rl = RateLimiter()
    for i in range(100):
        rl.allow(f"192.0.2.{i}", 0.0)
    assert len(rl) == 100
    rl.allow("198.51.100.1", 2.0)
    assert len(rl) == 1


@pytest.mark.parametrize("host", ["2001:db8::1", "fe80::1%eth0", "not-an-ip"])
def test_cookie_sources_of_every_shape(host: str) -> None:
    lk = make_link()
    lk.b.set_under_load(True)
    lk.source_of_a = (host, 5555)
    lk.send("a", ipv4(A_TUN4, B_TUN4, os.urandom(8)))
    assert [w.kind for w in lk.wire[:4]] == [INITIATION, COOKIE, INITIATION, RESPONSE]
