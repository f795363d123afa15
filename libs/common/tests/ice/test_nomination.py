"""Regular nomination, renomination, role conflicts and removed candidates."""

from __future__ import annotations

import pytest
from ice_helpers import A_PWD, A_UFRAG, B_PWD, B_UFRAG, Nat, Network, Wire, make_network, same_path

from zerogate.proto import stun
from zerogate.proto.ice import (
    AgentState,
    CandidateType,
    Failed,
    NominatedPairRemoved,
    PairNominated,
    PairState,
    RoleChanged,
)
from zerogate.proto.stun import Attr, Message, MessageClass, Method

ROLE_CONFLICT = 487  # RFC 8445 §7.3.1.1
FAILED_GRACE = 5.0  # the grace time without pending candidates


def test_controlling_side_nominates_with_use_candidate_and_controlled_side_follows() -> None:
    net = make_network()
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    net.signal("b", net.host("b", ("10.0.0.2", 6000), "lan"))
    net.run(1.0, until=net.connected)
    a_requests = [w.message for w in net.sent("a") if w.message.message_class.name == "REQUEST"]
    b_requests = [w.message for w in net.sent("b") if w.message.message_class.name == "REQUEST"]
    # Regular nomination: the pair is checked first, then the check is repeated with
    # USE-CANDIDATE (RFC 8445 §8.1.1); the controlled side never sets it.
    assert Attr.USE_CANDIDATE not in a_requests[0].attributes
    assert Attr.USE_CANDIDATE in a_requests[-1].attributes
    assert all(Attr.USE_CANDIDATE not in m.attributes for m in b_requests)
    (_t_a, ev_a), (_t_b, ev_b) = net.nominated("a")[0], net.nominated("b")[0]
    assert ev_a.pair.nominated
    assert ev_b.pair.nominated


def relay_then_direct(net: Network) -> None:
    """Both agents on one LAN (behind a NAT), each with a host and a relayed candidate."""
    net.nats["lan"] = Nat("198.51.100.1")
    for name, host, relay in (
        ("a", ("10.0.0.1", 5000), ("203.0.113.100", 50000)),
        ("b", ("10.0.0.2", 6000), ("203.0.113.101", 50001)),
    ):
        net.signal(name, net.relay(name, relay))
        net.signal(name, net.host(name, host, "lan"))


def is_direct(wire: Wire) -> bool:
    return wire.tx.source[0].startswith("10.") and wire.tx.destination[0].startswith("10.")


def test_renomination_when_a_better_pair_succeeds_later() -> None:
    net = make_network()
    start = net.now
    # The LAN path loses everything for the first 2 s (say, a firewall rule that is
    # fixed later); the relayed paths work at once.
    net.drop = lambda w: is_direct(w) and w.at < start + 2.0
    relay_then_direct(net)
    net.run(1.0, until=net.connected)
    first_a, first_b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert first_a is not None
    assert first_b is not None
    assert first_a.relayed or first_a.remote.type is CandidateType.RELAYED
    assert same_path(net)
    net.run(10.0)
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert a is not None
    assert b is not None
    assert (a.base, a.destination) == (("10.0.0.1", 5000), ("10.0.0.2", 6000))
    assert (b.base, b.destination) == (("10.0.0.2", 6000), ("10.0.0.1", 5000))
    assert len(net.nominated("a")) == 2
    assert len(net.nominated("b")) == 2
    assert a.valid_priority > first_a.valid_priority
    # The switch happened as soon as a retransmission got through after 2 s
    # (retransmissions at 0.1, 0.3, 0.7, 1.5, 3.1 ... s).
    assert start + 2.0 < net.nominated("a")[1][0] < start + 3.5


def test_renomination_when_direct_candidates_are_trickled_late() -> None:
    net = make_network()
    a_host = net.host("a", ("10.0.0.1", 5000), "lan")
    b_host = net.host("b", ("10.0.0.2", 6000), "lan")
    net.signal("a", net.relay("a", ("203.0.113.100", 50000)))
    net.signal("b", net.relay("b", ("203.0.113.101", 50001)))
    net.run(1.0)
    assert net.agents["a"].selected_pair is not None
    assert net.agents["a"].selected_pair.relayed
    trickled = net.now
    net.signal("a", a_host)
    net.signal("b", b_host)
    net.run(1.0)
    for name, local, remote in (("a", a_host, b_host), ("b", b_host, a_host)):
        events = net.nominated(name)
        assert len(events) == 2
        assert events[0][1].pair.relayed
        assert not events[1][1].pair.relayed
        assert events[1][0] - trickled < 0.100
        pair = net.agents[name].selected_pair
        assert pair is not None
        assert (pair.base, pair.destination) == (local.address, remote.address)


