"""Two devices over a fake link with a virtual clock: handshake, data, sessions,
roaming, keepalives, and that bad input changes no state."""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest
from wg_helpers import (
    A_ADDR,
    A_TUN4,
    A_TUN6,
    B_ADDR,
    B_TUN4,
    B_TUN6,
    NOW0,
    UNIX0,
    Link,
    ipv4,
    ipv6,
    make_link,
)

from zerogate.proto.wireguard import (
    Device,
    HandshakeCompleted,
    PeerEndpointChanged,
    Transmit,
    WireGuardError,
)
from zerogate.proto.wireguard.crypto import generate_private_key
from zerogate.proto.wireguard.device import Peer
from zerogate.proto.wireguard.peer import Timer

INITIATION, RESPONSE, COOKIE, TRANSPORT = 1, 2, 3, 4
KEEPALIVE_SIZE = 32  # 16-byte header + 16-byte tag of an empty packet
MAX_STAGED = 128  # wireguard-go QueueStagedSize


def test_first_packet_is_queued_handshake_runs_then_delivered(link: Link) -> None:
    first = ipv4(A_TUN4, B_TUN4, b"first")
    assert link.a.encrypt(first, link.now) is None  # no session yet: queued
    link.flush()
    kinds = [(w.sender, w.kind, len(w.data)) for w in link.wire]
    assert kinds[0] == ("a", INITIATION, 148)
    assert kinds[1] == ("b", RESPONSE, 92)
    assert kinds[2][:2] == ("a", TRANSPORT)  # the queued packet, sealed
    assert link.to_b == [first]
    assert HandshakeCompleted(link.b.public_key) in link.events_a
    assert HandshakeCompleted(link.a.public_key) in link.events_b
    # b learnt a's endpoint from the authenticated initiation
    assert link.b.peers[link.a.public_key].endpoint == A_ADDR
    assert PeerEndpointChanged(link.a.public_key, A_ADDR) in link.events_b


def test_data_both_ways_ipv4_and_ipv6(linked: Link) -> None:
    for pkt in (ipv4(A_TUN4, B_TUN4, b"x" * 1000), ipv6(A_TUN6, B_TUN6, b"y" * 333)):
        assert linked.send("a", pkt) == pkt
    for pkt in (ipv4(B_TUN4, A_TUN4, b"z"), ipv6(B_TUN6, A_TUN6, b"")):
        assert linked.send("b", pkt) == pkt


def test_padding_is_a_multiple_of_16_and_stripped(linked: Link) -> None:
    for size in range(20, 60):
        pkt = ipv4(A_TUN4, B_TUN4, bytes(size - 20))
        endpoint, datagram = linked.a.encrypt(pkt, linked.now)  # type: ignore[misc]
        assert endpoint == B_ADDR
        assert (len(datagram) - 32) % 16 == 0
        assert len(datagram) - 32 >= size
        assert linked.b.decrypt(datagram, A_ADDR, linked.now) == pkt


# (packet size, MTU, expected padded size) — whitepaper §5.4.6 pads to 16, and
# wireguard-go's calculatePaddingSize never pads past the MTU.
PADDING_CASES = [
    (20, 0, 32),
    (1419, 0, 1424),
    (21, 1420, 32),
    (1405, 1420, 1408),
    (1415, 1420, 1420),
    (1419, 1420, 1420),
    (1420, 1420, 1420),
    (1280, 1280, 1280),
]


@pytest.mark.parametrize(("size", "mtu", "padded"), PADDING_CASES)
def test_padding_never_passes_the_mtu(linked: Link, size: int, mtu: int, padded: int) -> None:
    linked.a.mtu = mtu
    pkt = ipv4(A_TUN4, B_TUN4, bytes(size - 20))
    sealed = linked.a.encrypt(pkt, linked.now)
    assert sealed is not None
    _, datagram = sealed
    assert len(datagram) == 16 + padded + 16  # header + padded plaintext + tag
    assert linked.b.decrypt(datagram, A_ADDR, linked.now) == pkt


def test_mtu_out_of_range_is_refused(linked: Link) -> None:
    with pytest.raises(WireGuardError):
        linked.a.mtu = 70000


