"""Retransmissions, failure, consent freshness (RFC 7675) and loss, on the virtual clock."""

from __future__ import annotations

import itertools
import random

import pytest
from ice_helpers import NOW0, Nat, Network, Wire, make_network, same_path

from zerogate.proto.ice import AgentState, Disconnected, Failed, IceConfig, PairState
from zerogate.proto.stun import MessageClass

# The retransmission policy: RTO from 100 ms, doubling, capped at 1.6 s,
# a pair fails after 8 retransmissions (about 8-10 s in all).
RTO_INITIAL, RTO_CAP, RETRANSMITS = 0.100, 1.6, 8
FAILED_GRACE = 5.0
# RFC 7675 §5.1: a consent check every 5 s randomised to 0.8-1.2 times that; consent
# expires 30 s after the last authenticated response.
CONSENT_INTERVAL, CONSENT_JITTER, CONSENT_TIMEOUT = 5.0, 0.2, 30.0


def expected_transmissions() -> tuple[list[float], float]:
    """Offsets of the first transmission and each retransmission; when the check fails."""
    times, t, rto = [0.0], 0.0, RTO_INITIAL
    for _ in range(RETRANSMITS):
        t += rto
        times.append(t)
        rto = min(rto * 2, RTO_CAP)
    return times, t + rto


def unreachable(net: Network) -> None:
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan-a"))
    net.signal("b", net.host("b", ("10.9.0.2", 6000), "lan-b"))  # no route between the LANs


def test_retransmission_schedule_and_pair_failure() -> None:
    net = make_network()
    unreachable(net)
    net.run(9.0)
    sent = [w.at - NOW0 for w in net.sent("a")]
    times, fails_at = expected_transmissions()
    assert sent == pytest.approx(times)
    assert 8.0 <= fails_at <= 10.0
    assert [p.state for p in net.agents["a"].pairs()] == [PairState.IN_PROGRESS]
    net.run_until(NOW0 + fails_at - 0.001)
    assert [p.state for p in net.agents["a"].pairs()] == [PairState.IN_PROGRESS]
    net.run_until(NOW0 + fails_at + 1e-6)
    assert [p.state for p in net.agents["a"].pairs()] == [PairState.FAILED]
    # Retransmissions repeat the same request (same transaction, same bytes).
    assert len({w.tx.data for w in net.sent("a")}) == 1


def test_all_pairs_failing_gives_failed_after_the_grace_time() -> None:
    net = make_network()
    unreachable(net)
    net.run(30.0)
    _, fails_at = expected_transmissions()
    for name in "ab":
        events = net.of_type(name, Failed)
        assert len(events) == 1, name
        when, event = events[0]
        assert when == pytest.approx(NOW0 + fails_at + FAILED_GRACE)
        assert isinstance(event, Failed)
        assert event.reason
        agent = net.agents[name]
        assert agent.state is AgentState.FAILED
        assert agent.poll_timeout() is None
    # Nothing is sent after Failed.
    assert max(w.at for w in net.wire) < NOW0 + fails_at + FAILED_GRACE


def test_no_candidates_at_all_fails_after_the_grace_time_and_a_candidate_resets_it() -> None:
    net = make_network()
    net.run(FAILED_GRACE - 1.0)
    net.agents["a"].add_local_candidate(net.host("a", ("10.0.0.1", 5000), "lan"), net.now)
    net.run(FAILED_GRACE - 0.5)
    assert net.of_type("a", Failed) == []
    net.run(1.0)
    assert [e.reason for _, e in net.of_type("a", Failed)] == ["no candidate pairs"]  # type: ignore[attr-defined]
    assert [t for t, _ in net.of_type("b", Failed)] == [pytest.approx(NOW0 + FAILED_GRACE)]


def connected_lan(net: Network) -> None:
    net.signal("a", net.host("a", ("10.0.0.1", 5000), "lan"))
    net.signal("b", net.host("b", ("10.0.0.2", 6000), "lan"))
    net.run(1.0, until=net.connected)
    assert net.connected()


def consent_requests(net: Network, name: str, after: float) -> list[float]:
    return [
        w.at
        for w in net.sent(name)
        if w.at > after and w.message.message_class is MessageClass.REQUEST
    ]


