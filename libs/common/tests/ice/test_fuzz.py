"""Hypothesis: garbage and mutated STUN never raise, never answer and change no state."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ice_helpers import Network, make_network

from zerogate.proto.ice import IceAgent
from zerogate.proto.net import Endpoint

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COOKIE = struct.pack("!I", 0x2112A442)


@dataclass(frozen=True)
class Captured:
    receiver: str
    data: bytes
    source: Endpoint
    local: Endpoint


def _connected_with_a_live_transaction() -> tuple[Network, list[Captured]]:
    """a and b connected; then b's answers are lost for a while, so a has consent
    transactions in flight whose (captured, valid) answers would be accepted."""
    net = make_network()
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    net.signal("b", net.host("b", ("10.0.0.2", 6000), "lan"))
    net.run(1.0, until=net.connected)
    net.drop = lambda w: w.sender == "b"
    net.run(7.0)
    # One LAN, no NAT: what one agent sent arrives at the other as it was sent.
    captured = [
        Captured("a" if w.sender == "b" else "b", w.tx.data, w.tx.source, w.tx.destination)
        for w in net.wire
    ]
    return net, captured


def _snapshot(agent: IceAgent, tids: list[bytes]) -> object:
    stats = agent.stats
    return (
        agent.pairs(),
        agent.selected_pair,
        agent.controlling,
        agent.state,
        agent.local_candidates,
        agent.remote_candidates,
        agent.poll_timeout(),
        [agent.owns_transaction(t) for t in tids],
        (stats.checks_sent, stats.retransmits, stats.requests_answered, stats.responses_accepted),
    )


NET, CAPTURED = _connected_with_a_live_transaction()
TIDS = [c.data[8:20] for c in CAPTURED]


def _feed_and_check(receiver: str, data: bytes, source: Endpoint, local: Endpoint) -> None:
    agent = NET.agents[receiver]
    before = _snapshot(agent, TIDS)
    dropped = agent.stats.dropped
    agent.handle_stun(data, source, local, NET.now)
    assert agent.poll_transmit() is None
    assert agent.poll_event() is None
    assert _snapshot(agent, TIDS) == before
    assert agent.stats.dropped == dropped + 1


def test_the_captured_answers_are_live() -> None:
    """Makes sure the mutation test below mutates messages that would count."""
    live = [c for c in CAPTURED if NET.agents["a"].owns_transaction(c.data[8:20])]
    answers = [c for c in CAPTURED if c.receiver == "a" and c.data[1] == 0x01 and c.data[0] == 1]
    assert live
    assert any(c.data[8:20] == live[0].data[8:20] for c in answers)


@FUZZ
@given(data=st.binary(max_size=300), receiver=st.sampled_from(["a", "b"]))
def test_random_bytes(data: bytes, receiver: str) -> None:
    local = ("10.0.0.1", 5000) if receiver == "a" else ("10.0.0.2", 6000)
    _feed_and_check(receiver, data, ("10.0.0.9", 9999), local)


@FUZZ
@given(
    message_type=st.sampled_from([0x0001, 0x0101, 0x0111, 0x0011, 0x0003]),
    body=st.lists(
        st.tuples(
            st.sampled_from([0x0006, 0x0008, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802A]),
            st.binary(max_size=40),
        ),
        max_size=6,
    ),
    tid=st.sampled_from(TIDS) | st.binary(min_size=12, max_size=12),
    receiver=st.sampled_from(["a", "b"]),
)
def test_structured_garbage(
    message_type: int, body: list[tuple[int, bytes]], tid: bytes, receiver: str
) -> None:
    """Valid STUN framing with ICE attributes, live transaction ids, no valid integrity."""
    payload = b"".join(struct.pack("!HH", t, len(v)) + v + b"\x00" * (-len(v) % 4) for t, v in body)
    data = struct.pack("!HH", message_type, len(payload)) + COOKIE + tid + payload
    local = ("10.0.0.1", 5000) if receiver == "a" else ("10.0.0.2", 6000)
    peer = ("10.0.0.2", 6000) if receiver == "a" else ("10.0.0.1", 5000)
    _feed_and_check(receiver, data, peer, local)


@FUZZ
@given(
    index=st.integers(0, len(CAPTURED) - 1),
    mutation=st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
        st.tuples(st.just("append"), st.integers(1, 8), st.integers(0, 255)),
    ),
)
def test_mutated_captured_messages(index: int, mutation: tuple[str, int, int]) -> None:
    """Every valid check and answer that crossed the link, one byte or length changed."""
    captured = CAPTURED[index]
    data = bytearray(captured.data)
    kind, where, value = mutation
    if kind == "flip":
        data[where % len(data)] ^= value
    elif kind == "truncate":
        del data[where % len(data) :]
    else:
        data += bytes([value]) * where
    _feed_and_check(captured.receiver, bytes(data), captured.source, captured.local)