def test_counters_and_byte_counts(linked: Link) -> None:
    pa = linked.a.peers[linked.b.public_key]
    pb = linked.b.peers[linked.a.public_key]
    assert pa.tx_bytes == sum(len(w.data) for w in linked.sent("a"))
    assert pb.tx_bytes == sum(len(w.data) for w in linked.sent("b"))
    assert pb.rx_bytes == pa.tx_bytes
    assert pa.rx_bytes == pb.tx_bytes
    counters = [struct.unpack_from("<Q", w.data, 8)[0] for w in linked.sent("a", TRANSPORT)]
    assert counters == list(range(len(counters)))  # 64-bit counter from 0, one per packet


def test_last_handshake_is_wall_clock(link: Link) -> None:
    link.advance(7.5)
    link.handshake()
    assert link.a.peers[link.b.public_key].last_handshake_unix == pytest.approx(UNIX0 + 7.5)


def test_psk_must_match() -> None:
    psk = os.urandom(32)
    ok = make_link(psk_a=psk, psk_b=psk)
    ok.handshake()
    assert ok.a.peers[ok.b.public_key].preshared_key == psk
    bad = make_link(psk_a=psk, psk_b=os.urandom(32))
    bad.send("a", ipv4(A_TUN4, B_TUN4))
    assert [w.kind for w in bad.wire] == [INITIATION, RESPONSE]  # response fails at a
    assert not bad.a.peers[bad.b.public_key].has_session
    assert bad.to_b == []


def test_unknown_peer_gets_no_answer(link: Link) -> None:
    stranger = Device(generate_private_key(), now=NOW0, unix_time=UNIX0)
    stranger.add_peer(
        link.b.public_key,
        allowed_ips=[ipaddress.ip_network("0.0.0.0/0")],
        endpoint=B_ADDR,
        now=NOW0,
    )
    stranger.encrypt(ipv4("10.0.0.9", B_TUN4), NOW0)
    tx = stranger.poll_transmit()
    assert tx is not None
    assert tx.data[0] == INITIATION
    assert link.b.decrypt(tx.data, ("203.0.113.9", 1), NOW0) is None
    assert link.b.poll_transmit() is None


def test_keepalive_is_accepted_but_not_delivered(linked: Link) -> None:
    pb = linked.b.peers[linked.a.public_key]
    before = pb.rx_bytes
    peer_a = linked.a.peers[linked.b.public_key]
    linked.a._send_keepalive(peer_a.session, linked.now)  # what the keepalive timer does
    tx = linked.a.poll_transmit()
    assert tx is not None
    assert len(tx.data) == KEEPALIVE_SIZE
    assert linked.b.decrypt(tx.data, A_ADDR, linked.now) is None
    assert pb.rx_bytes == before + KEEPALIVE_SIZE


def test_inner_source_outside_allowed_ips_is_dropped(linked: Link) -> None:
    spoofed = ipv4("10.0.0.99", B_TUN4)
    assert linked.send("a", spoofed) is None
    spoofed6 = ipv6("fd00::99", B_TUN6)
    assert linked.send("a", spoofed6) is None
    assert linked.send("a", ipv4(A_TUN4, B_TUN4)) is not None


def test_inner_packet_longer_than_its_header_says_is_trimmed_shorter_is_dropped(
    linked: Link,
) -> None:
    pkt = ipv4(A_TUN4, B_TUN4, b"abc")
    assert linked.send("a", pkt + b"trailing") == pkt
    lying = bytearray(pkt)
    lying[2:4] = (len(pkt) + 50).to_bytes(2, "big")
    assert linked.send("a", bytes(lying)) is None


def test_roaming_follows_the_latest_authenticated_packet(linked: Link) -> None:
    new_source = ("203.0.113.77", 40000)
    linked.source_of_a = new_source
    linked.send("a", ipv4(A_TUN4, B_TUN4))
    pb = linked.b.peers[linked.a.public_key]
    assert pb.endpoint == new_source
    assert PeerEndpointChanged(linked.a.public_key, new_source) in linked.events_b
    # b now answers at the new address
    out = linked.b.encrypt(ipv4(B_TUN4, A_TUN4), linked.now)
    assert out is not None
    assert out[0] == new_source


