"""Two agents connect over the simulated network: direct, through NATs, through relays,
with candidates trickled in any order."""

from __future__ import annotations

import itertools

import pytest
from ice_helpers import NOW0, Nat, Network, make_network, same_path

from zerogate.proto.ice import AgentState, CandidateType, Failed, PairNominated, PairState

TA = 0.020  # the pacing interval the issue asks for (RFC 8445 §14.2 would be 50 ms)
SETUP_BUDGET = 0.100  # setup under 100 ms on a direct path


def lan_pair(net: Network) -> None:
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    net.signal("b", net.host("b", ("10.0.0.2", 6000), "lan"))


def test_host_to_host_connects_under_100_ms() -> None:
    net = make_network()
    lan_pair(net)
    net.run(1.0, until=net.connected)
    assert net.now - NOW0 < SETUP_BUDGET
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert a is not None
    assert b is not None
    assert (a.base, a.destination) == (("10.0.0.1", 5000), ("10.0.0.2", 6000))
    assert (b.base, b.destination) == (("10.0.0.2", 6000), ("10.0.0.1", 5000))
    assert a.nominated
    assert b.nominated
    assert not a.relayed
    assert not b.relayed
    assert net.agents["a"].state is AgentState.CONNECTED
    assert [type(e) for _, e in net.events["a"]] == [PairNominated]
    assert [type(e) for _, e in net.events["b"]] == [PairNominated]


def nat_client(net: Network, *, signal_srflx: bool) -> None:
    """a behind a NAT that passes only replies; b (the gateway) on the internet."""
    net.nats["lan-a"] = Nat("198.51.100.1")
    a_host = net.host("a", ("192.168.1.10", 5000), "lan-a")
    net.signal("b", net.host("b", ("203.0.113.10", 6000)))
    net.signal("a", a_host)
    if signal_srflx:
        net.signal("a", net.srflx("a", a_host.address))


def test_behind_nat_peer_reflexive_candidates_are_learned_both_ways() -> None:
    net = make_network()
    nat_client(net, signal_srflx=False)
    net.run(1.0, until=net.connected)
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert a is not None
    assert b is not None
    # b learned a's NAT address from a's check (RFC 8445 §7.3.1.3) ...
    assert b.remote.type is CandidateType.PEER_REFLEXIVE
    assert b.destination == ("198.51.100.1", 40000)
    # ... and a learned it from b's XOR-MAPPED-ADDRESS (§7.2.5.3.1).
    assert a.valid_local is not None
    assert a.valid_local.type is CandidateType.PEER_REFLEXIVE
    assert a.valid_local.address == ("198.51.100.1", 40000)
    assert a.base == ("192.168.1.10", 5000)
    assert same_path(net)


def test_behind_nat_with_a_signalled_server_reflexive_candidate() -> None:
    net = make_network()
    nat_client(net, signal_srflx=True)
    net.run(1.0, until=net.connected)
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert a is not None
    assert b is not None
    assert b.remote.type is CandidateType.SERVER_REFLEXIVE
    assert a.valid_local is not None
    assert a.valid_local.type is CandidateType.SERVER_REFLEXIVE
    assert a.local.type is CandidateType.HOST  # checks leave from the srflx candidate's base
    assert same_path(net)


def test_unreachable_pairs_fail_while_the_good_one_is_used() -> None:
    net = make_network()
    nat_client(net, signal_srflx=False)
    net.run(12.0)
    b = net.agents["b"]
    states = {p.destination: p.state for p in b.pairs()}
    assert states[("192.168.1.10", 5000)] is PairState.FAILED  # a's private address
    assert states[("198.51.100.1", 40000)] is PairState.SUCCEEDED
    assert b.state is AgentState.CONNECTED
    assert not net.of_type("a", Failed)
    assert not net.of_type("b", Failed)


def test_relayed_only() -> None:
    net = make_network()
    a_relay = net.relay("a", ("203.0.113.100", 50000))
    b_relay = net.relay("b", ("203.0.113.101", 50001))
    net.signal("a", a_relay)
    net.signal("b", b_relay)
    net.run(1.0, until=net.connected)
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert a is not None
    assert b is not None
    assert a.relayed
    assert b.relayed
    assert (a.base, a.destination) == (a_relay.address, b_relay.address)
    # Every datagram a sent left from its relayed address, for the shell's TURN client.
    assert {w.tx.source for w in net.sent("a")} == {a_relay.address}
    assert same_path(net)


