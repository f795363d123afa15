"""Candidates, priorities and foundations against RFC 8445 §5.1 and §6.1.2.3 (restated here)."""

from __future__ import annotations

import dataclasses

import aioice
import pytest
from ice_helpers import NOW0, make_network

from zerogate.proto.ice import (
    FIELDS,
    Candidate,
    CandidateType,
    InvalidCandidate,
    LocalProtocolError,
    candidate_foundation,
    candidate_priority,
    host_candidate,
    pair_priority,
    relayed_candidate,
    server_reflexive_candidate,
)

# RFC 8445 §5.1.2.2: recommended type preferences.
RFC_TYPE_PREFERENCE = {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}


def rfc_candidate_priority(type_preference: int, local_preference: int, component: int) -> int:
    """RFC 8445 §5.1.2.1."""
    return (2**24) * type_preference + (2**8) * local_preference + (256 - component)


def rfc_pair_priority(g: int, d: int) -> int:
    """RFC 8445 §6.1.2.3: G is the controlling agent's candidate priority, D the controlled's."""
    return 2**32 * min(g, d) + 2 * max(g, d) + (1 if g > d else 0)


@pytest.mark.parametrize("kind", ["host", "prflx", "srflx", "relay"])
@pytest.mark.parametrize("local_preference", [0, 1, 30000, 65535])
def test_candidate_priority_is_the_rfc_formula(kind: str, local_preference: int) -> None:
    expected = rfc_candidate_priority(RFC_TYPE_PREFERENCE[kind], local_preference, 1)
    assert candidate_priority(kind, local_preference) == expected


def test_well_known_priorities() -> None:
    # Component 1, local preference 65535: the values other stacks show in SDP.
    assert host_candidate(("192.0.2.1", 1)).priority == 2130706431
    assert candidate_priority("prflx") == 1862270975
    assert candidate_priority("srflx") == 1694498815
    assert candidate_priority("relay") == 16777215
    assert (
        candidate_priority("host")
        > candidate_priority("prflx")
        > candidate_priority("srflx")
        > candidate_priority("relay")
    )


@pytest.mark.parametrize("g", [1, 16777215, 1694498815, 2130706431])
@pytest.mark.parametrize("d", [1, 16777215, 1862270975, 2130706431])
def test_pair_priority_is_the_rfc_formula(g: int, d: int) -> None:
    assert pair_priority(g, d) == rfc_pair_priority(g, d)


def test_local_preference_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidCandidate):
        candidate_priority("host", 65536)
    with pytest.raises(InvalidCandidate):
        candidate_priority("host", -1)


def test_foundations_follow_type_base_and_server() -> None:
    # RFC 8445 §5.1.1.3: same type, base IP, server and transport -> same foundation.
    assert candidate_foundation("host", "192.0.2.1") == candidate_foundation("host", "192.0.2.1")
    assert candidate_foundation("host", "192.0.2.1") != candidate_foundation("host", "192.0.2.2")
    assert candidate_foundation("srflx", "192.0.2.1", "198.51.100.1") != candidate_foundation(
        "srflx", "192.0.2.1", "198.51.100.2"
    )
    assert candidate_foundation("srflx", "192.0.2.1") != candidate_foundation("host", "192.0.2.1")
    two_ports = [host_candidate(("192.0.2.1", p)) for p in (1000, 2000)]
    assert two_ports[0].foundation == two_ports[1].foundation


def test_factories_fill_related_addresses() -> None:
    srflx = server_reflexive_candidate(
        ("198.51.100.7", 40000), base=("10.0.0.1", 5000), server_ip="203.0.113.1"
    )
    assert (srflx.type, srflx.related) == (CandidateType.SERVER_REFLEXIVE, ("10.0.0.1", 5000))
    relay = relayed_candidate(
        ("203.0.113.1", 50000), mapped=("198.51.100.7", 40000), server_ip="203.0.113.1"
    )
    assert (relay.type, relay.related) == (CandidateType.RELAYED, ("198.51.100.7", 40000))
    assert relay.priority == rfc_candidate_priority(0, 65535, 1)


def test_addresses_are_normalised() -> None:
    c = Candidate("abc", 1, "UDP", 1, "2001:DB8:0:0::1", 5, "host")
    assert (c.host, c.transport, c.type) == ("2001:db8::1", "udp", CandidateType.HOST)
    assert c.ip_version == 6


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "example.com"},  # mDNS / names are not supported
        {"port": 0},
        {"port": 70000},
        {"priority": 0},
        {"priority": 2**31},
        {"foundation": ""},
        {"foundation": "x" * 33},
        {"foundation": "a b"},
        {"type": "weird"},
        {"component": 0},
        {"related_address": "nope"},
    ],
)
def test_invalid_candidates_are_refused(fields: dict[str, object]) -> None:
    base: dict[str, object] = {
        "foundation": "f1",
        "component": 1,
        "transport": "udp",
        "priority": 1,
        "host": "192.0.2.1",
        "port": 5000,
        "type": "host",
    }
    with pytest.raises(InvalidCandidate):
        Candidate(**(base | fields))  # type: ignore[arg-type]
    assert issubclass(InvalidCandidate, ValueError)


