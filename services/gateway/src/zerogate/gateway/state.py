"""What a gateway serves to whom, until when — and the per-packet check built from it.

:class:`AccessTable` is the gateway's pure state: for each client, the
resources it may reach and until when (signaling's ``create_authorization``
adds, ``reject_access`` and expiry remove). :meth:`AccessTable.accept` is the
check the interface runs on every packet a client sends before it reaches the
TUN: the packet's source must be that client's own tunnel address (WireGuard's
cryptokey routing already guarantees a peer can only use its AllowedIPs,
which are exactly those addresses), and its destination must lie in one of
the client's authorized CIDR/IP resources.

The check is a dictionary lookup on the source address and a walk over that
client's few prefixes, kept as ``(network int, mask int)`` per IP version so
no object is built per packet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from zerogate.common.messages.api import ResourceView
from zerogate.common.messages.signaling import AuthorizationRef, ClientInfo

#: ``(version, network as int, mask as int)``
Prefix = tuple[int, int, int]


@dataclass
class Grant:
    """One resource served to one client."""

    resource: ResourceView
    ref: AuthorizationRef
    expires_at: datetime | None


@dataclass
class ClientAccess:
    client: ClientInfo
    grants: dict[str, Grant] = field(default_factory=dict)


def resource_prefixes(resource: ResourceView) -> list[Prefix]:
    """The prefixes a CIDR or IP resource covers (none for other types yet)."""
    if resource.type not in ("cidr", "ip") or not resource.address:
        return []
    try:
        net = ipaddress.ip_network(resource.address, strict=False)
    except ValueError:
        return []
    bits = 32 if net.version == 4 else 128
    mask = ((1 << net.prefixlen) - 1) << (bits - net.prefixlen) if net.prefixlen else 0
    return [(net.version, int(net.network_address) & mask, mask)]


class AccessTable:
    """Clients, their grants, and the per-packet check."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientAccess] = {}
        # source address (version, int) -> prefixes the client may reach
        self._allowed: dict[tuple[int, int], tuple[Prefix, ...]] = {}

    # -- changes -------------------------------------------------------------------
    def grant(self, client: ClientInfo, resource: ResourceView, ref: AuthorizationRef,
              expires_at: datetime | None) -> None:  # fmt: skip
        access = self.clients.setdefault(client.id, ClientAccess(client))
        access.client = client
        access.grants[resource.id] = Grant(resource, ref, expires_at)
        self._rebuild(access)

    def revoke(self, client_id: str, resource_id: str) -> bool:
        """Remove one grant; True when the client has none left (drop its connection)."""
        access = self.clients.get(client_id)
        if access is None:
            return True
        access.grants.pop(resource_id, None)
        if not access.grants:
            self.forget(client_id)
            return True
        self._rebuild(access)
        return False

    def forget(self, client_id: str) -> None:
        access = self.clients.pop(client_id, None)
        if access is not None:
            for key in _sources(access.client):
                self._allowed.pop(key, None)

    def update_resource(self, resource: ResourceView) -> None:
        for access in self.clients.values():
            grant = access.grants.get(resource.id)
            if grant is not None:
                grant.resource = resource
                self._rebuild(access)

    def expired(self, now: datetime) -> list[tuple[str, str]]:
        """(client, resource) pairs whose access ended at ``now``."""
        return [
            (cid, rid)
            for cid, access in self.clients.items()
            for rid, grant in access.grants.items()
            if grant.expires_at is not None and grant.expires_at <= now
        ]

    def next_expiry(self) -> datetime | None:
        times = [
            g.expires_at
            for a in self.clients.values()
            for g in a.grants.values()
            if g.expires_at is not None
        ]
        return min(times, default=None)

    def refs(self) -> list[AuthorizationRef]:
        return [g.ref for a in self.clients.values() for g in a.grants.values()]

    def keep_only(self, refs: Iterable[AuthorizationRef]) -> list[str]:
        """Drop grants signaling no longer confirms; returns clients left with none."""
        still = {(r.client_id, r.resource_id): r for r in refs}
        emptied = []
        for cid in list(self.clients):
            access = self.clients[cid]
            for rid in list(access.grants):
                ref = still.get((cid, rid))
                if ref is None:
                    del access.grants[rid]
                else:
                    access.grants[rid].expires_at = ref.expires_at
            if not access.grants:
                self.forget(cid)
                emptied.append(cid)
            else:
                self._rebuild(access)
        return emptied

    def _rebuild(self, access: ClientAccess) -> None:
        prefixes = tuple(p for g in access.grants.values() for p in resource_prefixes(g.resource))
        for key in _sources(access.client):
            self._allowed[key] = prefixes

    # -- the per-packet check --------------------------------------------------------
    def accept(self, packet: bytes) -> bool:
        """Whether a packet from a client may go on to the site's network."""
        n = len(packet)
        version = packet[0] >> 4 if n else 0
        if version == 4 and n >= 20:
            src = (4, int.from_bytes(packet[12:16], "big"))
            dst = int.from_bytes(packet[16:20], "big")
        elif version == 6 and n >= 40:
            src = (6, int.from_bytes(packet[8:24], "big"))
            dst = int.from_bytes(packet[24:40], "big")
        else:
            return False
        prefixes = self._allowed.get(src)
        if not prefixes:
            return False
        return any(v == version and dst & mask == net for v, net, mask in prefixes)


def _sources(client: ClientInfo) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for text in (client.ipv4, client.ipv6):
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        out.append((ip.version, int(ip)))
    return out