def test_a_peer_without_roaming_keeps_the_endpoint_configuration_gives(linked: Link) -> None:
    # ICE decides the path of an agent's peer: a packet still arriving over an
    # older path is accepted and answered on the chosen one, never moves it back
    b, a_key = linked.b, linked.a.public_key
    b.update_peer(a_key, roaming=False, now=linked.now)
    old_path = ("203.0.113.77", 40000)
    linked.source_of_a = old_path
    assert linked.send("a", ipv4(A_TUN4, B_TUN4, b"late")) is not None  # still delivered
    pa = linked.a.peers[linked.b.public_key]
    linked.now += 6
    linked.a._send_initiation(pa.session, linked.now, retry=False)  # a handshake too
    linked.flush()
    assert linked.events_a.count(HandshakeCompleted(b.public_key)) == 2
    assert b.peers[a_key].endpoint == A_ADDR
    assert not [e for e in linked.events_b if isinstance(e, PeerEndpointChanged)][1:]
    out = b.encrypt(ipv4(B_TUN4, A_TUN4), linked.now)
    assert out is not None
    assert out[0] == A_ADDR
    # configuration (ICE selecting a pair) moves it
    b.update_peer(a_key, endpoint=old_path, now=linked.now)
    assert b.peers[a_key].endpoint == old_path


def test_a_peer_without_roaming_takes_its_first_endpoint_from_the_handshake() -> None:
    lk = make_link()
    lk.b.update_peer(lk.a.public_key, roaming=False, now=lk.now)
    assert lk.b.peers[lk.a.public_key].endpoint is None
    lk.handshake()
    assert lk.b.peers[lk.a.public_key].endpoint == A_ADDR


def test_unauthenticated_packets_do_not_move_the_endpoint(linked: Link) -> None:
    pb = linked.b.peers[linked.a.public_key]
    out = linked.a.encrypt(ipv4(A_TUN4, B_TUN4), linked.now)
    assert out is not None
    forged = bytearray(out[1])
    forged[-1] ^= 1
    assert linked.b.decrypt(bytes(forged), ("203.0.113.66", 6666), linked.now) is None
    assert pb.endpoint == A_ADDR
    # a replay of a genuine packet from elsewhere is refused and moves nothing
    assert linked.b.decrypt(out[1], A_ADDR, linked.now) is not None
    assert linked.b.decrypt(out[1], ("203.0.113.66", 6666), linked.now) is None
    assert pb.endpoint == A_ADDR


def test_multiple_peers_route_to_their_own_endpoint() -> None:
    hub = Device(generate_private_key(), now=NOW0, unix_time=UNIX0)
    spokes = []
    for i in range(3):
        spoke = Device(generate_private_key(), now=NOW0, unix_time=UNIX0)
        addr = (f"192.0.2.{10 + i}", 5000 + i)
        hub.add_peer(
            spoke.public_key,
            allowed_ips=[ipaddress.ip_network(f"10.1.{i}.0/24")],
            endpoint=addr,
            now=NOW0,
        )
        spoke.add_peer(
            hub.public_key,
            allowed_ips=[ipaddress.ip_network("10.0.0.0/8")],
            endpoint=("192.0.2.1", 51820),
            now=NOW0,
        )
        spokes.append((spoke, addr))
    for i, (spoke, addr) in enumerate(spokes):
        hub.encrypt(ipv4("10.0.0.1", f"10.1.{i}.5"), NOW0)
        tx = hub.poll_transmit()
        assert isinstance(tx, Transmit)
        assert tx.destination == addr
        assert tx.peer == spoke.public_key
        assert tx.data[0] == INITIATION
        assert spoke.decrypt(tx.data, ("192.0.2.1", 51820), NOW0) is None
        resp = spoke.poll_transmit()
        assert resp is not None
        assert hub.decrypt(resp.data, addr, NOW0) is None
        queued = hub.poll_transmit()
        assert queued is not None
        assert queued.peer == spoke.public_key
        assert spoke.decrypt(queued.data, ("192.0.2.1", 51820), NOW0) == ipv4(
            "10.0.0.1", f"10.1.{i}.5"
        )


def test_no_endpoint_means_drop() -> None:
    lk = make_link()
    assert lk.b.encrypt(ipv4(B_TUN4, A_TUN4), lk.now) is None  # b does not know a's address
    assert lk.b.poll_transmit() is None


