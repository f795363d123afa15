"""What goes on the wire: checks, responses, authentication, and the demux helpers."""

from __future__ import annotations

import pytest
from ice_helpers import (
    A_PWD,
    A_UFRAG,
    B_PWD,
    B_UFRAG,
    NOW0,
    make_agent,
    make_network,
)

from zerogate.proto import stun
from zerogate.proto.ice import (
    IceAgent,
    LocalProtocolError,
    PairState,
    host_candidate,
    is_binding_request,
    is_binding_response,
    is_ice_message,
    peek_username,
    target_ufrag,
    transaction_id,
)
from zerogate.proto.stun import Attr, Message, MessageClass, Method

# RFC 8445 §5.1.2.1 with the peer-reflexive type preference 110 (§7.2.2: PRIORITY).
PRFLX_PRIORITY = 2**24 * 110 + 2**8 * 65535 + (256 - 1)
A_ADDR, B_ADDR = ("10.0.0.1", 5000), ("10.0.0.2", 6000)


def agent_with_pair(*, controlling: bool = True) -> IceAgent:
    """Agent a with one host candidate and b's host candidate: one pair, one check out."""
    a = make_agent(controlling=controlling, seed=3, local=(A_UFRAG, A_PWD), remote=(B_UFRAG, B_PWD))
    a.add_local_candidate(host_candidate(A_ADDR), NOW0)
    a.add_remote_candidate(host_candidate(B_ADDR), NOW0)
    return a


def drain(agent: IceAgent) -> list[stun.Message]:
    out = []
    while (tx := agent.poll_transmit()) is not None:
        out.append(stun.decode(tx.data))
    return out


def response_to(request: stun.Message, mapped: tuple[str, int], key: str) -> bytes:
    attributes: dict[int, object] = {Attr.XOR_MAPPED_ADDRESS: mapped}
    reply = Message(Method.BINDING, MessageClass.SUCCESS, request.transaction_id, attributes)
    return stun.encode(reply, key=key.encode(), fingerprint=True)


def request_from_b(*, key: str = A_PWD, username: str = f"{A_UFRAG}:{B_UFRAG}") -> bytes:
    attributes: dict[int, object] = {
        Attr.USERNAME: username,
        Attr.PRIORITY: PRFLX_PRIORITY,
        Attr.ICE_CONTROLLED: 1,
    }
    request = Message(Method.BINDING, MessageClass.REQUEST, b"\x01" * 12, attributes)
    return stun.encode(request, key=key.encode(), fingerprint=True)


def test_a_check_carries_what_rfc_8445_asks() -> None:
    a = agent_with_pair()
    tx = a.poll_transmit()
    assert tx is not None
    assert (tx.source, tx.destination) == (A_ADDR, B_ADDR)
    check = stun.decode(tx.data)  # decode verifies FINGERPRINT
    assert (check.method, check.message_class) == (Method.BINDING, MessageClass.REQUEST)
    assert check.fingerprint_at is not None
    assert check.get_str(Attr.USERNAME) == f"{B_UFRAG}:{A_UFRAG}"  # remote:local, §7.2.2
    assert stun.check_integrity(check, B_PWD.encode())  # short-term: the remote password
    assert not stun.check_integrity(check, A_PWD.encode())
    assert check.get_int(Attr.PRIORITY) == PRFLX_PRIORITY
    assert check.get_int(Attr.ICE_CONTROLLING) == a.tie_breaker
    assert Attr.ICE_CONTROLLED not in check.attributes
    assert Attr.USE_CANDIDATE not in check.attributes
    assert a.owns_transaction(check.transaction_id)


def test_a_controlled_check_carries_ice_controlled() -> None:
    a = agent_with_pair(controlling=False)
    (check,) = drain(a)
    assert check.get_int(Attr.ICE_CONTROLLED) == a.tie_breaker
    assert Attr.ICE_CONTROLLING not in check.attributes


