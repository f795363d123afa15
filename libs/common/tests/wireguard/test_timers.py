"""Every timer of whitepaper §6 (and wireguard-go timers.go), on a virtual clock.

The constants are restated here from the whitepaper §6.1 so these tests check
the specification, not the code's own constants.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wg_helpers import A_ADDR, A_TUN4, B_TUN4, Link, ipv4, make_link

from zerogate.proto.wireguard import HandshakeCompleted, HandshakeTimedOut, SessionExpired

REKEY_AFTER_MESSAGES = 2**60
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
JITTER_MAX = 0.334  # wireguard-go: up to 333 ms (+1)
KEEPALIVE_TIMEOUT = 10.0
INITIATION, RESPONSE, TRANSPORT = 1, 2, 4
KEEPALIVE_SIZE = 32

EPS = 0.01


def keepalives(link: Link, sender: str, since: float | None = None) -> list[float]:
    return [w.at for w in link.sent(sender, TRANSPORT, since) if len(w.data) == KEEPALIVE_SIZE]


def initiations(link: Link, sender: str, since: float | None = None) -> list[float]:
    return [w.at for w in link.sent(sender, INITIATION, since)]


def test_handshake_retransmits_every_rekey_timeout_then_gives_up() -> None:
    lk = make_link()
    lk.drop = lambda w: w.sender == "a"  # b never hears a
    t0 = lk.now
    lk.a.encrypt(ipv4(A_TUN4, B_TUN4), lk.now)
    lk.flush()
    lk.advance(300)
    times = initiations(lk, "a")
    assert times[0] == t0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(REKEY_TIMEOUT <= g < REKEY_TIMEOUT + JITTER_MAX for g in gaps), gaps
    # retries stop once REKEY_ATTEMPT_TIME is used up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT retries
    assert len(times) == 1 + int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)
    assert times[-1] - t0 <= REKEY_ATTEMPT_TIME + len(gaps) * JITTER_MAX
    assert HandshakeTimedOut(lk.b.public_key) in lk.events_a
    # the queued packet was dropped with the attempt: a later handshake does not send it
    lk.drop = lambda w: False
    lk.send("a", ipv4(A_TUN4, B_TUN4, b"new"))
    assert lk.to_b == [ipv4(A_TUN4, B_TUN4, b"new")]


def test_keepalive_after_receiving_without_sending() -> None:
    lk = make_link()
    lk.send("a", ipv4(A_TUN4, B_TUN4))  # b receives data and says nothing
    t0 = lk.now
    lk.advance(KEEPALIVE_TIMEOUT - EPS)
    assert keepalives(lk, "b") == []
    lk.advance(2 * EPS)
    assert keepalives(lk, "b") == [t0 + KEEPALIVE_TIMEOUT]
    lk.advance(100)
    assert len(keepalives(lk, "b")) == 1  # one keepalive per burst of data, not a stream


def test_no_keepalive_when_data_went_back() -> None:
    lk = make_link()
    lk.send("a", ipv4(A_TUN4, B_TUN4))
    lk.advance(3)
    lk.send("b", ipv4(B_TUN4, A_TUN4))
    lk.advance(KEEPALIVE_TIMEOUT + 5)
    assert keepalives(lk, "b") == []


def test_new_handshake_after_sending_without_receiving(linked: Link) -> None:
    linked.drop = lambda w: w.sender == "b"  # a hears nothing any more
    linked.advance(1)
    t1 = linked.now
    linked.send("a", ipv4(A_TUN4, B_TUN4))
    linked.advance(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT - EPS)
    assert initiations(linked, "a", since=t1) == []
    linked.advance(2 * EPS)
    assert initiations(linked, "a", since=t1) == [t1 + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT]


def test_initiator_rekeys_when_sending_on_a_key_older_than_rekey_after_time(
    linked: Link,
) -> None:
    t0 = linked.now
    linked.advance(REKEY_AFTER_TIME - EPS)
    linked.send("a", ipv4(A_TUN4, B_TUN4))
    assert initiations(linked, "a", since=t0 + 1) == []
    linked.advance(EPS)
    linked.send("a", ipv4(A_TUN4, B_TUN4))
    assert initiations(linked, "a", since=t0 + 1) == [t0 + REKEY_AFTER_TIME]
    assert linked.events_a.count(HandshakeCompleted(linked.b.public_key)) == 2


def test_responder_does_not_rekey_on_time_when_sending(linked: Link) -> None:
    linked.advance(REKEY_AFTER_TIME + 10)
    out = linked.b.encrypt(ipv4(B_TUN4, A_TUN4), linked.now)
    assert out is not None
    assert linked.b.poll_transmit() is None


def test_rekey_after_messages_on_either_side(linked: Link) -> None:
    linked.advance(REKEY_TIMEOUT)  # initiations are at most one per REKEY_TIMEOUT
    for sender, dev, peer_key in (
        ("a", linked.a, linked.b.public_key),
        ("b", linked.b, linked.a.public_key),
    ):
        kp = dev.peers[peer_key].session.current
        assert kp is not None
        kp.send_counter = REKEY_AFTER_MESSAGES - 1
        src, dst = (A_TUN4, B_TUN4) if sender == "a" else (B_TUN4, A_TUN4)
        assert dev.encrypt(ipv4(src, dst), linked.now) is not None
        assert dev.poll_transmit() is None
        assert dev.encrypt(ipv4(src, dst), linked.now) is not None  # counter 2^60
        tx = dev.poll_transmit()
        assert tx is not None
        assert tx.data[0] == INITIATION


def test_reject_after_messages(linked: Link) -> None:
    kp = linked.a.peers[linked.b.public_key].session.current
    assert kp is not None
    kp.send_counter = REJECT_AFTER_MESSAGES - 1
    out = linked.a.encrypt(ipv4(A_TUN4, B_TUN4, b"last"), linked.now)
    assert out is not None
    assert struct.unpack_from("<Q", out[1], 8)[0] == REJECT_AFTER_MESSAGES - 1
    assert linked.b.decrypt(out[1], A_ADDR, linked.now) == ipv4(A_TUN4, B_TUN4, b"last")
    # the next counter may not be used: the packet is queued for a new session
    assert linked.a.encrypt(ipv4(A_TUN4, B_TUN4), linked.now) is None
    # and a receiver refuses that counter even when it authenticates
    pkt = ipv4(A_TUN4, B_TUN4, b"forged-count")
    pkt += bytes(-len(pkt) % 16)
    nonce = bytes(4) + REJECT_AFTER_MESSAGES.to_bytes(8, "little")
    forged = struct.pack("<IIQ", TRANSPORT, kp.remote_index, REJECT_AFTER_MESSAGES)
    forged += kp.send.encrypt(nonce, pkt, None)
    assert linked.b.decrypt(forged, A_ADDR, linked.now) is None


def test_reject_after_time() -> None:
    lk = make_link()
    lk.handshake()
    lk.drop = lambda w: w.kind == INITIATION  # no new session can be made
    t0 = lk.now
    lk.advance(REJECT_AFTER_TIME - EPS)
    late = lk.a.encrypt(ipv4(A_TUN4, B_TUN4, b"late"), lk.now)
    assert late is not None  # still usable, though a rekey was attempted
    lk.advance(EPS)
    assert lk.now == pytest.approx(t0 + REJECT_AFTER_TIME)
    assert lk.a.encrypt(ipv4(A_TUN4, B_TUN4), lk.now) is None  # queued instead
    assert lk.b.decrypt(late[1], A_ADDR, lk.now) is None  # too old to receive on
    assert lk.b.encrypt(ipv4(B_TUN4, A_TUN4), lk.now) is None


def test_initiator_rekeys_when_receiving_on_an_old_key() -> None:
    receive_rekey_age = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    assert receive_rekey_age == 165
    lk = make_link()
    lk.send("a", ipv4(A_TUN4, B_TUN4))  # a initiates; the session is a's
    t0 = lk.now
    lk.advance(receive_rekey_age - EPS)
    before = len(initiations(lk, "a"))
    lk.send("b", ipv4(B_TUN4, A_TUN4))
    assert len(initiations(lk, "a")) == before  # 164.99 s: not yet
    lk.advance(EPS)
    lk.send("b", ipv4(B_TUN4, A_TUN4))
    assert initiations(lk, "a", since=t0 + 1) == [t0 + receive_rekey_age]


def test_persistent_keepalive() -> None:
    interval = 25
    lk = make_link(keepalive_a=interval)
    lk.flush()  # turning it on sends a keepalive at once: that makes the handshake
    assert lk.a.peers[lk.b.public_key].has_session
    t0 = lk.now
    lk.advance(110)
    times = keepalives(lk, "a")
    assert times[0] == t0
    assert [b - a for a, b in itertools.pairwise(times)] == [interval] * 4


def test_persistent_keepalive_waits_for_any_traffic(linked: Link) -> None:
    linked.a.update_peer(linked.b.public_key, persistent_keepalive=25, now=linked.now)
    linked.flush()
    t1 = linked.now
    linked.advance(20)
    # any authenticated packet sent or received re-arms the persistent timer:
    # a sends data at t1+20, b's keepalive comes back at t1+30
    linked.send("a", ipv4(A_TUN4, B_TUN4))
    linked.advance(34)
    assert keepalives(linked, "b", since=t1 + 1) == [t1 + 20 + KEEPALIVE_TIMEOUT]
    assert keepalives(linked, "a", since=t1 + 1) == []
    linked.advance(2)
    assert keepalives(linked, "a", since=t1 + 1) == [t1 + 30 + 25]


def test_keys_are_zeroed_after_three_reject_after_times(linked: Link) -> None:
    t0 = linked.now
    linked.advance(3 * REJECT_AFTER_TIME - EPS)
    assert linked.a.peers[linked.b.public_key].has_session
    assert linked.a._keypairs
    assert SessionExpired(linked.b.public_key) not in linked.events_a
    linked.advance(EPS)
    assert linked.now == pytest.approx(t0 + 540)
    for dev, other in ((linked.a, linked.b), (linked.b, linked.a)):
        peer = dev.peers[other.public_key]
        assert not peer.has_session
        assert peer.session.previous is None
        assert peer.session.next is None
        assert peer.session.handshake is None
        assert dev._keypairs == {}
        assert dev._handshakes == {}
    assert SessionExpired(linked.b.public_key) in linked.events_a
    assert SessionExpired(linked.a.public_key) in linked.events_b
    assert linked.a.poll_timeout() is None  # nothing left to do


def test_poll_timeout_is_the_earliest_deadline_and_early_calls_do_nothing() -> None:
    lk = make_link()
    lk.send("a", ipv4(A_TUN4, B_TUN4))
    t0 = lk.now
    deadline = lk.b.poll_timeout()
    assert deadline == t0 + KEEPALIVE_TIMEOUT  # b's keepalive is its first duty
    lk.b.handle_timeout(deadline - EPS)
    assert lk.b.poll_transmit() is None
    lk.b.handle_timeout(deadline)
    tx = lk.b.poll_transmit()
    assert tx is not None
    assert len(tx.data) == KEEPALIVE_SIZE


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["a", "b"])),
        st.tuples(st.just("advance"), st.floats(min_value=0, max_value=200)),
        st.tuples(st.just("drop"), st.sampled_from(["none", "a", "b", "all"])),
        st.tuples(st.just("load"), st.booleans()),
        st.tuples(st.just("keepalive"), st.sampled_from([None, 1, 25])),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_poll_timeout_is_never_later_than_any_timer(ops: list[tuple[str, object]]) -> None:
    lk = make_link(b_knows_a_endpoint=True)
    drops = {
        "none": lambda w: False,
        "a": lambda w: w.sender == "a",
        "b": lambda w: w.sender == "b",
        "all": lambda w: True,
    }
    for op, arg in ops:
        if op == "send":
            src, dst = (A_TUN4, B_TUN4) if arg == "a" else (B_TUN4, A_TUN4)
            lk.send(str(arg), ipv4(src, dst))
        elif op == "advance":
            lk.advance(float(arg))  # type: ignore[arg-type]
        elif op == "drop":
            lk.drop = drops[str(arg)]
        elif op == "load":
            lk.b.set_under_load(bool(arg))
        else:
            lk.a.update_peer(lk.b.public_key, persistent_keepalive=arg, now=lk.now)  # type: ignore[arg-type]
            lk.flush()
        for dev in (lk.a, lk.b):
            exact = dev._earliest_deadline()
            hint = dev.poll_timeout()
            assert exact == float("inf") or (hint is not None and hint <= exact)