def test_staged_queue_is_bounded_and_keeps_the_newest() -> None:
    lk = make_link()
    lk.drop = lambda w: True  # nothing gets through yet
    packets = [ipv4(A_TUN4, B_TUN4, i.to_bytes(2, "big")) for i in range(MAX_STAGED + 50)]
    for p in packets:
        assert lk.a.encrypt(p, lk.now) is None
    lk.flush()
    lk.drop = lambda w: False
    lk.advance(6)  # the retransmitted initiation gets through
    assert lk.to_b == packets[-MAX_STAGED:]


def test_responder_sends_only_after_the_initiator_confirms(link: Link) -> None:
    link.drop = lambda w: w.sender == "a" and w.kind == TRANSPORT  # lose a's keepalive
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    link.flush()
    pb = link.b.peers[link.a.public_key]
    assert pb.session.next is not None
    assert pb.session.current is None
    # b has a packet for a: it waits (queued) rather than use an unconfirmed key
    assert link.b.encrypt(ipv4(B_TUN4, A_TUN4, b"wait"), link.now) is None
    link.drop = lambda w: False
    assert link.send("a", ipv4(A_TUN4, B_TUN4, b"confirm")) is not None
    assert pb.session.current is not None
    assert pb.session.next is None
    assert ipv4(B_TUN4, A_TUN4, b"wait") in link.to_a


def _snapshot(dev: Device) -> tuple[object, ...]:
    peers = []
    for p in dev.peers.values():
        s = p.session
        current = s.current
        peers.append(
            (
                p.endpoint,
                p.rx_bytes,
                p.tx_bytes,
                s.greatest_timestamp,
                id(current),
                id(s.next),
                id(s.previous),
                None if current is None else current.replay._last,
                None if current is None else tuple(current.replay._ring),
                s.cookie,
                tuple(s.deadline(timer) for timer in Timer),
            )
        )
    return (tuple(peers), tuple(dev._keypairs), tuple(dev._handshakes), len(dev._transmits))


