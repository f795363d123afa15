"""Test helpers: ICE agents on a simulated network driven by a virtual clock.

The network knows sockets (an agent's host bases) in realms: ``"internet"`` or
a LAN name. A LAN reaches the internet through its :class:`Nat`, if it has one.
Relays are addresses on the internet owned by one agent: a datagram an agent
sends *from* its relayed address leaves the relay with that address as source;
one sent *to* it arrives at the agent with ``local`` = the relayed address
(what a shell does after unwrapping ChannelData). Every datagram takes
``latency`` seconds; ``drop`` decides about loss.

``run`` moves the clock from deadline to deadline (agents' timers and
datagram arrivals), the way an asyncio shell would, draining every output
after every input.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from zerogate.proto import stun
from zerogate.proto.ice import (
    Candidate,
    Event,
    IceAgent,
    IceConfig,
    PairNominated,
    Transmit,
    host_candidate,
    relayed_candidate,
    server_reflexive_candidate,
)
from zerogate.proto.net import Endpoint

NOW0 = 1000.0
INTERNET = "internet"
STUN_SERVER: Endpoint = ("203.0.113.200", 3478)
A_UFRAG, A_PWD = "cli1", "clientclientclient0001"
B_UFRAG, B_PWD = "gw01", "gatewaygatewaygateway1"


@dataclass
class Wire:
    """One datagram an agent sent, and what became of it."""

    at: float
    sender: str
    tx: Transmit
    delivered_to: str | None = None
    dropped: bool = False

    @property
    def message(self) -> stun.Message:
        return stun.decode(self.tx.data)


@dataclass
class Arrival:
    at: float
    seq: int
    receiver: str
    data: bytes
    source: Endpoint
    local: Endpoint

    def __lt__(self, other: Arrival) -> bool:
        return (self.at, self.seq) < (other.at, other.seq)


@dataclass
class Nat:
    """A NAT in front of a LAN. ``symmetric``: a new public port per destination
    (endpoint-dependent mapping); otherwise one per private endpoint. Filtering is
    always address-and-port dependent: only replies from where we sent pass."""

    public_ip: str
    symmetric: bool = False
    next_port: int = 40000
    mappings: dict[tuple[Endpoint, Endpoint | None], Endpoint] = field(default_factory=dict)
    inside: dict[Endpoint, Endpoint] = field(default_factory=dict)  # public -> private
    allowed: set[tuple[Endpoint, Endpoint]] = field(default_factory=set)  # (public, remote)

    def outbound(self, private: Endpoint, destination: Endpoint) -> Endpoint:
        key = (private, destination if self.symmetric else None)
        public = self.mappings.get(key)
        if public is None:
            public = (self.public_ip, self.next_port)
            self.next_port += 1
            self.mappings[key] = public
            self.inside[public] = private
        self.allowed.add((public, destination))
        return public

    def inbound(self, public: Endpoint, remote: Endpoint) -> Endpoint | None:
        if (public, remote) not in self.allowed:
            return None
        return self.inside.get(public)


@dataclass
class Network:
    latency: float = 0.005
    now: float = NOW0
    agents: dict[str, IceAgent] = field(default_factory=dict)
    sockets: dict[Endpoint, tuple[str, str]] = field(default_factory=dict)  # base -> (agent, realm)
    nats: dict[str, Nat] = field(default_factory=dict)  # realm -> its NAT
    relays: dict[Endpoint, str] = field(default_factory=dict)  # relayed address -> agent
    wire: list[Wire] = field(default_factory=list)
    events: dict[str, list[tuple[float, Event]]] = field(default_factory=dict)
    drop: Callable[[Wire], bool] = field(default=lambda _w: False)
    _in_flight: list[Arrival] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    # -- building the network ----------------------------------------------
    def add_agent(self, name: str, agent: IceAgent) -> IceAgent:
        self.agents[name] = agent
        self.events[name] = []
        return agent

    def host(self, name: str, address: Endpoint, realm: str = INTERNET, **kw: int) -> Candidate:
        """Bind a socket for ``name``; its host candidate."""
        self.sockets[address] = (name, realm)
        return host_candidate(address, **kw)

    def srflx(self, name: str, base: Endpoint) -> Candidate:
        """What a STUN server on the internet sees for ``base`` (as gathering would)."""
        _owner, realm = self.sockets[base]
        mapped = self.nats[realm].outbound(base, STUN_SERVER) if realm != INTERNET else base
        return server_reflexive_candidate(mapped, base=base, server_ip=STUN_SERVER[0])

    def relay(
        self, name: str, relayed: Endpoint, mapped: Endpoint = ("192.0.2.99", 9)
    ) -> Candidate:
        """An allocation for ``name`` whose relayed address is ``relayed``."""
        self.relays[relayed] = name
        return relayed_candidate(relayed, mapped=mapped, server_ip=relayed[0])

    def unbind(self, address: Endpoint) -> None:
        self.sockets.pop(address, None)
        self.relays.pop(address, None)

    # -- moving datagrams ----------------------------------------------------
    def route(self, sender: str, tx: Transmit) -> tuple[str, Endpoint, Endpoint] | None:
        """``(receiver, local base, apparent source)`` or ``None`` (unroutable / filtered)."""
        if tx.source in self.relays:
            assert self.relays[tx.source] == sender, f"{sender} used {tx.source}"
            realm, source = INTERNET, tx.source
        else:
            assert tx.source in self.sockets, f"{sender} sent from unknown base {tx.source}"
            owner, realm = self.sockets[tx.source]
            assert owner == sender, f"{sender} sent from {owner}'s base {tx.source}"
            source = tx.source
        destination = tx.destination
        target = self.sockets.get(destination)
        if target is not None and target[1] == realm:
            return target[0], destination, source
        if realm != INTERNET:
            nat = self.nats.get(realm)
            if nat is None:
                return None
            source = nat.outbound(source, destination)
        if target is not None and target[1] == INTERNET:
            return target[0], destination, source
        if destination in self.relays:
            return self.relays[destination], destination, source
        for lan, nat in self.nats.items():
            private = nat.inbound(destination, source)
            if private is not None and self.sockets.get(private, ("", ""))[1] == lan:
                return self.sockets[private][0], private, source
        return None

    def pump(self) -> None:
        """Drain every agent's datagrams (into the network) and events."""
        for name, agent in self.agents.items():
            while (tx := agent.poll_transmit()) is not None:
                self._send(name, tx)
            while (ev := agent.poll_event()) is not None:
                self.events[name].append((self.now, ev))

    def _send(self, sender: str, tx: Transmit) -> None:
        wire = Wire(self.now, sender, tx)
        self.wire.append(wire)
        routed = None if self.drop(wire) else self.route(sender, tx)
        if routed is None:
            wire.dropped = True
            return
        receiver, local, source = routed
        wire.delivered_to = receiver
        arrival = Arrival(
            self.now + self.latency, next(self._seq), receiver, tx.data, source, local
        )
        heapq.heappush(self._in_flight, arrival)

    def next_deadline(self) -> float | None:
        times = [t for a in self.agents.values() if (t := a.poll_timeout()) is not None]
        if self._in_flight:
            times.append(self._in_flight[0].at)
        return min(times, default=None)

    def run(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        """Advance the clock by ``seconds`` (or until ``until()`` holds)."""
        self.run_until(self.now + seconds, until)

    def run_until(self, end: float, until: Callable[[], bool] | None = None) -> None:
        self.pump()
        for _ in range(2_000_000):
            if until is not None and until():
                return
            deadline = self.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            while self._in_flight and self._in_flight[0].at <= self.now:
                arrival = heapq.heappop(self._in_flight)
                agent = self.agents[arrival.receiver]
                agent.handle_stun(arrival.data, arrival.source, arrival.local, self.now)
                self.pump()
            for agent in self.agents.values():
                timeout = agent.poll_timeout()
                if timeout is not None and timeout <= self.now:
                    agent.handle_timeout(self.now)
                    self.pump()
        else:
            raise AssertionError("the simulation does not settle (a timer that never advances?)")
        self.now = max(self.now, end)

    # -- looking at what happened ---------------------------------------------
    def nominated(self, name: str) -> list[tuple[float, PairNominated]]:
        return [(t, ev) for t, ev in self.events[name] if isinstance(ev, PairNominated)]

    def of_type(self, name: str, kind: type) -> list[tuple[float, Event]]:
        return [(t, ev) for t, ev in self.events[name] if isinstance(ev, kind)]

    def connected(self) -> bool:
        return all(a.selected_pair is not None for a in self.agents.values())

    def sent(self, sender: str) -> list[Wire]:
        return [w for w in self.wire if w.sender == sender]

    def signal(self, owner: str, candidate: Candidate, *, base: Endpoint | None = None) -> None:
        """``owner`` learns its local candidate; every other agent gets it by signaling."""
        self.agents[owner].add_local_candidate(candidate, self.now, base=base)
        for name, agent in self.agents.items():
            if name != owner:
                agent.add_remote_candidate(candidate, self.now)
        self.pump()

    def withdraw(self, owner: str, candidate: Candidate) -> None:
        """``owner`` lost ``candidate`` and tells the others (trickle invalidation)."""
        self.unbind(candidate.address)
        self.agents[owner].remove_local_candidate(candidate, self.now)
        for name, agent in self.agents.items():
            if name != owner:
                agent.remove_remote_candidate(candidate, self.now)
        self.pump()


def make_agent(
    *,
    controlling: bool,
    seed: int,
    local: tuple[str, str],
    remote: tuple[str, str],
    now: float = NOW0,
    config: IceConfig | None = None,
    tie_breaker: int | None = None,
) -> IceAgent:
    return IceAgent(
        controlling=controlling,
        local_ufrag=local[0],
        local_pwd=local[1],
        remote_ufrag=remote[0],
        remote_pwd=remote[1],
        now=now,
        config=config,
        rng=random.Random(seed),
        tie_breaker=tie_breaker,
    )


def make_network(
    *,
    a_controlling: bool = True,
    b_controlling: bool = False,
    latency: float = 0.005,
    config: IceConfig | None = None,
    tie_breakers: tuple[int | None, int | None] = (None, None),
    seed: int = 1,
) -> Network:
    """Agents ``a`` (the client, controlling) and ``b`` (the gateway, controlled)."""
    net = Network(latency=latency)
    net.add_agent(
        "a",
        make_agent(
            controlling=a_controlling,
            seed=seed,
            local=(A_UFRAG, A_PWD),
            remote=(B_UFRAG, B_PWD),
            config=config,
            tie_breaker=tie_breakers[0],
        ),
    )
    net.add_agent(
        "b",
        make_agent(
            controlling=b_controlling,
            seed=seed + 1000,
            local=(B_UFRAG, B_PWD),
            remote=(A_UFRAG, A_PWD),
            config=config,
            tie_breaker=tie_breakers[1],
        ),
    )
    return net


def same_path(net: Network) -> bool:
    """Both agents selected the two ends of one path (as far as each can see)."""
    a, b = net.agents["a"].selected_pair, net.agents["b"].selected_pair
    if a is None or b is None:
        return False
    a_seen_by_b = b.remote.address
    b_seen_by_a = a.remote.address
    a_out = a.valid_local.address if a.valid_local is not None else a.base
    b_out = b.valid_local.address if b.valid_local is not None else b.base
    return a_out == a_seen_by_b and b_out == b_seen_by_a