@pytest.mark.parametrize(
    "candidate",
    [
        host_candidate(("192.0.2.1", 5000)),
        server_reflexive_candidate(
            ("198.51.100.7", 40000), base=("10.0.0.1", 5000), server_ip="203.0.113.1"
        ),
        relayed_candidate(
            ("2001:db8::5", 50000), mapped=("2001:db8::7", 40000), server_ip="2001:db8::5"
        ),
    ],
)
def test_fields_map_one_to_one_to_aioice(candidate: Candidate) -> None:
    theirs = aioice.Candidate(**dataclasses.asdict(candidate))
    parsed = aioice.Candidate.from_sdp(theirs.to_sdp())
    back = Candidate(**{name: getattr(parsed, name) for name in FIELDS})
    assert back == candidate


def test_agent_pairs_have_rfc_priorities_on_both_sides() -> None:
    net = make_network()
    a_cands = [
        net.host("a", ("10.0.0.1", 5000), "lan"),
        net.relay("a", ("203.0.113.100", 50000)),
    ]
    b_cands = [net.host("b", ("10.0.0.2", 6000), "lan", local_preference=1000)]
    for c in a_cands:
        net.signal("a", c)
    for c in b_cands:
        net.signal("b", c)
    a, b = net.agents["a"], net.agents["b"]
    assert len(a.pairs()) == len(b.pairs()) == 2
    for pair in a.pairs():  # a controls: G is a's candidate
        assert pair.priority == rfc_pair_priority(pair.local.priority, pair.remote.priority)
    for pair in b.pairs():  # b is controlled: G is the remote (a's) candidate
        assert pair.priority == rfc_pair_priority(pair.remote.priority, pair.local.priority)
    # Highest priority first, and both agents order the same pairs the same way.
    assert [p.priority for p in a.pairs()] == sorted((p.priority for p in b.pairs()), reverse=True)


def test_redundant_local_candidates_are_pruned() -> None:
    net = make_network()
    a = net.agents["a"]
    host = net.host("a", ("192.0.2.1", 5000))
    assert a.add_local_candidate(host, NOW0)
    assert not a.add_local_candidate(host, NOW0)  # the same candidate again
    # RFC 8445 §5.1.3: a server-reflexive candidate equal to its base (no NAT).
    srflx = server_reflexive_candidate(host.address, base=host.address, server_ip="203.0.113.1")
    assert not a.add_local_candidate(srflx, NOW0)
    # A real srflx candidate shares the host's base: one pair per base and remote
    # candidate (§6.1.2.4), sent with the host candidate.
    real = server_reflexive_candidate(
        ("198.51.100.1", 40000), base=host.address, server_ip="203.0.113.1"
    )
    assert a.add_local_candidate(real, NOW0)
    a.add_remote_candidate(host_candidate(("192.0.2.2", 6000)), NOW0)
    assert [(p.local.type, p.base) for p in a.pairs()] == [(CandidateType.HOST, host.address)]


def test_local_candidates_the_agent_cannot_use_are_refused() -> None:
    a = make_network().agents["a"]
    host = host_candidate(("192.0.2.1", 5000))
    with pytest.raises(LocalProtocolError):
        a.add_local_candidate(dataclasses.replace(host, component=2), NOW0)
    with pytest.raises(LocalProtocolError):
        a.add_local_candidate(host, NOW0, base=("192.0.2.9", 1))  # a host is its own base
    with pytest.raises(LocalProtocolError):
        a.add_local_candidate(dataclasses.replace(host, type=CandidateType.PEER_REFLEXIVE), NOW0)


def test_remote_candidates_of_other_components_are_ignored() -> None:
    a = make_network().agents["a"]
    other = dataclasses.replace(host_candidate(("192.0.2.2", 6000)), component=2)
    assert not a.add_remote_candidate(other, NOW0)
    assert a.remote_candidates == ()


def test_tables_are_bounded() -> None:
    """RFC 8445 §6.1.2.5: the checklist is limited (100 pairs by default)."""
    a = make_network().agents["a"]
    a.add_local_candidate(host_candidate(("10.0.0.1", 5000)), NOW0)
    added = [
        a.add_remote_candidate(host_candidate((f"10.1.{i // 250}.{i % 250 + 1}", 6000)), NOW0)
        for i in range(150)
    ]
    assert added.count(True) == 100
    assert len(a.pairs()) == 100