def _mutations(data: bytes, skip_tail: int = 0) -> list[bytes]:
    out = [data[:-1], data[: len(data) // 2], data + b"\0", b""]
    for i in [*range(0, len(data) - skip_tail, 5), len(data) - skip_tail - 1]:
        flipped = bytearray(data)
        flipped[i] ^= 0x40
        out.append(bytes(flipped))
    return out


def test_tampered_or_truncated_handshake_messages_change_nothing(link: Link) -> None:
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    init = link.a.poll_transmit()
    assert init is not None
    before = _snapshot(link.b)
    # mac2 (the last 16 bytes) only counts under load; see test_cookie.py
    for bad in _mutations(init.data, skip_tail=16):
        assert link.b.decrypt(bad, A_ADDR, link.now) is None
        assert _snapshot(link.b) == before
    # the genuine one still works afterwards
    link.b.decrypt(init.data, A_ADDR, link.now)
    resp = link.b.poll_transmit()
    assert resp is not None
    assert resp.data[0] == RESPONSE
    before_a = _snapshot(link.a)
    for bad in _mutations(resp.data, skip_tail=16):
        assert link.a.decrypt(bad, B_ADDR, link.now) is None
        assert _snapshot(link.a) == before_a
    link.a.decrypt(resp.data, B_ADDR, link.now)
    assert link.a.peers[link.b.public_key].has_session


def test_tampered_or_truncated_transport_changes_nothing(linked: Link) -> None:
    out = linked.a.encrypt(ipv4(A_TUN4, B_TUN4, b"precious"), linked.now)
    assert out is not None
    before = _snapshot(linked.b)
    for bad in _mutations(out[1]):
        assert linked.b.decrypt(bad, ("203.0.113.1", 9), linked.now) is None
        assert _snapshot(linked.b) == before
    assert linked.b.decrypt(out[1], A_ADDR, linked.now) == ipv4(A_TUN4, B_TUN4, b"precious")


def test_replayed_initiation_is_refused(link: Link) -> None:
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    init = link.a.poll_transmit()
    assert init is not None
    link.deliver("a", init.data)
    assert link.b.poll_transmit() is not None  # answered once
    pb = link.b.peers[link.a.public_key]
    state = (id(pb.session.next), pb.session.greatest_timestamp)
    link.now += 30  # even much later
    link.deliver("a", init.data)
    assert link.b.poll_transmit() is None
    assert (id(pb.session.next), pb.session.greatest_timestamp) == state


def test_older_initiation_is_refused(link: Link) -> None:
    pa = link.a.peers[link.b.public_key]
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    older = link.a.poll_transmit()
    link.now += 6
    link.a._send_initiation(pa.session, link.now, retry=True)
    newer = link.a.poll_transmit()
    assert older is not None
    assert newer is not None
    link.deliver("a", newer.data)
    assert link.b.poll_transmit() is not None
    link.now += 1
    link.deliver("a", older.data)  # valid MACs and AEAD, but an older TAI64N
    assert link.b.poll_transmit() is None


def test_initiations_faster_than_50_per_second_are_refused(link: Link) -> None:
    pa = link.a.peers[link.b.public_key]
    # two initiations whose timestamps differ, arriving 10 ms apart (< 1/50 s)
    link.a._send_initiation(pa.session, link.now, retry=True, force=True)
    first = link.a.poll_transmit()
    link.a._send_initiation(pa.session, link.now + 0.05, retry=True, force=True)
    second = link.a.poll_transmit()
    assert first is not None
    assert second is not None
    link.deliver("a", first.data)
    assert link.b.poll_transmit() is not None
    link.now += 0.01
    link.deliver("a", second.data)
    assert link.b.poll_transmit() is None
    link.now += 0.02  # now 30 ms after the first: allowed
    link.deliver("a", second.data)
    assert link.b.poll_transmit() is not None


def test_bad_mac1_gets_no_answer(link: Link) -> None:
    link.a.encrypt(ipv4(A_TUN4, B_TUN4), link.now)
    init = link.a.poll_transmit()
    assert init is not None
    bad = bytearray(init.data)
    bad[116] ^= 1  # first byte of mac1
    assert link.b.decrypt(bytes(bad), A_ADDR, link.now) is None
    assert link.b.poll_transmit() is None


def test_previous_session_still_decrypts_during_a_rekey(linked: Link) -> None:
    # packets sealed with the old keys, still in flight when a new handshake completes
    in_flight = [linked.a.encrypt(ipv4(A_TUN4, B_TUN4, bytes([i])), linked.now) for i in range(3)]
    pa = linked.a.peers[linked.b.public_key]
    linked.now += 6
    linked.a._send_initiation(pa.session, linked.now, retry=False)
    linked.flush()
    assert linked.events_a.count(HandshakeCompleted(linked.b.public_key)) == 2
    for out in in_flight:
        assert out is not None
        assert linked.b.decrypt(out[1], A_ADDR, linked.now) is not None
    # and traffic continues on the new session both ways
    assert linked.send("a", ipv4(A_TUN4, B_TUN4, b"new")) is not None
    assert linked.send("b", ipv4(B_TUN4, A_TUN4, b"new")) is not None


def test_simultaneous_initiations_converge() -> None:
    lk = make_link(b_knows_a_endpoint=True)
    a_init = lk.a.encrypt(ipv4(A_TUN4, B_TUN4, b"from a"), lk.now)
    b_init = lk.b.encrypt(ipv4(B_TUN4, A_TUN4, b"from b"), lk.now)
    assert a_init is None
    assert b_init is None
    lk.flush()
    lk.advance(30)
    assert ipv4(A_TUN4, B_TUN4, b"from a") in lk.to_b
    assert ipv4(B_TUN4, A_TUN4, b"from b") in lk.to_a
    assert lk.send("a", ipv4(A_TUN4, B_TUN4, b"after")) is not None
    assert lk.send("b", ipv4(B_TUN4, A_TUN4, b"after")) is not None


def test_set_private_key_ends_sessions(linked: Link) -> None:
    linked.b.set_private_key(generate_private_key(), linked.now)
    assert not linked.b.peers[linked.a.public_key].has_session
    assert linked.b._keypairs == {}


def test_remove_peer_forgets_its_sessions(linked: Link) -> None:
    linked.b.remove_peer(linked.a.public_key)
    assert linked.b._keypairs == {}
    assert linked.b._handshakes == {}
    assert linked.send("a", ipv4(A_TUN4, B_TUN4)) is None


def test_peer_view_is_read_only(linked: Link) -> None:
    peers = linked.a.peers
    with pytest.raises(TypeError):
        peers[b"x" * 32] = peers[linked.b.public_key]  # type: ignore[index]
    p: Peer = peers[linked.b.public_key]
    with pytest.raises(AttributeError):
        p.endpoint = ("1.2.3.4", 5)  # type: ignore[misc]
