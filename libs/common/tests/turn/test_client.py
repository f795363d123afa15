"""The TURN client core against the TURN server core over a fake link, on a virtual clock."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method
from zerogate.proto.turn import (
    Allocated,
    Allocation,
    AllocationClosed,
    AllocationFailed,
    AllocationLost,
    AllocationState,
    ChannelBound,
    OpenRelaySocket,
    PeerRefused,
    Server,
    ServerReflexive,
    rest_api_credentials,
)

from .conftest import AUTH_SECRET, RELAY_V4, RELAY_V6, T0, UNIX_T0, USERS, make_config

# Restated from the RFCs (the tests check the spec, not the code's constants).
PERMISSION_LIFETIME = 300  # RFC 8656 §9: a permission lives 300 s
CHANNEL_LIFETIME = 600  # RFC 8656 §12: a channel binding lives 600 s
DEFAULT_LIFETIME = 600  # RFC 8656 §7.2: the default allocation lifetime
CHANNEL_MIN, CHANNEL_MAX = 0x4000, 0x4FFF  # RFC 8656 §12
CHANNEL_DATA_HEADER = 4  # RFC 8656 §12.4: number (2 bytes), length (2 bytes)
KEEPALIVE = 25  # a Binding every 25 s keeps the NAT binding (Firezone's figure)
FIRST_RTO = 0.5  # RFC 8489 §6.2.1: RTO starts at 500 ms and doubles
REQUEST_TIMEOUT = 8.0  # a request gives up 8 s after its first transmission (Firezone)
SERVER = ("198.51.100.1", 3478)  # the server's listen address (own, in conftest)
CLIENT = ("192.0.2.200", 40000)  # the client's server-reflexive address
PEER = ("8.8.8.8", 5000)  # a public peer the relay will serve
HOUR = 3600


def _kind(data: bytes) -> tuple[int, int] | None:
    """(method, class) of a STUN datagram, else None."""
    if len(data) < 20 or data[0] & 0xC0:
        return None
    return stun.split_message_type((data[0] << 8) | data[1])


@dataclass
class Link:
    """One client core and one server core on a virtual clock; the server's shell
    binds every relay socket. Datagrams to peers land in :attr:`at_peers`."""

    server: Server
    client: Allocation
    now: float = T0
    client_address: tuple[str, int] = CLIENT
    server_address: tuple[str, int] = SERVER
    events: list[object] = field(default_factory=list)
    at_peers: list[tuple[tuple[str, int], tuple[str, int], bytes]] = field(default_factory=list)
    at_client: list[tuple[tuple[str, int], bytes]] = field(default_factory=list)
    #: (time, method) of every request the client sent
    requests: list[tuple[float, int]] = field(default_factory=list)
    #: drops a client->server datagram when it returns True
    drop_up: Callable[[bytes], bool] = lambda _data: False
    #: drops a server->client datagram when it returns True
    drop_down: Callable[[bytes], bool] = lambda _data: False

    def pump(self) -> None:
        for _ in range(10_000):
            moved = False
            while (tx := self.client.poll_transmit()) is not None:
                moved = True
                assert tx.destination == self.server_address
                kind = _kind(tx.data)
                if kind is not None and kind[1] == MessageClass.REQUEST:
                    self.requests.append((self.now, kind[0]))
                if self.drop_up(tx.data):
                    continue
                self.server.handle_client_datagram(tx.data, self.client_address, self.now)
            while (command := self.server.poll_command()) is not None:
                moved = True
                if isinstance(command, OpenRelaySocket):
                    self.server.handle_relay_bound(command.relay, self.now)
            while (tx := self.server.poll_transmit()) is not None:
                moved = True
                if tx.source is not None:
                    self.at_peers.append((tx.source, tx.destination, tx.data))
                    continue
                if tx.destination != self.client_address or self.drop_down(tx.data):
                    continue
                self.deliver(tx.data)
            while (event := self.client.poll_event()) is not None:
                moved = True
                self.events.append(event)
            if not moved:
                return
        raise AssertionError("the link never went quiet")

    def deliver(self, data: bytes) -> None:
        """What the agent's shell does with a datagram from the server."""
        if self.client.handle_datagram(data, self.server_address, self.now):
            return
        unwrapped = self.client.decapsulate(data, self.server_address)
        if unwrapped is not None:
            self.at_client.append(unwrapped)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer of both cores that falls due on the way."""
        target = self.now + seconds
        for _ in range(1_000_000):
            due = [t for t in (self.client.poll_timeout(), self.server.poll_timeout()) if t]
            step = min(due, default=None)
            if step is None or step > target:
                break
            self.now = max(self.now, step)
            self.client.handle_timeout(self.now)
            self.server.handle_timeout(self.now)
            self.pump()
        else:
            raise AssertionError("timers never settled")
        self.now = target
        self.client.handle_timeout(self.now)
        self.server.handle_timeout(self.now)
        self.pump()

    def from_peer(self, peer: tuple[str, int], data: bytes, relay=None) -> None:
        relay = relay or self.client.relayed_address_for(peer)
        routed = self.server.peer_to_client(relay, data, peer)
        if routed is not None:
            assert routed[0] == self.client_address
            if not self.drop_down(routed[1]):
                self.deliver(routed[1])
        else:
            self.server.handle_peer_datagram(relay, data, peer, self.now)
        self.pump()

    def to_peer(self, peer: tuple[str, int], data: bytes) -> bool:
        """Send through the relay as the shell would; True when it reached the peer."""
        framed = self.client.encapsulate(peer, data)
        if framed is None:
            return False
        before = len(self.at_peers)
        if framed[0] & 0xC0 == 0x40:
            routed = self.server.channel_to_peer(framed, self.client_address)
            if routed is not None:
                self.at_peers.append((routed[0], routed[1], bytes(routed[2])))
        else:
            self.server.handle_client_datagram(framed, self.client_address, self.now)
        self.pump()
        return self.at_peers[before:] == [(self.client.relayed_address_for(peer), peer, data)]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def count(self, method: int, since: float = float("-inf")) -> int:
        return sum(1 for at, m in self.requests if m == method and at >= since)


def make_link(
    username: str = "alice",
    password: str | None = None,
    *,
    server: Server | None = None,
    client_kwargs: dict | None = None,
    pump: bool = True,
    **config,
) -> Link:
    server = server or Server(make_config(**config), now=T0, unix_now=UNIX_T0)
    server.listening_on([SERVER])
    client = Allocation(
        SERVER,
        username,
        USERS.get(username, "") if password is None else password,
        now=T0,
        rng=random.Random(7),
        **(client_kwargs or {}),
    )
    link = Link(server, client)
    if pump:
        link.pump()
    return link


# -- allocating ----------------------------------------------------------------------


def test_allocates_after_the_401_challenge_and_learns_both_addresses():
    link = make_link(pump=False)
    first = link.client.poll_transmit()
    second = link.client.poll_transmit()
    assert [_kind(first.data), _kind(second.data)] == [
        (Method.BINDING, MessageClass.REQUEST),
        (Method.ALLOCATE, MessageClass.REQUEST),
    ]
    unsigned = stun.decode(second.data)
    assert unsigned.integrity_at is None  # realm and nonce are not known yet
    for tx in (first, second):
        link.server.handle_client_datagram(tx.data, CLIENT, link.now)
    link.pump()
    assert link.client.state is AllocationState.ALLOCATED
    (allocated,) = link.of(Allocated)
    assert allocated.relayed == (link.client.relayed_address,)
    assert allocated.relayed[0][0] == RELAY_V4
    assert allocated.mapped == CLIENT
    assert allocated.lifetime == DEFAULT_LIFETIME
    assert link.of(ServerReflexive) == [ServerReflexive(CLIENT)]  # once, not per answer
    assert link.client.mapped_address == CLIENT
    assert link.server.stats().responses_by_code[401] == 1
    assert link.count(Method.ALLOCATE) == 1  # the signed one (the unsigned went by hand)


def test_every_request_after_the_challenge_is_signed_and_fingerprinted():
    signed: list[stun.Message] = []

    def watch(data: bytes) -> bool:
        kind = _kind(data)
        if kind is not None and kind[1] == MessageClass.REQUEST and kind[0] != Method.BINDING:
            signed.append(stun.decode(data))
        return False

    link = make_link(pump=False)
    link.drop_up = watch
    link.pump()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    link.advance(DEFAULT_LIFETIME / 2 + 1)
    later = signed[1:]  # the first Allocate is the unsigned probe
    assert {m.method for m in later} >= {
        Method.ALLOCATE,
        Method.CREATE_PERMISSION,
        Method.CHANNEL_BIND,
        Method.REFRESH,
    }
    for message in later:
        assert message.integrity_at is not None  # MESSAGE-INTEGRITY (HMAC-SHA1)
        assert message.fingerprint_at is not None
        assert message.get_str(Attr.USERNAME) == "alice"


def test_wrong_password_fails_with_401():
    link = make_link(password="not it")
    assert link.client.state is AllocationState.FAILED
    assert link.of(AllocationFailed) == [AllocationFailed(401, "Unauthenticated")]
    assert link.client.poll_timeout() is None  # final: nothing more to do


def test_credentials_updated_before_the_answer_are_used_at_once():
    link = make_link(password="not it", pump=False)
    link.client.update_credentials("alice", USERS["alice"])
    link.pump()
    assert link.client.state is AllocationState.ALLOCATED


def test_stale_nonce_438_is_retried_with_the_new_nonce():
    # nonces live 60 s here: the Refresh at 300 s meets a stale nonce
    link = make_link(nonce_lifetime=60)
    link.client.bind_peer(PEER, link.now)
    link.pump()
    link.advance(HOUR)
    assert link.server.stats().responses_by_code.get(438, 0) >= 1
    assert link.client.state is AllocationState.ALLOCATED
    assert not link.of(AllocationLost)
    assert link.to_peer(PEER, b"after many stale nonces")


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"max_allocations_total": 1}, 508),  # RFC 8656 §7.2: Insufficient Capacity
        ({"relay_addresses_v4": [], "relay_addresses_v6": [RELAY_V6]}, 440),  # no IPv4 relay
    ],
)
def test_refused_allocate_fails_with_the_code(config, code):
    if code == 508:
        server = Server(make_config(**config), now=T0, unix_now=UNIX_T0)
        make_link(server=server)  # takes the only allocation
        link = make_link(server=server, pump=False)
        link.client_address = ("192.0.2.201", 40001)
        link.pump()
    else:
        link = make_link(**config)
    assert [type(e) for e in link.events if not isinstance(e, ServerReflexive)] == [
        AllocationFailed
    ]
    assert link.of(AllocationFailed)[0].code == code


def test_allocate_without_an_answer_fails_after_eight_seconds():
    link = make_link(pump=False)
    link.drop_up = lambda _data: True
    link.pump()
    link.advance(REQUEST_TIMEOUT - 0.01)
    assert link.client.state is AllocationState.ALLOCATING
    sent = [at - T0 for at, method in link.requests if method == Method.ALLOCATE]
    # RFC 8489 §6.2.1 schedule with RTO 500 ms doubling, cut at 8 s
    assert sent == [0, FIRST_RTO, 3 * FIRST_RTO, 7 * FIRST_RTO, 15 * FIRST_RTO]
    link.advance(0.02)
    assert link.client.state is AllocationState.FAILED
    assert link.of(AllocationFailed) == [AllocationFailed(None, "no answer")]


def test_a_lost_answer_is_recovered_by_retransmission():
    dropped = []

    def drop_first_allocate_answer(data: bytes) -> bool:
        kind = _kind(data)
        if kind == (Method.ALLOCATE, MessageClass.SUCCESS) and not dropped:
            dropped.append(data)
            return True
        return False

    link = make_link(pump=False)
    link.drop_down = drop_first_allocate_answer
    link.pump()
    assert link.client.state is AllocationState.ALLOCATING
    link.advance(FIRST_RTO)
    assert link.client.state is AllocationState.ALLOCATED
    assert link.server.stats().allocations == 1  # the server replayed its cached answer


def test_a_forged_answer_without_our_key_is_ignored():
    """RFC 8489 §9.2.5: an answer to a signed request must carry a valid
    MESSAGE-INTEGRITY; anything else is as if never received."""
    held: list[bytes] = []

    def hold_allocate_answer(data: bytes) -> bool:
        if _kind(data) == (Method.ALLOCATE, MessageClass.SUCCESS):
            held.append(data)
            return True
        return False

    link = make_link(pump=False)
    link.drop_down = hold_allocate_answer
    link.pump()
    real = stun.decode(held[0])
    forged = stun.Message(
        Method.ALLOCATE,
        MessageClass.SUCCESS,
        real.transaction_id,
        {Attr.XOR_RELAYED_ADDRESS: ("6.6.6.6", 6666), Attr.LIFETIME: 600},
    )
    for data in (
        stun.encode(forged),
        stun.encode(forged, key=b"k" * 16),
        stun.encode(forged, key=b"k" * 16, fingerprint=True),
    ):
        assert link.client.handle_datagram(data, SERVER, link.now)  # ours, and dropped
    assert link.client.state is AllocationState.ALLOCATING
    link.drop_down = lambda _data: False
    link.deliver(held[0])
    link.pump()
    assert link.client.relayed_address[0] == RELAY_V4


def test_dual_stack_allocation_gives_both_families():
    link = make_link(client_kwargs={"dual_stack": True})
    (allocated,) = link.of(Allocated)
    assert [ip for ip, _ in allocated.relayed] == [RELAY_V4, RELAY_V6]
    assert link.client.relayed_address_for(("2606:4700::1", 53))[0] == RELAY_V6
    assert link.client.relayed_address_for(PEER)[0] == RELAY_V4
    v6_peer = ("2606:4700::1111", 53)
    link.client.bind_peer(v6_peer, link.now)
    link.pump()
    assert link.to_peer(v6_peer, b"over IPv6")


def test_ipv6_only_allocation_through_an_ipv6_server():
    server = Server(make_config(own_addresses=["2001:db8::1"]), now=T0, unix_now=UNIX_T0)
    client = Allocation(
        ("2001:db8:0::1", 3478), "alice", USERS["alice"], now=T0, family=6, rng=random.Random(1)
    )
    link = Link(server, client, client_address=("2001:db8::200", 4000))
    link.server_address = ("2001:db8::1", 3478)  # compressed, as a socket reports it
    link.pump()
    assert client.relayed_address[0] == RELAY_V6
    assert client.mapped_address == ("2001:db8::200", 4000)


# -- peers, data, and keeping everything alive ----------------------------------------


def test_bind_peer_then_channel_data_both_ways_without_padding():
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    (bound,) = link.of(ChannelBound)
    assert bound.peer == PEER
    assert CHANNEL_MIN <= bound.channel <= CHANNEL_MAX
    assert link.client.channel_for(PEER) == bound.channel
    framed = link.client.encapsulate(PEER, b"hello")
    # RFC 8656 §12.5: over UDP the ChannelData need not be padded to 4 bytes
    assert framed == bound.channel.to_bytes(2, "big") + (5).to_bytes(2, "big") + b"hello"
    assert len(framed) == CHANNEL_DATA_HEADER + 5
    assert link.to_peer(PEER, b"hello")
    link.from_peer(PEER, b"welcome back")
    assert link.at_client == [(PEER, b"welcome back")]


def test_send_indications_carry_data_until_the_channel_is_bound():
    link = make_link()
    held: list[bytes] = []

    def hold_channel_bind(data: bytes) -> bool:
        if _kind(data) == (Method.CHANNEL_BIND, MessageClass.REQUEST):
            held.append(data)
            return True
        return False

    link.drop_up = hold_channel_bind
    assert link.client.encapsulate(PEER, b"too early") is None  # no permission yet
    link.client.bind_peer(PEER, link.now)
    link.pump()
    assert link.client.channel_for(PEER) is None
    framed = link.client.encapsulate(PEER, b"via Send")
    assert _kind(framed) == (Method.SEND, MessageClass.INDICATION)
    assert link.to_peer(PEER, b"via Send")
    link.from_peer(PEER, b"via Data")  # no channel at the server: a Data indication
    assert link.at_client == [(PEER, b"via Data")]
    link.drop_up = lambda _data: False
    link.advance(REQUEST_TIMEOUT + 1)  # the ChannelBind is sent again after its timeout
    assert link.client.channel_for(PEER) is not None


def test_an_hour_of_refreshes_lets_nothing_lapse():
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    checked = 0
    while link.now < T0 + HOUR:
        link.advance(10)
        stats = link.server.stats()
        assert (stats.allocations, stats.permissions, stats.channels) == (1, 1, 1), link.now
        checked += 1
    assert checked == HOUR // 10
    assert link.client.state is AllocationState.ALLOCATED
    # the refresh came at half the lifetime: every ~300 s, 11-12 times in an hour
    # (a stale nonce makes a second request at the same moment: counted once)
    refreshes = sorted({at for at, m in link.requests if m == Method.REFRESH})
    assert 11 <= len(refreshes) <= 13
    assert all(b - a <= DEFAULT_LIFETIME / 2 + 1 for a, b in itertools.pairwise(refreshes))
    # a data exchange at t = 3600 s still works, both ways, on the channel
    assert link.client.channel_for(PEER) is not None
    assert link.to_peer(PEER, b"at one hour")
    link.from_peer(PEER, b"still here")
    assert link.at_client[-1] == (PEER, b"still here")
    assert not link.of(AllocationLost)


def test_permissions_and_channels_are_refreshed_before_they_expire():
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    link.advance(HOUR)
    permission = [
        at for at, m in link.requests if m in (Method.CREATE_PERMISSION, Method.CHANNEL_BIND)
    ]
    channel = [at for at, m in link.requests if m == Method.CHANNEL_BIND]
    # a ChannelBind refreshes the permission too (RFC 8656 §11.2)
    assert max(b - a for a, b in itertools.pairwise(permission)) < PERMISSION_LIFETIME
    assert max(b - a for a, b in itertools.pairwise(channel)) < CHANNEL_LIFETIME
    assert permission[-1] > T0 + HOUR - PERMISSION_LIFETIME
    assert len(link.of(ChannelBound)) == 1  # bound once, then only refreshed


def test_keepalive_binding_every_25_seconds():
    link = make_link()
    link.advance(100)
    bindings = [at - T0 for at, m in link.requests if m == Method.BINDING]
    assert bindings == [0, KEEPALIVE, 2 * KEEPALIVE, 3 * KEEPALIVE, 4 * KEEPALIVE]


def test_a_new_mapped_address_is_reported():
    link = make_link()
    link.client_address = ("192.0.2.200", 50000)  # the NAT rebound the client's port
    link.advance(KEEPALIVE)
    assert link.of(ServerReflexive) == [
        ServerReflexive(CLIENT),
        ServerReflexive(("192.0.2.200", 50000)),
    ]


def test_refused_peer_is_reported_once_and_not_asked_again():
    link = make_link()
    link.client.bind_peer(("10.0.0.1", 9), link.now)  # private: the relay says 403
    link.pump()
    assert link.of(PeerRefused) == [PeerRefused(("10.0.0.1", 9), 403, "Forbidden")]
    asked = len(link.requests)
    link.advance(HOUR)
    assert not [m for _, m in link.requests[asked:] if m != Method.BINDING and m != Method.REFRESH]
    assert link.client.encapsulate(("10.0.0.1", 9), b"x") is None


def test_unbind_peer_lets_channel_and_permission_lapse():
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    link.client.unbind_peer(PEER)
    assert link.client.channel_for(PEER) is None
    assert link.client.encapsulate(PEER, b"x") is None
    link.from_peer(PEER, b"late")  # still bound at the server: still unwrapped
    assert link.at_client == [(PEER, b"late")]
    link.advance(CHANNEL_LIFETIME + 1)
    stats = link.server.stats()
    assert (stats.permissions, stats.channels) == (0, 0)
    since = T0 + 1
    assert (
        link.count(Method.CHANNEL_BIND, since) == link.count(Method.CREATE_PERMISSION, since) == 0
    )
    # binding it again later works, on the same channel number
    link.client.bind_peer(PEER, link.now)
    link.pump()
    assert link.to_peer(PEER, b"again")


# -- credentials ------------------------------------------------------------------------


def test_credential_update_rolls_the_allocation_over_before_they_expire():
    """The server ties an allocation to its username (RFC 8656 §5), and a TURN REST
    username dies at its expiry: new credentials mean a new allocation, made while
    the old credentials still work."""
    old_expiry = UNIX_T0 + 1000
    username, password = rest_api_credentials(AUTH_SECRET, "agent", old_expiry)
    link = make_link(
        username,
        password,
        client_kwargs={"credentials_expire": T0 + (old_expiry - UNIX_T0)},
    )
    link.client.bind_peer(PEER, link.now)
    link.pump()
    first = link.client.relayed_address
    link.advance(200)
    fresh_expiry = UNIX_T0 + 20_000
    new_username, new_password = rest_api_credentials(AUTH_SECRET, "agent", fresh_expiry)
    link.client.update_credentials(
        new_username, new_password, expires=T0 + (fresh_expiry - UNIX_T0)
    )
    link.advance(HOUR)  # far past the old credentials' expiry
    assert link.client.state is AllocationState.ALLOCATED
    allocated = link.of(Allocated)
    assert len(allocated) == 2
    assert allocated[1].relayed != (first,)
    assert link.server.stats().allocations == 1  # the old one was deleted, not left to lapse
    assert link.to_peer(PEER, b"with the new credentials")
    link.from_peer(PEER, b"and back")
    assert link.at_client[-1] == (PEER, b"and back")
    assert not link.of(AllocationLost)
    assert link.server.stats().responses_by_code.get(401, 0) == 1  # only the first challenge


def test_credentials_of_unknown_expiry_roll_over_at_the_next_refresh():
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    link.advance(10)
    link.client.update_credentials("bob", USERS["bob"])  # no expiry given
    link.advance(DEFAULT_LIFETIME / 2 - 10 - 1)
    assert len(link.of(Allocated)) == 1  # not before the Refresh is due
    link.advance(2)
    assert len(link.of(Allocated)) == 2
    assert link.server.stats().allocations == 1
    assert link.to_peer(PEER, b"as bob")
    link.advance(HOUR)
    assert len(link.of(Allocated)) == 2  # once: the new credentials stay
    assert link.client.state is AllocationState.ALLOCATED


def test_credentials_that_expire_unreplaced_lose_the_allocation():
    expiry = UNIX_T0 + 100
    username, password = rest_api_credentials(AUTH_SECRET, "agent", expiry)
    link = make_link(username, password)
    link.advance(DEFAULT_LIFETIME)
    assert link.client.state is AllocationState.LOST
    assert link.of(AllocationLost)[0].code == 401


# -- losing the server -----------------------------------------------------------------


def test_a_restarted_server_is_noticed_as_a_lost_allocation():
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    # same address, new process: new nonce secret, no allocations
    link.server = Server(make_config(nonce_secret=b"m" * 32), now=link.now, unix_now=UNIX_T0)
    link.server.listening_on([SERVER])
    link.advance(PERMISSION_LIFETIME)
    (lost,) = link.of(AllocationLost)
    assert lost.code == 437  # RFC 8656 §7: Allocation Mismatch, after a 438 retry
    assert link.client.state is AllocationState.LOST
    assert link.client.encapsulate(PEER, b"x") is None
    assert link.client.poll_timeout() is None


def test_an_unreachable_server_loses_the_allocation_when_it_expires():
    link = make_link()
    link.drop_up = lambda _data: True
    link.advance(DEFAULT_LIFETIME - 1)
    assert link.client.state is AllocationState.ALLOCATED  # refreshes are still retried
    link.advance(2)
    assert link.of(AllocationLost) == [AllocationLost(None, "the allocation expired unrefreshed")]


def test_close_deletes_the_allocation():
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    link.client.close(link.now)
    link.pump()
    assert link.of(AllocationClosed) == [AllocationClosed()]
    assert link.client.state is AllocationState.CLOSED
    assert link.server.stats().allocations == 0
    assert link.client.poll_timeout() is None


def test_close_while_allocating_deletes_what_the_server_made():
    link = make_link(pump=False)
    for _ in range(3):  # Binding, unsigned Allocate -> 401 -> signed Allocate queued
        link.server.handle_client_datagram(link.client.poll_transmit().data, CLIENT, link.now)
        while (tx := link.server.poll_transmit()) is not None:
            link.deliver(tx.data)
        if link.client.state is not AllocationState.ALLOCATING:
            break
    link.client.close(link.now)
    link.pump()
    assert link.client.state is AllocationState.CLOSED
    assert link.server.stats().allocations == 0


# -- garbage ----------------------------------------------------------------------------


def _snapshot(client: Allocation) -> tuple:
    return (
        client.state,
        client.relayed_addresses,
        client.mapped_address,
        client.poll_timeout(),
        client.channel_for(PEER),
        client.lifetime,
    )


@pytest.fixture(scope="module")
def bound_link() -> Link:
    link = make_link()
    link.client.bind_peer(PEER, link.now)
    link.pump()
    return link


GARBAGE = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
SOURCES = st.sampled_from([SERVER, ("198.51.100.1", 3479), PEER, ("2001:db8::1", 3478)])


@GARBAGE
@given(data=st.binary(max_size=200), source=SOURCES)
def test_garbage_never_raises_and_changes_nothing(bound_link, data, source):
    client = bound_link.client
    before = _snapshot(client)
    assert client.handle_datagram(data, source, bound_link.now) is False
    unwrapped = client.decapsulate(data, source)
    channel = client.channel_for(PEER)
    if unwrapped is not None:  # only well-formed ChannelData on our channel from the server
        assert source == SERVER
        assert (data[0] << 8) | data[1] == channel
        assert unwrapped == (PEER, data[4 : 4 + ((data[2] << 8) | data[3])])
    assert _snapshot(client) == before
    assert client.poll_transmit() is None
    assert client.poll_event() is None


@GARBAGE
@given(
    method=st.sampled_from(list(Method)),
    klass=st.sampled_from(list(MessageClass)),
    attributes=st.dictionaries(
        st.sampled_from([Attr.XOR_PEER_ADDRESS, Attr.DATA, Attr.LIFETIME, Attr.ERROR_CODE]),
        st.sampled_from([("8.8.8.8", 1), b"x", 5, stun.ErrorCode(437, "x")]),
    ),
)
def test_wellformed_strangers_never_raise_and_change_nothing(bound_link, method, klass, attributes):
    client = bound_link.client
    before = _snapshot(client)
    message = stun.Message(method, klass, random.randbytes(12), dict(attributes))
    try:
        data = stun.encode(message, fingerprint=True)
    except stun.LocalProtocolError:
        return
    assert client.handle_datagram(data, SERVER, bound_link.now) is False  # no such transaction
    result = client.decapsulate(data, SERVER)
    if result is not None:  # a Data indication from a permitted peer
        assert (method, klass) == (Method.DATA, MessageClass.INDICATION)
    assert _snapshot(client) == before
    assert client.poll_transmit() is None
    assert client.poll_event() is None


def test_data_indication_from_a_peer_without_permission_is_dropped(bound_link):
    indication = stun.Message(
        Method.DATA,
        MessageClass.INDICATION,
        b"d" * 12,
        {Attr.XOR_PEER_ADDRESS: ("9.9.9.9", 1), Attr.DATA: b"sneaky"},
    )
    assert bound_link.client.decapsulate(stun.encode(indication), SERVER) is None
    indication.attributes[Attr.XOR_PEER_ADDRESS] = PEER
    assert bound_link.client.decapsulate(stun.encode(indication), SERVER) == (PEER, b"sneaky")
    assert bound_link.client.decapsulate(stun.encode(indication), PEER) is None  # not the server