def test_controlled_side_keeps_a_better_pair_when_a_worse_one_is_nominated() -> None:
    """Aggressive nomination (aioice puts USE-CANDIDATE on every check): a later
    nomination of a lower-priority pair does not move the controlled side."""
    net = make_network()
    net.nats["lan"] = Nat("198.51.100.1")
    a_relay = net.relay("a", ("203.0.113.100", 50000))
    net.agents["a"].add_local_candidate(a_relay, net.now)  # not signalled to b
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    net.signal("b", net.host("b", ("10.0.0.2", 6000), "lan"))
    net.run(1.0, until=net.connected)
    b = net.agents["b"]
    before = b.selected_pair
    request = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        bytes(range(12)),
        {
            Attr.USERNAME: f"{B_UFRAG}:{A_UFRAG}",
            Attr.PRIORITY: 1,
            Attr.ICE_CONTROLLING: net.agents["a"].tie_breaker,
            Attr.USE_CANDIDATE: True,
        },
    )
    data = stun.encode(request, key=B_PWD.encode(), fingerprint=True)
    b.handle_stun(data, ("203.0.113.100", 50000), ("10.0.0.2", 6000), net.now)
    net.run(1.0)
    relayed = [p for p in b.pairs() if p.destination == ("203.0.113.100", 50000)]
    assert relayed
    assert relayed[0].state is PairState.SUCCEEDED
    assert relayed[0].nominated
    assert b.selected_pair == before
    assert len(net.nominated("b")) == 1


@pytest.mark.parametrize("both_controlling", [True, False])
@pytest.mark.parametrize("tie_breakers", [(2**63 + 5, 7), (7, 2**63 + 5)])
def test_role_conflict_is_resolved_by_the_tie_breaker(
    both_controlling: bool, tie_breakers: tuple[int, int]
) -> None:
    """RFC 8445 §7.3.1.1: the agent with the larger tie-breaker ends up controlling."""
    net = make_network(
        a_controlling=both_controlling, b_controlling=both_controlling, tie_breakers=tie_breakers
    )
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    net.signal("b", net.host("b", ("10.0.0.2", 6000), "lan"))
    net.run(1.0, until=net.connected)
    winner, loser = ("a", "b") if tie_breakers[0] > tie_breakers[1] else ("b", "a")
    assert net.agents[winner].controlling
    assert not net.agents[loser].controlling
    switched = "b" if both_controlling == (winner == "a") else "a"
    assert [ev.controlling for _, ev in net.of_type(switched, RoleChanged)] == [
        not both_controlling
    ]
    other = "a" if switched == "b" else "b"
    assert net.of_type(other, RoleChanged) == []
    assert net.connected()
    assert same_path(net)
    # The loser of the conflict was told with a signed 487 (or switched by itself first).
    errors = [w for w in net.wire if w.message.message_class is MessageClass.ERROR]
    for w in errors:
        message = w.message
        assert message.error_code() is not None
        assert message.error_code().code == ROLE_CONFLICT  # type: ignore[union-attr]
        key = (A_PWD if w.sender == "a" else B_PWD).encode()
        assert stun.check_integrity(message, key)


def test_removed_remote_candidate_moves_the_connection_to_another_pair() -> None:
    net = make_network()
    relay_then_direct(net)
    net.run(1.0, until=net.connected)
    a_pair = net.agents["a"].selected_pair
    assert a_pair is not None
    assert not a_pair.relayed
    b_host = next(c for c in net.agents["a"].remote_candidates if c.type is CandidateType.HOST)
    net.withdraw("b", b_host)  # b's LAN socket is gone; a hears it by signaling
    for name in "ab":
        removed = net.of_type(name, NominatedPairRemoved)
        assert len(removed) == 1
        assert net.agents[name].selected_pair is None
        assert net.agents[name].state is AgentState.CHECKING
    assert all(p.remote.address != b_host.address for p in net.agents["a"].pairs())
    net.run(2.0, until=net.connected)
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert a is not None
    assert b is not None
    assert b.relayed  # b only has its relayed candidate left
    assert same_path(net)
    assert len(net.nominated("a")) == 2
    assert len(net.nominated("b")) == 2


def test_removing_the_last_pair_fails_after_the_grace_time() -> None:
    net = make_network()
    a_host = net.host("a", ("10.0.0.1", 5000), "lan")
    b_host = net.host("b", ("10.0.0.2", 6000), "lan")
    net.signal("a", a_host)
    net.signal("b", b_host)
    net.run(1.0, until=net.connected)
    removed_at = net.now
    net.withdraw("b", b_host)
    assert net.of_type("a", NominatedPairRemoved)
    net.run(FAILED_GRACE + 1.0)
    (when, event), *_ = net.of_type("a", Failed)
    assert when == pytest.approx(removed_at + FAILED_GRACE)
    assert isinstance(event, Failed)
    assert net.agents["a"].state is AgentState.FAILED
    assert net.agents["a"].poll_timeout() is None


def test_a_removed_candidate_that_is_unknown_changes_nothing() -> None:
    net = make_network()
    a_host = net.host("a", ("10.0.0.1", 5000), "lan")
    net.signal("a", a_host)
    stranger = net.host("b", ("10.0.0.9", 9), "lan")
    assert not net.agents["a"].remove_remote_candidate(stranger, net.now)
    assert not net.agents["a"].remove_local_candidate(stranger, net.now)
    assert [c.address for c in net.agents["a"].local_candidates] == [a_host.address]


def test_nominated_pair_event_is_emitted_once_per_switch() -> None:
    net = make_network()
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    net.signal("b", net.host("b", ("10.0.0.2", 6000), "lan"))
    net.run(20.0)  # consent checks every ~5 s must not re-announce the pair
    assert [type(e) for _, e in net.events["a"]] == [PairNominated]
    assert [type(e) for _, e in net.events["b"]] == [PairNominated]
