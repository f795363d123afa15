"""The client's pure state: which resource a packet is for, and where its access stands.

:class:`Resources` maps a destination address to the resource it belongs to
(the most specific prefix wins when resources overlap) and keeps, per
resource, the state of its access (none, requested, authorized through a
gateway until a time, refused and why) and the packets that wait for it.

DNS resources: a queried name that matches one (the api's wildcard rules and
precedence, :mod:`zerogate.proto.dns.names`) gets proxy addresses
(:mod:`zerogate.proto.dns.proxy`); a :class:`NameState` follows each such
name: the resource it matches now, the gateway that learned it, and the
packets waiting for that. A packet to a proxy address is for that name's
resource. The Internet resource, when the user turned it on, takes every
packet nothing more specific takes.

Nothing here does I/O or reads the clock: times are passed in.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from zerogate.common.messages.api import ResourceView
from zerogate.proto.dns.names import DnsPattern, NameMatcher
from zerogate.proto.dns.proxy import ProxyAddresses, slot_of
from zerogate.proto.net import IPNetwork

#: Packets kept per resource while its access is being set up (Firezone: 128).
BUFFER_PACKETS = 128
#: A resource is asked for at most this often (seconds, Firezone: 2 s).
REQUEST_INTERVAL = 2.0
#: Names of DNS resources kept at most; beyond, the oldest no gateway knows are forgotten
#: (their proxy addresses are given out again), so a flood of names cannot exhaust memory.
MAX_NAMES = 65536


class Access(StrEnum):
    NONE = "none"
    REQUESTED = "requested"
    AUTHORIZED = "authorized"
    REFUSED = "refused"


@dataclass
class ResourceState:
    resource: ResourceView
    network: IPNetwork | None
    access: Access = Access.NONE
    gateway_id: str | None = None
    expires_at: datetime | None = None
    requested_at: float | None = None
    reason: str | None = None
    violated_properties: list[str] = field(default_factory=list)
    buffer: deque[bytes] = field(default_factory=lambda: deque(maxlen=BUFFER_PACKETS))

    def view(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.resource.id,
            "name": self.resource.name,
            "type": self.resource.type,
            "address": self.resource.address,
            "access": str(self.access),
        }
        if self.gateway_id:
            out["gateway_id"] = self.gateway_id
        if self.expires_at:
            out["expires_at"] = self.expires_at.isoformat()
        if self.access is Access.REFUSED:
            out["reason"] = self.reason
            out["violated_properties"] = list(self.violated_properties)
        return out


@dataclass
class NameState:
    """A name that matched a DNS resource when it was asked for, and its proxy addresses."""

    name: str
    v4: tuple[ipaddress.IPv4Address, ...]
    v6: tuple[ipaddress.IPv6Address, ...]
    #: The resource the name matches now (None: none any more).
    resource_id: str | None = None
    #: The gateway that learned this name (its proxy addresses go there).
    gateway_id: str | None = None
    requested_at: float | None = None
    buffer: deque[bytes] = field(default_factory=lambda: deque(maxlen=BUFFER_PACKETS))

    def proxy_ips(self) -> list[str]:
        return [str(a) for a in (*self.v4, *self.v6)]

    def networks(self) -> list[IPNetwork]:
        return [ipaddress.ip_network(str(a)) for a in (*self.v4, *self.v6)]


def network_of(resource: ResourceView) -> IPNetwork | None:
    """The prefix a CIDR/IP resource covers (None for DNS and the Internet resource)."""
    if resource.type not in ("cidr", "ip") or not resource.address:
        return None
    try:
        return ipaddress.ip_network(resource.address, strict=False)
    except ValueError:
        return None


def destination(packet: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return ipaddress.IPv4Address(packet[16:20])
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        return ipaddress.IPv6Address(packet[24:40])
    return None


class Resources:
    """The resources this client may see, and its access to each.

    ``internet``: the user turned the Internet resource on (``zerogate up
    --internet``); without it, that resource is never asked for.
    """

    def __init__(self, *, internet: bool = False) -> None:
        self.states: dict[str, ResourceState] = {}
        self.internet = internet
        self.proxies = ProxyAddresses()
        self.names: dict[str, NameState] = {}
        self._matcher = NameMatcher(())
        #: Called with a name forgotten to make room (answers naming its addresses are stale).
        self.on_forget: Callable[[str], None] | None = None

    def replace(self, resources: Iterable[ResourceView]) -> tuple[list[IPNetwork], list[IPNetwork]]:
        """Take the full list from ``init``; returns the routes to add and to remove."""
        fresh = {r.id: r for r in resources}
        before = self.routes()
        for rid in [rid for rid in self.states if rid not in fresh]:
            del self.states[rid]
        for resource in fresh.values():
            self.upsert(resource)
        self.rematch()
        after = self.routes()
        return sorted(after - before, key=str), sorted(before - after, key=str)

    def upsert(self, resource: ResourceView) -> ResourceState:
        state = self.states.get(resource.id)
        network = network_of(resource)
        if state is None:
            state = ResourceState(resource, network)
            self.states[resource.id] = state
        else:
            moved = state.network != network or (
                resource.type == "dns" and state.resource.address != resource.address
            )
            if moved:  # another address: the old access does not hold
                state.access = Access.NONE
                state.gateway_id = None
            state.resource = resource
            state.network = network
        self.rematch()
        return state

    def remove(self, resource_id: str) -> ResourceState | None:
        state = self.states.pop(resource_id, None)
        self.rematch()
        return state

    # -- DNS resources ---------------------------------------------------------------
    def rematch(self) -> None:
        """Recompute which DNS resource each known name matches (after any change)."""
        patterns: list[tuple[str, DnsPattern]] = []
        for rid, state in self.states.items():
            if state.resource.type == "dns" and state.resource.address:
                try:
                    patterns.append((rid, DnsPattern.compile(state.resource.address)))
                except ValueError:
                    continue
        self._matcher = NameMatcher(patterns)
        for ns in self.names.values():
            now = self._matcher.match(ns.name)
            if now != ns.resource_id:
                ns.resource_id = now
                ns.gateway_id = None
                ns.requested_at = None

    def match_name(self, labels: tuple[str, ...]) -> ResourceState | None:
        """The visible DNS resource a queried name (normalised labels) belongs to."""
        if not self._matcher:
            return None
        rid = self._matcher.match_labels(labels)
        return self.states.get(rid) if rid is not None else None

    def name(self, name: str) -> NameState:
        """The state of a (normalised) name, with its proxy addresses given out now if new."""
        ns = self.names.get(name)
        if ns is None:
            if len(self.names) >= MAX_NAMES:
                self._forget_a_name()
            v4, v6 = self.proxies.addresses(name)
            ns = NameState(name, v4, v6, resource_id=self._matcher.match(name))
            self.names[name] = ns
        return ns

    def _forget_a_name(self) -> None:
        for old in self.names.values():
            if old.gateway_id is None and not old.buffer:
                del self.names[old.name]
                self.proxies.release(old.name)
                if self.on_forget is not None:
                    self.on_forget(old.name)
                return

    def name_at(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> NameState | None:
        """The name a proxy address was given to (None: not a proxy address of ours)."""
        found = self.proxies.name_at(address)
        return self.names.get(found) if found is not None else None

    def names_of(self, resource_id: str) -> list[NameState]:
        return [ns for ns in self.names.values() if ns.resource_id == resource_id]

    def names_via(self, gateway_id: str) -> list[NameState]:
        """Names the gateway learned, of resources authorized (through any gateway)."""
        out = []
        for ns in self.names.values():
            if ns.gateway_id != gateway_id or ns.resource_id is None:
                continue
            state = self.states.get(ns.resource_id)
            if state is not None and state.access is Access.AUTHORIZED:
                out.append(ns)
        return out

    def lose(self, state: ResourceState) -> None:
        """The resource's access is gone: so is what its gateway learned of its names."""
        state.access = Access.NONE
        state.gateway_id = None
        state.requested_at = None
        for ns in self.names_of(state.resource.id):
            ns.gateway_id = None
            ns.requested_at = None

    def internet_state(self) -> ResourceState | None:
        """The Internet resource, when the user turned it on and a policy shows it."""
        if not self.internet:
            return None
        for state in self.states.values():
            if state.resource.type == "internet":
                return state
        return None

    def routes(self) -> set[IPNetwork]:
        return {s.network for s in self.states.values() if s.network is not None}

    def match(self, packet: bytes) -> ResourceState | None:
        """The resource a packet's destination lies in; the longest prefix wins."""
        dst = destination(packet)
        return None if dst is None else self.match_address(dst)

    def target(self, packet: bytes) -> tuple[ResourceState | None, NameState | None]:
        """What a packet no session carries yet is for.

        ``(state, None)``: a CIDR/IP resource (or the Internet resource);
        ``(state, name)``: a name of a DNS resource, by its proxy address;
        ``(None, name)``: a proxy address whose name matches no resource now;
        ``(None, None)``: nothing of ours.
        """
        dst = destination(packet)
        if dst is None:
            return None, None
        if slot_of(dst) is not None:
            ns = self.name_at(dst)
            if ns is None:
                return None, None
            state = self.states.get(ns.resource_id) if ns.resource_id else None
            return state, ns
        state = self.match_address(dst)
        if state is None:
            state = self.internet_state()
        return state, None

    def match_address(
        self, dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> ResourceState | None:
        """The resource an address lies in; the longest prefix wins."""
        best: ResourceState | None = None
        for state in self.states.values():
            net = state.network
            if net is None or net.version != dst.version or dst not in net:
                continue
            if best is None or best.network is None or net.prefixlen > best.network.prefixlen:
                best = state
        return best

    def via(self, gateway_id: str) -> list[ResourceState]:
        return [
            s
            for s in self.states.values()
            if s.gateway_id == gateway_id and s.access is Access.AUTHORIZED
        ]

    def allowed_ips(self, gateway_id: str) -> list[IPNetwork]:
        """What the gateway's WireGuard peer carries: its authorized resources, the proxy
        addresses of the names it learned, and everything for the Internet resource."""
        nets: set[IPNetwork] = set()
        for state in self.via(gateway_id):
            if state.network is not None:
                nets.add(state.network)
            elif state.resource.type == "internet" and self.internet:
                nets.update((ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))
        for ns in self.names_via(gateway_id):
            nets.update(ns.networks())
        return sorted(nets, key=str)

    @staticmethod
    def due(state: ResourceState | NameState, now: float) -> bool:
        """Whether to ask for this resource (or name) now (not asked within REQUEST_INTERVAL)."""
        return state.requested_at is None or now - state.requested_at >= REQUEST_INTERVAL