def test_consent_checks_every_5_s_randomised() -> None:
    net = make_network()
    connected_lan(net)
    connected_at = net.now
    net.run(120.0)
    for name in "ab":
        times = [connected_at, *consent_requests(net, name, connected_at)]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert len(gaps) >= 20
        low = CONSENT_INTERVAL * (1 - CONSENT_JITTER)
        high = CONSENT_INTERVAL * (1 + CONSENT_JITTER)
        assert all(low - 0.01 <= g <= high + 0.01 for g in gaps), gaps
        assert len({round(g, 3) for g in gaps}) > 5  # really randomised
        assert net.agents[name].state is AgentState.CONNECTED
    assert net.of_type("a", Disconnected) == []
    assert net.of_type("b", Disconnected) == []


def last_response_to(net: Network, name: str) -> float:
    return max(
        w.at + net.latency
        for w in net.wire
        if w.delivered_to == name and w.message.message_class is MessageClass.SUCCESS
    )


def test_consent_loss_disconnects_30_s_after_the_last_response() -> None:
    net = make_network()
    connected_lan(net)
    net.run(17.0)
    cut = net.now
    net.drop = lambda _w: True
    net.run(45.0)
    for name in "ab":
        events = net.of_type(name, Disconnected)
        assert len(events) == 1, name
        when, event = events[0]
        assert when == pytest.approx(last_response_to(net, name) + CONSENT_TIMEOUT)
        assert cut + CONSENT_TIMEOUT - CONSENT_INTERVAL * (1 + CONSENT_JITTER) <= when
        assert when <= cut + CONSENT_TIMEOUT
        assert isinstance(event, Disconnected)
        peer_ip = "10.0.0.2" if name == "a" else "10.0.0.1"
        assert event.pair.destination[0] == peer_ip
        agent = net.agents[name]
        assert agent.state is AgentState.DISCONNECTED
        assert agent.selected_pair is None
        assert agent.poll_timeout() is None
        # Consent requests kept going until then, and nothing after.
        sent = [w.at for w in net.sent(name) if w.at > cut]
        assert sent
        assert max(sent) < when


def test_consent_survives_a_short_outage() -> None:
    net = make_network()
    connected_lan(net)
    outage = net.now
    net.drop = lambda w: outage < w.at < outage + 20.0
    net.run(60.0)
    assert net.of_type("a", Disconnected) == []
    assert net.of_type("b", Disconnected) == []
    assert net.agents["a"].state is AgentState.CONNECTED


@pytest.mark.parametrize("seed", range(8))
def test_thirty_percent_loss_still_converges(seed: int) -> None:
    loss = random.Random(seed)
    net = make_network(seed=seed)

    def lossy(_w: Wire) -> bool:
        return loss.random() < 0.3

    net.drop = lossy
    net.nats["lan-a"] = Nat("198.51.100.1")
    a_host = net.host("a", ("192.168.1.10", 5000), "lan-a")
    net.signal("b", net.host("b", ("203.0.113.10", 6000)))
    net.signal("b", net.relay("b", ("203.0.113.101", 50001)))
    net.signal("a", a_host)
    net.signal("a", net.srflx("a", a_host.address))
    net.run(10.0, until=lambda: net.connected() and same_path(net))
    assert net.connected()
    assert same_path(net)
    net.run(20.0)
    assert same_path(net)
    assert not net.agents["a"].selected_pair.relayed  # type: ignore[union-attr]


def test_close_stops_everything() -> None:
    net = make_network()
    connected_lan(net)
    a = net.agents["a"]
    a.close()
    assert a.state is AgentState.CLOSED
    assert a.poll_timeout() is None
    assert a.poll_transmit() is None
    before = len(net.sent("a"))
    net.run(10.0)
    assert len(net.sent("a")) == before


def test_config_is_validated() -> None:
    from zerogate.proto.ice import LocalProtocolError

    with pytest.raises(LocalProtocolError, match="ta"):
        IceConfig(ta=0).validate()
    with pytest.raises(LocalProtocolError, match="rto_max"):
        IceConfig(rto_initial=2.0, rto_max=1.0).validate()
    with pytest.raises(LocalProtocolError, match="consent_jitter"):
        IceConfig(consent_jitter=1.5).validate()