def test_symmetric_nats_on_both_sides_go_through_a_relay() -> None:
    net = make_network()
    net.nats["lan-a"] = Nat("198.51.100.1", symmetric=True)
    net.nats["lan-b"] = Nat("198.51.100.2", symmetric=True)
    hosts = {
        "a": net.host("a", ("192.168.1.10", 5000), "lan-a"),
        "b": net.host("b", ("192.168.1.10", 6000), "lan-b"),
    }
    relays = {"a": ("203.0.113.100", 50000), "b": ("203.0.113.101", 50001)}
    for name in "ab":
        net.signal(name, hosts[name])
        net.signal(name, net.srflx(name, hosts[name].address))
        net.signal(name, net.relay(name, relays[name]))
    net.run(2.0, until=net.connected)
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    assert a is not None
    assert b is not None
    assert a.relayed or a.remote.type is CandidateType.RELAYED
    assert b.relayed or b.remote.type is CandidateType.RELAYED
    assert same_path(net)
    net.run(15.0)  # the direct pairs fail; the relayed path stays selected, no Failed
    assert net.agents["a"].state is AgentState.CONNECTED
    assert net.agents["b"].state is AgentState.CONNECTED
    direct = [p for p in net.agents["a"].pairs() if not p.relayed and p.remote.type != "relay"]
    assert direct
    assert all(p.state is PairState.FAILED for p in direct)


@pytest.mark.parametrize("order", ["locals_first", "remotes_first", "b_hears_checks_first"])
def test_trickle_in_any_order(order: str) -> None:
    net = make_network()
    a, b = net.agents["a"], net.agents["b"]
    a_host = net.host("a", ("10.0.0.1", 5000), "lan")
    b_host = net.host("b", ("10.0.0.2", 6000), "lan")
    if order == "locals_first":
        a.add_local_candidate(a_host, net.now)
        b.add_local_candidate(b_host, net.now)
        net.run(0.5)
        assert not net.wire  # nothing to check yet
        a.add_remote_candidate(b_host, net.now)
        b.add_remote_candidate(a_host, net.now)
    elif order == "remotes_first":
        a.add_remote_candidate(b_host, net.now)
        b.add_remote_candidate(a_host, net.now)
        net.run(0.5)
        assert not net.wire
        b.add_local_candidate(b_host, net.now)
        a.add_local_candidate(a_host, net.now)
    else:
        # b knows only its own candidate: a's checks teach it a's address (prflx),
        # and a's candidate arrives by signaling afterwards and replaces it.
        b.add_local_candidate(b_host, net.now)
        a.add_local_candidate(a_host, net.now)
        a.add_remote_candidate(b_host, net.now)
        net.run(0.05)
        assert [c.type for c in b.remote_candidates] == [CandidateType.PEER_REFLEXIVE]
        assert b.add_remote_candidate(a_host, net.now)  # replaces it, keeping its pair
        assert [c.type for c in b.remote_candidates] == [CandidateType.HOST]
        assert len(b.pairs()) == 1
    net.run(1.0, until=net.connected)
    assert net.connected()
    assert same_path(net)


def test_late_candidates_still_connect() -> None:
    net = make_network()
    a_host = net.host("a", ("10.0.0.1", 5000), "lan")
    b_host = net.host("b", ("10.0.0.2", 6000), "lan")
    net.agents["a"].add_local_candidate(a_host, net.now)
    net.agents["b"].add_local_candidate(b_host, net.now)
    net.run(3.0)  # signaling is slow; less than the failure grace time
    assert not net.of_type("a", Failed)
    net.signal("b", b_host)
    net.run(0.5)
    net.signal("a", a_host)
    net.run(1.0, until=net.connected)
    assert net.connected()
    assert same_path(net)


def test_checks_are_paced_by_ta() -> None:
    net = make_network()
    # b's addresses are unreachable, so a checks every pair in turn (five
    # addresses: five foundations, so no pair waits for another, §6.1.2.6).
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    for i in range(5):
        net.signal("b", net.host("b", (f"10.9.0.{i + 2}", 6000), "elsewhere"))
    net.run(0.5)
    firsts: dict[bytes, float] = {}
    for w in net.sent("a"):
        m = w.message
        if m.message_class.name == "REQUEST" and 0x0025 not in m.attributes:  # not USE-CANDIDATE
            firsts.setdefault(m.transaction_id, w.at)
    times = sorted(firsts.values())
    assert len(times) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= TA - 1e-9


def test_pairs_of_one_foundation_wait_for_each_other() -> None:
    """RFC 8445 §6.1.2.6 / §7.2.5.3.3: one pair per foundation is checked; the others
    stay Frozen until it succeeds (then they all go) or nothing else is left."""
    net = make_network()
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    for port in (6000, 6001, 6002):  # one IP: one foundation
        net.signal("b", net.host("b", ("10.9.0.2", port), "elsewhere"))
    net.run(0.5)
    states = sorted(p.state for p in net.agents["a"].pairs())
    assert states == [PairState.FROZEN, PairState.FROZEN, PairState.IN_PROGRESS]
