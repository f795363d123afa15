"""ICE, TURN and WireGuard on one UDP socket: the agents' connection engine.

A :class:`Node` hosts, next to a :class:`~zerogate.dataplane.interface.WireGuardInterface`:

* one sans-IO :class:`~zerogate.proto.ice.IceAgent` per remote agent (a
  gateway for a client, a client for a gateway), all on the interface's
  UDP socket;
* one sans-IO TURN :class:`~zerogate.proto.turn.client.Allocation` per relay
  and address family, also on that socket;
* the WireGuard peer of each connection, whose endpoint ICE alone decides.

Datagrams are told apart by their first bytes (DESIGN.md, "One UDP socket"):
WireGuard (type 1–4 and three zero bytes) goes straight to the core in the
interface's batched loop; everything else comes here through
:meth:`Node.handle_datagram`: STUN (the magic cookie at bytes 4–8) is an ICE
check or answer, or a TURN response from a relay; ChannelData (0x40–0x4F)
from a relay carries a peer's datagram, WireGuard or ICE.

A peer's WireGuard endpoint is always the *remote* address of the selected
pair. Over a direct pair datagrams go there from the shared socket exactly as
without ICE; over a relayed pair a :class:`RelayedPath` frames them as
ChannelData to the relay, equal-sized runs still leaving as one GSO
``sendmsg``. What arrives through the relay is unframed and handed to the
core as if it came from that remote address, so a renomination between a
direct and a relayed pair changes nothing the core sees.

The shell order is the conventions' one: feed input, drain the cores'
transmits and events, re-arm the one timer (a heap of the cores' deadlines).

Host candidates: one per address family, the address the kernel picks to
reach the relays (or any public address) from the interface's socket; the
socket is bound to the wildcard, so that is where checks leave from.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import ipaddress
import itertools
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zerogate.common.messages.signaling import RelayInfo
from zerogate.dataplane.interface import WireGuardInterface
from zerogate.dataplane.sdp import CandidateSyntaxError, from_sdp, to_sdp
from zerogate.dataplane.udp import GSO_MAX_BYTES, SO_MARK, RunSender
from zerogate.proto import stun
from zerogate.proto.ice import (
    AgentState,
    Candidate,
    CandidatePair,
    CandidateType,
    Disconnected,
    Failed,
    IceAgent,
    IceConfig,
    NominatedPairRemoved,
    PairNominated,
    host_candidate,
    is_binding_request,
    relayed_candidate,
    server_reflexive_candidate,
    target_ufrag,
    transaction_id,
)
from zerogate.proto.net import Endpoint
from zerogate.proto.turn import client as turn

log = logging.getLogger(__name__)

#: Where to aim the routing probe for host candidates when no relay is known
#: (TEST-NET-1 / documentation prefixes: nothing is sent, only a route looked up).
ROUTE_PROBE = {4: ("192.0.2.1", 9), 6: ("2001:db8::1", 9)}
#: Local preference of a host candidate of each family (IPv6 first, RFC 8421 style).
LOCAL_PREFERENCE = {6: 65535, 4: 65534}
#: ICE timing of the agents: few pairs, so a short pacing interval; nominate the
#: first valid pair almost at once (renomination moves to a better one later, and
#: a relayed pair carries traffic meanwhile).
AGENT_ICE = IceConfig(ta=0.005, nomination_settle=0.02)
#: Candidates that arrive before their connection are kept this long (seconds) ...
EARLY_CANDIDATE_TTL = 30.0
#: ... for this many peers, this many batches each.
EARLY_CANDIDATE_PEERS = 1024
EARLY_CANDIDATE_BATCHES = 32
#: The socket's wildcard addresses, one per family.
WILDCARD = {4: "0.0.0.0", 6: "::"}  # noqa: S104 - the interface's socket is bound to them


def _family(host: str) -> int:
    return 6 if ":" in host else 4


def is_wireguard(data: bytes | memoryview) -> bool:
    """Message types 1–4 followed by three reserved zero bytes (whitepaper §5.4)."""
    return len(data) >= 4 and 1 <= data[0] <= 4 and not (data[1] or data[2] or data[3])


def is_relay(candidate: Candidate) -> bool:
    return candidate.type is CandidateType.RELAYED


def path_kind(pair: CandidatePair) -> str:
    """``relayed`` when either end of the pair is a TURN allocation, else ``direct``."""
    return "relayed" if pair.relayed or is_relay(pair.remote) else "direct"


def parse_host_port(text: str) -> Endpoint:
    """``host:port`` or ``[v6]:port`` as an endpoint."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(host)), int(port)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PathSelected:
    """ICE selected (or changed) the path to ``peer_id``; WireGuard uses it from now on."""

    peer_id: str
    pair: CandidatePair
    relay_id: str | None
    first: bool


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection to ``peer_id`` failed or lost consent; its WireGuard peer is gone."""

    peer_id: str
    reason: str


NodeEvent = PathSelected | ConnectionLost


# --------------------------------------------------------------------------- relayed path


class RelayedPath:
    """Where a peer's datagrams go over a relayed pair: ChannelData through one allocation."""

    def __init__(self, node: Node, relay: _Allocation, remote: Endpoint) -> None:
        self._node = node
        self._relay = relay
        self._remote = remote

    @property
    def endpoint(self) -> Endpoint:
        return self._remote

    @property
    def relay_id(self) -> str:
        return self._relay.relay_id

    def send(self, data: bytes) -> None:
        self._node.send_relayed(self._relay, self._remote, data)

    def send_many(self, batch: Sequence[bytes]) -> None:
        core = self._relay.core
        channel = core.channel_for(self._remote)
        if channel is None:
            for data in batch:
                self.send(data)
            return
        prefix = channel.to_bytes(2, "big")
        frames = [b"".join((prefix, len(d).to_bytes(2, "big"), d)) for d in batch]
        self._node.send_frames(self._relay.server, frames)