def test_a_success_response_makes_the_pair_valid_and_nominated() -> None:
    a = agent_with_pair()
    (check,) = drain(a)
    a.handle_stun(response_to(check, A_ADDR, B_PWD), B_ADDR, A_ADDR, NOW0 + 0.01)
    assert [p.state for p in a.pairs()] == [PairState.SUCCEEDED]
    assert not a.owns_transaction(check.transaction_id)
    (nomination,) = drain(a)  # regular nomination: the same check with USE-CANDIDATE
    assert Attr.USE_CANDIDATE in nomination.attributes
    assert stun.check_integrity(nomination, B_PWD.encode())
    a.handle_stun(response_to(nomination, A_ADDR, B_PWD), B_ADDR, A_ADDR, NOW0 + 0.02)
    assert a.selected_pair is not None
    assert a.selected_pair.nominated


def test_an_answer_from_another_address_fails_the_check() -> None:
    """RFC 8445 §7.2.5.2.1: the source and destination must be symmetric."""
    a = agent_with_pair()
    (check,) = drain(a)
    a.handle_stun(response_to(check, A_ADDR, B_PWD), ("10.0.0.2", 6001), A_ADDR, NOW0 + 0.01)
    assert [p.state for p in a.pairs()] == [PairState.FAILED]


def test_an_answer_on_another_base_fails_the_check() -> None:
    a = agent_with_pair()
    (check,) = drain(a)
    a.handle_stun(response_to(check, A_ADDR, B_PWD), B_ADDR, ("10.0.0.1", 5001), NOW0 + 0.01)
    assert [p.state for p in a.pairs()] == [PairState.FAILED]


@pytest.mark.parametrize("key", [A_PWD, "wrongwrongwrongwrong00"])
def test_a_response_signed_with_the_wrong_password_is_ignored(key: str) -> None:
    a = agent_with_pair()
    (check,) = drain(a)
    a.handle_stun(response_to(check, A_ADDR, key), B_ADDR, A_ADDR, NOW0 + 0.01)
    assert [p.state for p in a.pairs()] == [PairState.IN_PROGRESS]
    assert a.owns_transaction(check.transaction_id)  # retransmissions go on
    assert a.stats.dropped == 1


def test_a_request_is_answered_with_its_source_signed_with_the_local_password() -> None:
    a = agent_with_pair()
    drain(a)
    source = ("198.51.100.7", 40000)  # b behind a NAT: a new, peer-reflexive address
    a.handle_stun(request_from_b(), source, A_ADDR, NOW0 + 0.001)
    tx = a.poll_transmit()
    assert tx is not None
    assert (tx.source, tx.destination) == (A_ADDR, source)
    response = stun.decode(tx.data)
    assert (response.message_class, response.transaction_id) == (MessageClass.SUCCESS, b"\x01" * 12)
    assert response.get_address(Attr.XOR_MAPPED_ADDRESS) == source
    assert stun.check_integrity(response, A_PWD.encode())
    assert response.fingerprint_at is not None
    learned = [c for c in a.remote_candidates if c.address == source]
    assert [(c.type, c.priority) for c in learned] == [("prflx", PRFLX_PRIORITY)]


@pytest.mark.parametrize(
    "data",
    [
        request_from_b(key="wrongwrongwrongwrong00"),  # wrong password
        request_from_b(username=f"{A_UFRAG}:zzzz"),  # another session's ufrag
        request_from_b(username=f"zzzz:{B_UFRAG}"),
        request_from_b(username=A_UFRAG),
        request_from_b(key=B_PWD),  # signed with the remote instead of the local password
        stun.encode(  # no MESSAGE-INTEGRITY at all
            Message(
                Method.BINDING,
                MessageClass.REQUEST,
                b"\x02" * 12,
                {Attr.USERNAME: f"{A_UFRAG}:{B_UFRAG}", Attr.PRIORITY: 1},
            ),
            fingerprint=True,
        ),
        stun.encode(  # no FINGERPRINT (RFC 8445 §7.3 requires it)
            Message(
                Method.BINDING,
                MessageClass.REQUEST,
                b"\x03" * 12,
                {Attr.USERNAME: f"{A_UFRAG}:{B_UFRAG}", Attr.PRIORITY: 1},
            ),
            key=A_PWD.encode(),
        ),
        stun.encode(  # no PRIORITY
            Message(
                Method.BINDING,
                MessageClass.REQUEST,
                b"\x04" * 12,
                {Attr.USERNAME: f"{A_UFRAG}:{B_UFRAG}"},
            ),
            key=A_PWD.encode(),
            fingerprint=True,
        ),
    ],
    ids=[
        "wrong-pwd",
        "wrong-remote-ufrag",
        "wrong-local-ufrag",
        "no-colon",
        "remote-pwd",
        "no-integrity",
        "no-fingerprint",
        "no-priority",
    ],
)
def test_unauthenticated_requests_are_dropped_silently(data: bytes) -> None:
    a = agent_with_pair()
    drain(a)
    before = (a.pairs(), a.remote_candidates)
    a.handle_stun(data, ("198.51.100.7", 40000), A_ADDR, NOW0 + 0.001)
    assert a.poll_transmit() is None
    assert a.poll_event() is None
    assert (a.pairs(), a.remote_candidates) == before
    assert a.stats.dropped == 1
    assert a.stats.requests_answered == 0


