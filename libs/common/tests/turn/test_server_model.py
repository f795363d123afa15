"""Random sequences of client operations on a virtual clock: the core never leaks state.

After any sequence, once every lifetime has run out (allocation 3600 s at most,
channel cooldown 300 s, retransmission cache 40 s, reservations 30 s), the server
must hold nothing and want no timer.
"""

import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from zerogate.proto.stun import Attr
from zerogate.proto.turn import Server, ServerConfig

from .conftest import Harness

MAX_LIFETIME = 3600
COOLDOWN = 300
LONGEST_WAIT = MAX_LIFETIME + COOLDOWN + 60

CLIENTS = [("192.0.2.1", 1000), ("192.0.2.1", 1001), ("2001:db8::9", 7)]
PEERS = [("8.8.8.8", 1), ("8.8.8.8", 2), ("1.1.1.1", 3), ("2606:4700::1", 4), ("10.0.0.1", 5)]
CHANNELS = [0x4000, 0x4001, 0x4FFF]


class TurnModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = ServerConfig(
            realm="zerogate.test",
            nonce_secret=b"n" * 32,
            static_users={"alice": "alice-password", "bob": "bob-password"},
            relay_addresses_v4=["198.51.100.10"],
            relay_addresses_v6=["2001:db8:100::10"],
            relay_port_min=50000,
            relay_port_max=50003,
            max_allocations_per_user=2,
        )
        self.h = Harness(Server(config, now=1000.0, unix_now=1.7e9))
        self.clients = {
            address: self.h.client(address=address, username=user)
            for address, user in zip(CLIENTS, ["alice", "alice", "bob"], strict=True)
        }
        self.relays: dict[tuple[str, int], list[tuple[str, int]]] = {}

    @rule(client=st.sampled_from(CLIENTS), dual=st.booleans(), even=st.booleans())
    def allocate(self, client, dual, even):
        attributes = {}
        if dual:
            attributes[Attr.ADDITIONAL_ADDRESS_FAMILY] = 0x02
        if even:
            attributes[Attr.EVEN_PORT] = True
        response = self.clients[client].allocate(attributes)
        if self.h.code(response) == 200:
            self.relays[client] = response.get_all_addresses(Attr.XOR_RELAYED_ADDRESS)

    @rule(client=st.sampled_from(CLIENTS), lifetime=st.sampled_from([None, 0, 700, 99999]))
    def refresh(self, client, lifetime):
        self.clients[client].refresh(lifetime)

    @rule(client=st.sampled_from(CLIENTS), peer=st.sampled_from(PEERS))
    def permit(self, client, peer):
        self.clients[client].permit(peer)

    @rule(
        client=st.sampled_from(CLIENTS),
        channel=st.sampled_from(CHANNELS),
        peer=st.sampled_from(PEERS),
    )
    def bind(self, client, channel, peer):
        self.clients[client].bind(channel, peer)

    @rule(client=st.sampled_from(CLIENTS), peer=st.sampled_from(PEERS))
    def send(self, client, peer):
        for transmit in self.clients[client].send_indication(peer, b"data"):
            assert transmit.destination == peer
            assert transmit.source in self.relays.get(client, [])

    @rule(client=st.sampled_from(CLIENTS), channel=st.sampled_from(CHANNELS))
    def channel_data(self, client, channel):
        data = struct.pack("!HH", channel, 3) + b"abc"
        routed = self.h.server.channel_to_peer(data, client)
        if routed is not None:
            assert routed[0] in self.relays.get(client, [])
            assert bytes(routed[2]) == b"abc"

    @precondition(lambda self: self.relays)
    @rule(data=st.data(), peer=st.sampled_from(PEERS))
    def from_peer(self, data, peer):
        client = data.draw(st.sampled_from(sorted(self.relays)))
        for relay in self.relays[client]:
            for transmit in self.h.peer_datagram(relay, b"reply", peer):
                assert transmit.source is None

    @rule(seconds=st.sampled_from([1, 30, 299, 301, 601, 3601]))
    def wait(self, seconds):
        self.h.advance(seconds)

    @invariant()
    def counts_are_consistent(self):
        stats = self.h.server.stats()
        assert 0 <= stats.allocations <= len(CLIENTS)
        assert stats.channels <= stats.allocations * len(CHANNELS)

    def teardown(self):
        self.h.advance(LONGEST_WAIT)
        assert self.h.server.stats().allocations == 0
        assert self.h.server.state_size() == 0
        assert self.h.server.poll_timeout() is None


TurnModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_turn_model = TurnModel.TestCase