# --------------------------------------------------------------------------- per-peer state


@dataclass(eq=False)
class _Allocation:
    relay_id: str
    server: Endpoint
    core: turn.Allocation
    relayed: Endpoint | None = None
    mapped: Endpoint | None = None
    candidates: list[Candidate] = field(default_factory=list)


@dataclass(eq=False)
class _Connection:
    peer_id: str
    public_key: bytes
    agent: IceAgent
    created: float
    pair: CandidatePair | None = None
    relay_id: str | None = None
    connected_at: float | None = None
    context: Any = None  # the trace context this connection was set up in


class Node:
    """Connections to remote agents over the interface's one UDP socket.

    ``on_candidates(peer_id, lines)`` and ``on_invalidated(peer_id, lines)``
    trickle our candidates through signaling; ``on_event`` hears
    :data:`NodeEvent` facts. Create it after the interface started.
    """

    def __init__(
        self,
        iface: WireGuardInterface,
        *,
        controlling: bool,
        on_candidates: Callable[[str, list[str]], None],
        on_invalidated: Callable[[str, list[str]], None],
        on_event: Callable[[NodeEvent], None],
        ice_config: IceConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        assert iface.udp is not None, "start the interface first"
        self.iface = iface
        self.controlling = controlling
        self._on_candidates = on_candidates
        self._on_invalidated = on_invalidated
        self._on_event = on_event
        self._ice_config = ice_config or AGENT_ICE
        self._clock = clock
        self._rng = rng or random.Random()
        self._sender = RunSender(iface.udp.gso)
        self.connections: dict[str, _Connection] = {}
        self._by_ufrag: dict[str, _Connection] = {}
        self._by_public_key: dict[bytes, _Connection] = {}
        self.relays: dict[str, RelayInfo] = {}
        self._allocations: list[_Allocation] = []
        self._by_server: dict[Endpoint, _Allocation] = {}
        self._by_relayed: dict[Endpoint, _Allocation] = {}
        self._hosts: dict[int, Candidate] = {}
        #: candidates that arrived before their connection: peer -> [(time, add?, lines)]
        self._early: dict[str, list[tuple[float, bool, list[str]]]] = {}
        #: relayed paths set up for answers before ICE chose (see _relayed_payload)
        self._provisional: set[Endpoint] = set()
        self._heap: list[tuple[float, int, object]] = []
        self._deadline: dict[int, float] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self.refresh_host_candidates()
        iface.set_demux(self.handle_datagram)

    # ------------------------------------------------------------------ sockets
    @property
    def port(self) -> int:
        assert self.iface.udp is not None
        return self.iface.udp.port

    def send_raw(self, destination: Endpoint, data: bytes) -> None:
        udp = self.iface.udp
        if udp is not None:
            udp.send(destination, data)

    def send_relayed(self, relay: _Allocation, peer: Endpoint, data: bytes) -> None:
        """``data`` to ``peer`` through ``relay``'s allocation.

        A peer the allocation was not told about yet (a peer-reflexive address
        learned from a check that came through the relay) is bound on the spot:
        its IP already has a permission, so a Send indication goes at once and a
        channel follows.
        """
        core = relay.core
        framed = core.encapsulate(peer, data)
        if framed is None:
            core.bind_peer(peer, self._clock())
            framed = core.encapsulate(peer, data)
            self._drain_allocation(relay)
        if framed is not None:
            self.send_raw(relay.server, framed)

    def send_frames(self, destination: Endpoint, frames: list[bytes]) -> None:
        udp = self.iface.udp
        if udp is None:
            return
        sock = udp.socket_for(destination[0])
        if sock is None:
            return
        udp.send_errors += self._sender.send(sock, destination, frames, GSO_MAX_BYTES)

    def refresh_host_candidates(self) -> None:
        """One host candidate per family: the source address toward the relays (or the world)."""
        udp = self.iface.udp
        assert udp is not None
        targets: dict[int, Endpoint] = dict(ROUTE_PROBE)
        for alloc in self._allocations:
            targets[_family(alloc.server[0])] = alloc.server
        hosts: dict[int, Candidate] = {}
        for version, target in targets.items():
            if (version == 6 and udp.v6 is None) or not self._routable(version, target):
                continue
            source = self._source_for(version, target, self.iface.fwmark)
            if source is None:
                continue
            hosts[version] = host_candidate(
                (source, self.port), local_preference=LOCAL_PREFERENCE[version]
            )
        if hosts == self._hosts:
            return
        old = set(self._hosts.values())
        self._hosts = hosts
        self._local_changed(
            added=[c for c in hosts.values() if c not in old],
            removed=[c for c in old if c not in hosts.values()],
        )

    @staticmethod
    def _routable(version: int, target: Endpoint) -> bool:
        return _family(target[0]) == version

    @staticmethod
    def _source_for(version: int, target: Endpoint, fwmark: int | None = None) -> str | None:
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                if fwmark:  # route as the interface's marked socket does
                    probe.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
                probe.connect(target)
                source = str(probe.getsockname()[0])
        except OSError:
            return None
        ip = ipaddress.ip_address(source)
        loopback_target = ipaddress.ip_address(target[0]).is_loopback
        if ip.is_unspecified or (ip.is_loopback and not loopback_target):
            return None
        return source

    def local_candidates(self) -> list[Candidate]:
        out = list(self._hosts.values())
        for alloc in self._allocations:
            out.extend(alloc.candidates)
        return out

    def _local_changed(self, *, added: list[Candidate], removed: list[Candidate]) -> None:
        now = self._clock()
        for conn in self.connections.values():
            gone = [c for c in removed if conn.agent.remove_local_candidate(c, now)]
            new = [c for c in added if self._add_local(conn, c, now)]
            if new:
                self._on_candidates(conn.peer_id, [to_sdp(c) for c in new])
            if gone:
                self._on_invalidated(conn.peer_id, [to_sdp(c) for c in gone])
            self._drain(conn)

    def _add_local(self, conn: _Connection, candidate: Candidate, now: float) -> bool:
        base: Endpoint | None = None
        if candidate.type is CandidateType.SERVER_REFLEXIVE:
            host = self._hosts.get(candidate.ip_version)
            if host is None:
                return False
            base = host.address
        return conn.agent.add_local_candidate(candidate, now, base=base)

    # ------------------------------------------------------------------ relays
    def set_relays(self, relays: Sequence[RelayInfo]) -> None:
        """Allocate on these relays (fresh credentials update existing allocations)."""
        now = self._clock()
        wanted = {relay.id: relay for relay in relays}
        for relay_id in [rid for rid in self.relays if rid not in wanted]:
            self.drop_relay(relay_id)
        for relay in relays:
            known = relay.id in self.relays
            self.relays[relay.id] = relay
            password = relay.password.get_secret_value()
            if known:
                for alloc in self._allocations:
                    if alloc.relay_id == relay.id:
                        alloc.core.update_credentials(
                            relay.username, password, expires=self._expires(relay, now)
                        )
                        self._drain_allocation(alloc)
                continue
            for text in relay.addresses:
                try:
                    server = parse_host_port(text)
                except ValueError:
                    continue
                if self.iface.udp is None or self.iface.udp.socket_for(server[0]) is None:
                    continue
                core = turn.Allocation(
                    server,
                    relay.username,
                    password,
                    now=now,
                    rng=self._rng,
                    family=_family(server[0]),
                    credentials_expire=self._expires(relay, now),
                )
                alloc = _Allocation(relay.id, server, core)
                self._allocations.append(alloc)
                self._by_server[server] = alloc
                self._drain_allocation(alloc)
        self.refresh_host_candidates()

    @staticmethod
    def _expires(relay: RelayInfo, now: float) -> float:
        """When the relay stops taking these credentials, on the monotonic clock."""
        left = (relay.expires_at - datetime.now(UTC)).total_seconds()
        return now + max(0.0, left)

    def drop_relay(self, relay_id: str) -> None:
        """Forget a relay that left: its candidates are invalidated, its pairs die."""
        self.relays.pop(relay_id, None)
        now = self._clock()
        for alloc in [a for a in self._allocations if a.relay_id == relay_id]:
            self._allocations.remove(alloc)
            self._by_server.pop(alloc.server, None)
            if alloc.relayed is not None:
                self._by_relayed.pop(alloc.relayed, None)
            with contextlib.suppress(Exception):
                alloc.core.close(now)
                self._drain_allocation(alloc)
            self._local_changed(added=[], removed=alloc.candidates)
            alloc.candidates = []

    # ------------------------------------------------------------------ connections
    def connect(
        self,
        peer_id: str,
        *,
        public_key: bytes,
        preshared_key: bytes | None,
        allowed_ips: Sequence[Any],
        local_ufrag: str,
        local_pwd: str,
        remote_ufrag: str,
        remote_pwd: str,
        context: Any = None,
    ) -> None:
        """Start (or restart) the connection to ``peer_id``; candidates start trickling."""
        self.disconnect(peer_id, reason=None)
        now = self._clock()
        device = self.iface.device
        if public_key in device.peers:
            device.remove_peer(public_key)
        device.add_peer(
            public_key,
            preshared_key=preshared_key,
            allowed_ips=list(allowed_ips),
            endpoint=None,
            roaming=False,  # ICE decides the path; a late packet on an old one does not
            now=now,
        )
        agent = IceAgent(
            controlling=self.controlling,
            local_ufrag=local_ufrag,
            local_pwd=local_pwd,
            remote_ufrag=remote_ufrag,
            remote_pwd=remote_pwd,
            now=now,
            config=self._ice_config,
            rng=self._rng,
        )
        conn = _Connection(peer_id, public_key, agent, now, context=context)
        self.connections[peer_id] = conn
        self._by_ufrag[local_ufrag] = conn
        self._by_public_key[public_key] = conn
        added = [c for c in self.local_candidates() if self._add_local(conn, c, now)]
        if added:
            self._on_candidates(peer_id, [to_sdp(c) for c in added])
        self._replay_early(peer_id)
        self._drain(conn)

    def set_allowed_ips(self, peer_id: str, allowed_ips: Sequence[Any]) -> None:
        conn = self.connections.get(peer_id)
        if conn is None:
            return
        self.iface.device.update_peer(
            conn.public_key,
            allowed_ips=list(allowed_ips),
            replace_allowed_ips=True,
            now=self._clock(),
        )

    def add_remote_candidates(self, peer_id: str, lines: Sequence[str]) -> None:
        conn = self.connections.get(peer_id)
        if conn is None:
            # Candidates may overtake the authorization that starts the connection
            # (they take a shorter way through signaling): keep them a while.
            self._keep_early(peer_id, True, lines)
            return
        now = self._clock()
        for line in lines:
            try:
                candidate = from_sdp(line)
            except CandidateSyntaxError as exc:
                log.debug("ignoring a candidate: %s", exc)
                continue
            if candidate.transport.lower() != "udp":
                continue
            conn.agent.add_remote_candidate(candidate, now)
            # Checks from our relayed candidates need a permission (and a channel).
            for alloc in self._allocations:
                if _family(alloc.server[0]) == candidate.ip_version and alloc.relayed:
                    alloc.core.bind_peer(candidate.address, now)
                    self._drain_allocation(alloc)
        self._drain(conn)

    def remove_remote_candidates(self, peer_id: str, lines: Sequence[str]) -> None:
        conn = self.connections.get(peer_id)
        if conn is None:
            self._keep_early(peer_id, False, lines)
            return
        now = self._clock()
        for line in lines:
            with contextlib.suppress(CandidateSyntaxError):
                conn.agent.remove_remote_candidate(from_sdp(line), now)
        self._drain(conn)

    def _keep_early(self, peer_id: str, add: bool, lines: Sequence[str]) -> None:
        now = self._clock()
        for key in [k for k, v in self._early.items() if v and now - v[0][0] > EARLY_CANDIDATE_TTL]:
            del self._early[key]
        if len(self._early) >= EARLY_CANDIDATE_PEERS and peer_id not in self._early:
            return
        kept = self._early.setdefault(peer_id, [])
        if len(kept) < EARLY_CANDIDATE_BATCHES:
            kept.append((now, add, list(lines)))

    def _replay_early(self, peer_id: str) -> None:
        now = self._clock()
        for at, add, lines in self._early.pop(peer_id, []):
            if now - at > EARLY_CANDIDATE_TTL:
                continue
            if add:
                self.add_remote_candidates(peer_id, lines)
            else:
                self.remove_remote_candidates(peer_id, lines)

    def disconnect(self, peer_id: str, *, reason: str | None = "closed") -> None:
        """End the connection: the ICE agent stops, the WireGuard peer goes."""
        conn = self.connections.pop(peer_id, None)
        if conn is None:
            return
        conn.agent.close()
        self._by_ufrag.pop(conn.agent.local_ufrag, None)
        self._by_public_key.pop(conn.public_key, None)
        self._deadline.pop(id(conn), None)
        device = self.iface.device
        for remote in [c.address for c in conn.agent.remote_candidates]:
            if remote in self._provisional:
                self._provisional.discard(remote)
                self.iface.drop_path(remote)
        if conn.public_key in device.peers:
            self.iface.set_peer_path(conn.public_key, None)
            device.remove_peer(conn.public_key)
        if reason is not None:
            self._on_event(ConnectionLost(peer_id, reason))

    def close(self) -> None:
        self._closed = True
        for peer_id in list(self.connections):
            self.disconnect(peer_id, reason=None)
        for alloc in list(self._allocations):
            with contextlib.suppress(Exception):
                alloc.core.close(self._clock())
                self._drain_allocation(alloc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.iface.set_demux(None)

    # ------------------------------------------------------------------ input
    def handle_datagram(
        self, data: bytes, source: Endpoint, now: float
    ) -> tuple[Endpoint, bytes] | None:
        """A datagram that is not WireGuard. Returns ``(remote, wireguard)`` to decrypt, if any."""
        if not data:
            return None
        first = data[0]
        alloc = self._by_server.get(source)
        if 0x40 <= first <= 0x4F:
            if alloc is None:
                return None
            return self._from_relay(alloc, data, source, now)
        if len(data) < stun.HEADER_SIZE or data[4:8] != _COOKIE:
            return None
        if alloc is not None:
            if alloc.core.handle_datagram(data, source, now):
                self._drain_allocation(alloc)
                return None
            unwrapped = alloc.core.decapsulate(data, source)  # a Data indication
            if unwrapped is not None:
                return self._relayed_payload(alloc, unwrapped[0], unwrapped[1], now)
        host = self._hosts.get(_family(source[0]))
        local = host.address if host is not None else (WILDCARD[_family(source[0])], self.port)
        self._ice_input(data, source, local, now)
        return None

    def _from_relay(
        self, alloc: _Allocation, data: bytes, source: Endpoint, now: float
    ) -> tuple[Endpoint, bytes] | None:
        unwrapped = alloc.core.decapsulate(data, source)
        if unwrapped is None:
            return None
        return self._relayed_payload(alloc, unwrapped[0], unwrapped[1], now)

    def _relayed_payload(
        self, alloc: _Allocation, peer: Endpoint, payload: bytes, now: float
    ) -> tuple[Endpoint, bytes] | None:
        if is_wireguard(payload):
            if not self.iface.has_path(peer):
                # Until ICE chooses, answer the way the peer's datagram came: through
                # this relay (a direct answer may not pass the peer's NAT).
                self.iface.add_path(RelayedPath(self, alloc, peer))
                self._provisional.add(peer)
            return peer, payload
        if alloc.relayed is not None and len(payload) >= stun.HEADER_SIZE:
            self._ice_input(bytes(payload), peer, alloc.relayed, now)
        return None

    def _ice_input(self, data: bytes, source: Endpoint, local: Endpoint, now: float) -> None:
        if is_binding_request(data):
            ufrag = target_ufrag(data)
            conn = self._by_ufrag.get(ufrag) if ufrag else None
        else:
            tid = transaction_id(data)
            conn = next(
                (c for c in self.connections.values() if tid and c.agent.owns_transaction(tid)),
                None,
            )
        if conn is None:
            return
        conn.agent.handle_stun(data, source, local, now)
        self._drain(conn)

    # ------------------------------------------------------------------ output
    def _drain(self, conn: _Connection) -> None:
        agent = conn.agent
        while (tx := agent.poll_transmit()) is not None:
            relay = self._by_relayed.get(tx.source)
            if relay is not None:
                self.send_relayed(relay, tx.destination, tx.data)
            else:
                self.send_raw(tx.destination, tx.data)
        while (event := agent.poll_event()) is not None:
            if isinstance(event, PairNominated):
                self._select(conn, event.pair)
            elif isinstance(event, NominatedPairRemoved):
                conn.pair = None
            elif isinstance(event, Disconnected):
                self.disconnect(conn.peer_id, reason="consent lost")
                return
            elif isinstance(event, Failed):
                self.disconnect(conn.peer_id, reason=f"ICE failed: {event.reason}")
                return
        self._schedule(conn, agent.poll_timeout())

    def _select(self, conn: _Connection, pair: CandidatePair) -> None:
        first = conn.pair is None and conn.connected_at is None
        conn.pair = pair
        remote = pair.destination
        if remote in self._provisional:
            self._provisional.discard(remote)
            self.iface.drop_path(remote)
        if pair.relayed:
            relay = self._by_relayed.get(pair.base)
            if relay is None:
                return
            conn.relay_id = relay.relay_id
            relay.core.bind_peer(remote, self._clock())
            self._drain_allocation(relay)
            self.iface.set_peer_path(conn.public_key, RelayedPath(self, relay, remote))
        else:
            # Our side is direct; the path still runs through a relay when the
            # remote candidate is the peer's allocation.
            conn.relay_id = self._relay_at(remote) if is_relay(pair.remote) else None
            self.iface.set_peer_path(conn.public_key, None, endpoint=remote)
        if first:
            conn.connected_at = self._clock()
        self._on_event(PathSelected(conn.peer_id, pair, conn.relay_id, first))

    def _relay_at(self, address: Endpoint) -> str | None:
        """The id of the relay serving ``address`` (one the node knows), if any."""
        for relay in self.relays.values():
            for text in relay.addresses:
                with contextlib.suppress(ValueError):
                    if parse_host_port(text)[0] == address[0]:
                        return relay.id
        return None

    def _drain_allocation(self, alloc: _Allocation) -> None:
        core = alloc.core
        while (tx := core.poll_transmit()) is not None:
            self.send_raw(tx.destination, tx.data)
        changed = False
        while (event := core.poll_event()) is not None:
            if isinstance(event, turn.Allocated):
                relayed = event.relayed[0] if event.relayed else None
                changed |= self._allocated(alloc, relayed, event.mapped)
            elif isinstance(event, turn.ServerReflexive):
                changed |= self._allocated(alloc, alloc.relayed, event.mapped)
            elif isinstance(event, turn.AllocationFailed | turn.AllocationLost):
                log.info("relay allocation lost", extra={"relay_id": alloc.relay_id})
                if alloc.relayed is not None:
                    self._by_relayed.pop(alloc.relayed, None)
                self._local_changed(added=[], removed=alloc.candidates)
                alloc.candidates = []
                alloc.relayed = None
        self._schedule(alloc, core.poll_timeout())
        del changed

    def _allocated(
        self, alloc: _Allocation, relayed: Endpoint | None, mapped: Endpoint | None
    ) -> bool:
        if relayed == alloc.relayed and mapped == alloc.mapped:
            return False
        if alloc.relayed is not None:
            self._by_relayed.pop(alloc.relayed, None)
        alloc.relayed, alloc.mapped = relayed, mapped
        new: list[Candidate] = []
        host = self._hosts.get(_family(alloc.server[0]))
        if relayed is not None:
            self._by_relayed[relayed] = alloc
            new.append(
                relayed_candidate(relayed, mapped=mapped or relayed, server_ip=alloc.server[0])
            )
        if mapped is not None and host is not None and mapped != host.address:
            new.append(
                server_reflexive_candidate(mapped, base=host.address, server_ip=alloc.server[0])
            )
        old = alloc.candidates
        alloc.candidates = new
        self._local_changed(
            added=[c for c in new if c not in old], removed=[c for c in old if c not in new]
        )
        # Remote candidates known before the allocation need permissions too.
        now = self._clock()
        if relayed is not None:
            for conn in self.connections.values():
                for remote in conn.agent.remote_candidates:
                    if remote.ip_version == _family(alloc.server[0]):
                        alloc.core.bind_peer(remote.address, now)
            while (tx := alloc.core.poll_transmit()) is not None:
                self.send_raw(tx.destination, tx.data)
        return True

    # ------------------------------------------------------------------ the one timer
    def _schedule(self, owner: object, deadline: float | None) -> None:
        key = id(owner)
        if deadline is None:
            self._deadline.pop(key, None)
            return
        if self._deadline.get(key) == deadline:
            return
        self._deadline[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), owner))
        if self._timer_at is None or deadline < self._timer_at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        delay = max(0.0, deadline - self._clock())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            deadline, _, owner = heapq.heappop(self._heap)
            if self._deadline.get(id(owner)) != deadline:
                continue  # superseded
            del self._deadline[id(owner)]
            if isinstance(owner, _Connection):
                if self.connections.get(owner.peer_id) is owner:
                    owner.agent.handle_timeout(now)
                    self._drain(owner)
            elif isinstance(owner, _Allocation) and owner in self._allocations:
                owner.core.handle_timeout(now)
                self._drain_allocation(owner)
        if self._heap and not self._closed:
            self._arm(self._heap[0][0])
        self.iface.service()

    # ------------------------------------------------------------------ status
    def status(self, peer_id: str, *, verbose: bool = False) -> dict[str, Any]:
        conn = self.connections.get(peer_id)
        if conn is None:
            return {"state": "disconnected"}
        peer = self.iface.device.peers.get(conn.public_key)
        pair = conn.pair
        out: dict[str, Any] = {
            "state": "connected" if pair is not None else str(conn.agent.state),
            "path": None if pair is None else path_kind(pair),
            "relay_id": conn.relay_id if pair is not None else None,
            "local": None if pair is None else _fmt(pair.local.address),
            "remote": None if pair is None else _fmt(pair.destination),
            "public_key": base64.b64encode(conn.public_key).decode(),
        }
        if verbose:
            out["ice_state"] = str(conn.agent.state)
            out["local_candidates"] = [
                f"{c.type} {_fmt(c.address)}" for c in conn.agent.local_candidates
            ]
            out["remote_candidates"] = [
                f"{c.type} {_fmt(c.address)}" for c in conn.agent.remote_candidates
            ]
            out["pairs"] = [
                {
                    "local": f"{p.local.type} {_fmt(p.local.address)}",
                    "remote": f"{p.remote.type} {_fmt(p.remote.address)}",
                    "state": str(p.state),
                    "nominated": p.nominated,
                }
                for p in conn.agent.pairs()
            ]
        if peer is not None:
            out.update(
                latest_handshake=peer.last_handshake_unix,
                rx_bytes=peer.rx_bytes,
                tx_bytes=peer.tx_bytes,
            )
        return out

    def connected(self, peer_id: str) -> bool:
        conn = self.connections.get(peer_id)
        if conn is None or conn.pair is None:
            return False
        return conn.agent.state == AgentState.CONNECTED


_COOKIE = stun.MAGIC_COOKIE.to_bytes(4, "big")


def _fmt(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