def test_a_request_on_a_base_without_a_candidate_is_not_answered() -> None:
    a = agent_with_pair()
    drain(a)
    a.handle_stun(request_from_b(), B_ADDR, ("10.0.0.1", 5999), NOW0 + 0.001)
    assert a.poll_transmit() is None
    assert a.stats.dropped == 1


def test_impostor_with_the_right_ufrags_but_wrong_passwords_gets_nowhere() -> None:
    net = make_network()
    b = make_agent(
        controlling=False,
        seed=9,
        local=(B_UFRAG, "impostorimpostorimpost"),
        remote=(A_UFRAG, "impostorimpostorimpost"),
    )
    net.agents["b"] = b
    net.signal("a", net.host("a", A_ADDR, "lan"))
    net.signal("b", net.host("b", B_ADDR, "lan"))
    net.run(3.0)
    a = net.agents["a"]
    assert a.selected_pair is None
    assert b.selected_pair is None
    assert all(p.state is not PairState.SUCCEEDED for p in a.pairs() + b.pairs())
    assert a.stats.requests_answered == 0
    assert b.stats.requests_answered == 0
    assert a.stats.dropped > 0
    assert b.stats.dropped > 0


def test_credentials_are_checked() -> None:
    with pytest.raises(LocalProtocolError, match="ufrag"):
        make_agent(controlling=True, seed=1, local=("ab", A_PWD), remote=(B_UFRAG, B_PWD))
    with pytest.raises(LocalProtocolError, match="password"):
        make_agent(controlling=True, seed=1, local=(A_UFRAG, "short"), remote=(B_UFRAG, B_PWD))
    with pytest.raises(LocalProtocolError, match="password"):
        make_agent(controlling=True, seed=1, local=(A_UFRAG, A_PWD), remote=(B_UFRAG, "x:" * 11))


def test_demux_helpers() -> None:
    a = agent_with_pair()
    request = a.poll_transmit()
    assert request is not None
    data = request.data
    assert is_ice_message(data)
    assert is_binding_request(data)
    assert not is_binding_response(data)
    assert peek_username(data) == f"{B_UFRAG}:{A_UFRAG}"
    assert target_ufrag(data) == B_UFRAG  # the agent this request is for: b
    tid = transaction_id(data)
    assert tid == stun.decode(data).transaction_id
    assert a.owns_transaction(tid)
    response = response_to(stun.decode(data), A_ADDR, B_PWD)
    assert is_ice_message(response)
    assert is_binding_response(response)
    assert target_ufrag(response) is None
    assert transaction_id(response) == tid
    for memory in (bytearray(data), memoryview(data)):
        assert target_ufrag(memory) == B_UFRAG
        assert transaction_id(memory) == tid
    wireguard = bytes([4, 0, 0, 0]) + bytes(28)
    channel_data = bytes([0x40, 0x00, 0x00, 0x04]) + bytes(16)
    allocate = stun.encode(Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12)))
    for other in (wireguard, channel_data, allocate, b"", data[:19]):
        assert not is_ice_message(other)
        assert target_ufrag(other) is None
    assert transaction_id(wireguard) is None


def test_target_ufrag_does_not_read_past_the_integrity() -> None:
    message = Message(Method.BINDING, MessageClass.REQUEST, bytes(12), {Attr.PRIORITY: 1})
    signed = stun.encode(message, key=b"k", fingerprint=True)
    assert peek_username(signed) is None
    truncated = bytearray(request_from_b())
    truncated[2:4] = (200).to_bytes(2, "big")  # a length field that lies
    assert peek_username(bytes(truncated)) is None
