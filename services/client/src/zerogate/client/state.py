"""The client's pure state: which resource a packet is for, and where its access stands.

:class:`Resources` maps a destination address to the resource it belongs to
(the most specific prefix wins when resources overlap) and keeps, per
resource, the state of its access (none, requested, authorized through a
gateway until a time, refused and why) and the packets that wait for it.
Nothing here does I/O or reads the clock: times are passed in.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from zerogate.common.messages.api import ResourceView
from zerogate.proto.net import IPNetwork

#: Packets kept per resource while its access is being set up (Firezone: 128).
BUFFER_PACKETS = 128
#: A resource is asked for at most this often (seconds, Firezone: 2 s).
REQUEST_INTERVAL = 2.0


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
    """The resources this client may see, and its access to each."""

    def __init__(self) -> None:
        self.states: dict[str, ResourceState] = {}

    def replace(self, resources: Iterable[ResourceView]) -> tuple[list[IPNetwork], list[IPNetwork]]:
        """Take the full list from ``init``; returns the routes to add and to remove."""
        fresh = {r.id: r for r in resources}
        before = self.routes()
        for rid in [rid for rid in self.states if rid not in fresh]:
            del self.states[rid]
        for resource in fresh.values():
            self.upsert(resource)
        after = self.routes()
        return sorted(after - before, key=str), sorted(before - after, key=str)

    def upsert(self, resource: ResourceView) -> ResourceState:
        state = self.states.get(resource.id)
        network = network_of(resource)
        if state is None:
            state = ResourceState(resource, network)
            self.states[resource.id] = state
        else:
            if state.network != network:  # another address: the old access does not hold
                state.access = Access.NONE
                state.gateway_id = None
            state.resource = resource
            state.network = network
        return state

    def remove(self, resource_id: str) -> ResourceState | None:
        return self.states.pop(resource_id, None)

    def routes(self) -> set[IPNetwork]:
        return {s.network for s in self.states.values() if s.network is not None}

    def match(self, packet: bytes) -> ResourceState | None:
        """The resource a packet's destination lies in; the longest prefix wins."""
        dst = destination(packet)
        return None if dst is None else self.match_address(dst)

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
        """What the gateway's WireGuard peer carries: its authorized resources."""
        return sorted({s.network for s in self.via(gateway_id) if s.network is not None}, key=str)

    @staticmethod
    def due(state: ResourceState, now: float) -> bool:
        """Whether to ask for this resource now (not asked within REQUEST_INTERVAL)."""
        return state.requested_at is None or now - state.requested_at >= REQUEST_INTERVAL
