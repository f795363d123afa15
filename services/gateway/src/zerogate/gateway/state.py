"""What a gateway serves to whom, until when — and the per-packet checks built from it.

:class:`AccessTable` is the gateway's pure state: for each client, the
resources it may reach and until when (signaling's ``create_authorization``
adds, ``reject_access`` and expiry remove), and for a DNS resource the names
the client asked for with the proxy addresses it gave them.

:meth:`AccessTable.inbound` runs on every packet a client sends, before it
reaches the TUN. The packet's source must be that client's own tunnel
address (WireGuard's cryptokey routing already guarantees a peer only uses
its AllowedIPs, which are exactly those addresses). Then, by destination:

* inside an authorized CIDR/IP resource (overlaps: any grant that lets the
  packet through is enough) and allowed by that resource's filters: it goes on;
* a proxy address of a name the client asked for (``100.96.0.0/11``,
  ``fd00:2021:1111:8000::/107``): the resource's filters apply, then the
  destination becomes one of the name's real addresses (the proxy's index
  picks one, so the 4 proxies spread over up to 4 records), through the
  client's :class:`~zerogate.proto.ip.nat.NatTable`. A name not resolved yet
  holds its packets (bounded) until it is; a name with no record in the
  packet's family answers ICMP "unreachable";
* the gateway's own tunnel address, port :data:`DNS_PORT`: its DNS server,
  which answers other query types for the resources' names;
* anything else, when the client holds the Internet resource (its filters apply);
* otherwise the packet is refused with an ICMP "administratively
  prohibited" (IPv4 type 3 code 13, IPv6 type 1 code 1) sent back at once, so
  the application fails now rather than after a timeout.

:meth:`AccessTable.outbound` runs on every packet the site sends to a client
while any client has proxy addresses: the source of an answer to a
translated flow goes back to the proxy address. It reads the IP and transport
headers only, so the interface runs it once on a TCP super-packet's header
before cutting it into segments.

Everything a packet is checked against is computed when grants change: per
client, prefixes as ``(network, mask, filter)`` integers per IP version, and
per resource a filter as a 256-entry table by IP protocol (``True`` every
port, ``False`` refused, or an 8 KiB bitmap of allowed ports), so no object is
built per packet beyond the rewritten packet itself. Filters are checked on
every packet, so a change applies to flows already running.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from zerogate.common.messages.api import ResourceView
from zerogate.common.messages.signaling import AuthorizationRef, ClientInfo
from zerogate.proto.dns.names import DnsPattern, NameMatcher
from zerogate.proto.dns.proxy import PER_FAMILY, slot_of
from zerogate.proto.ip.icmp import unreachable
from zerogate.proto.ip.nat import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    NatTable,
    flow_key,
    pack_address,
    pack_checksum,
    pack_checksum_source,
    rewrite,
    rewrite_v4,
)

#: ``(version, network as int, mask as int)``
Prefix = tuple[int, int, int]
#: Per IP protocol: True (every port), False (refused) or a bitmap of allowed ports.
FilterTable = tuple[bool | bytes, ...]

#: The gateway's DNS server for the resources' names, on its tunnel addresses (Firezone's port).
DNS_PORT: Final = 53535
PROXY_V4: Final = ipaddress.IPv4Network("100.96.0.0/11")  # DESIGN.md, "Addresses"
PROXY_V6: Final = ipaddress.IPv6Network("fd00:2021:1111:8000::/107")
TUNNEL_V4: Final = ipaddress.IPv4Network("100.64.0.0/11")
TUNNEL_V6: Final = ipaddress.IPv6Network("fd00:2021:1111::/107")
_P4, _PM4 = int(PROXY_V4.network_address), int(PROXY_V4.netmask)
_P6, _PM6 = int(PROXY_V6.network_address), int(PROXY_V6.netmask)
_T4, _TM4 = int(TUNNEL_V4.network_address), int(TUNNEL_V4.netmask)
_T6, _TM6 = int(TUNNEL_V6.network_address), int(TUNNEL_V6.netmask)
# 100.96.0.0/11 as its first two bytes, for the fast path
_P4_FIRST, _P4_SECOND, _P4_MASK = 100, 96, 0xE0
_PORTED = frozenset({PROTO_TCP, PROTO_UDP})
#: Packets held per name while it is being resolved.
PENDING_PER_NAME: Final = 64
#: ICMP answers made per second at most (the kernel's icmp_msgs_per_sec is 1000).
ANSWERS_PER_SECOND: Final = 1000
#: How often idle NAT flows are swept (seconds).
SWEEP_INTERVAL: Final = 10.0
_ICMP_ECHO = {4: 8, 6: 128}  # RFC 792, RFC 4443 §4.1


@dataclass
class Grant:
    """One resource served to one client."""

    resource: ResourceView
    ref: AuthorizationRef
    expires_at: datetime | None
    #: DNS resources: each name the client asked for → the proxy addresses it gave it.
    names: dict[str, tuple[bytes, ...]] = field(default_factory=dict)


@dataclass
class ClientAccess:
    client: ClientInfo
    grants: dict[str, Grant] = field(default_factory=dict)
    nat: NatTable = field(default_factory=NatTable)


@dataclass(frozen=True, slots=True)
class Target:
    """What one proxy address of one client stands for."""

    name: str
    index: int
    version: int
    resource_id: str
    filters: FilterTable | None


class ClientRules:
    """One client's precomputed checks (rebuilt when its grants change)."""

    __slots__ = ("access", "internet", "internet_filters", "names", "proxies", "v4", "v6")

    def __init__(self, access: ClientAccess) -> None:
        self.access = access
        self.v4: tuple[tuple[int, int, FilterTable | None], ...] = ()
        self.v6: tuple[tuple[int, int, FilterTable | None], ...] = ()
        #: Whether the client holds the Internet resource, and its filters.
        self.internet = False
        self.internet_filters: FilterTable | None = None
        self.proxies: dict[bytes, Target] = {}
        self.names = NameMatcher(())


def compile_filters(resource: ResourceView) -> FilterTable | None:
    """The resource's filters as a table by IP protocol; ``None`` allows everything."""
    if not resource.filters:
        return None
    table: list[bool | bytes] = [False] * 256
    for item in resource.filters:
        if item.protocol == "icmp":
            table[PROTO_ICMP] = table[PROTO_ICMPV6] = True
            continue
        number = PROTO_TCP if item.protocol == "tcp" else PROTO_UDP
        if not item.ports:
            table[number] = True
            continue
        bitmap = bytearray(8192)
        for entry in item.ports:
            first, _, last = entry.partition("-")
            try:
                start, end = int(first), int(last or first)
            except ValueError:
                continue
            for port in range(max(0, start), min(65535, end) + 1):
                bitmap[port >> 3] |= 1 << (port & 7)
        table[number] = bytes(bitmap)
    return tuple(table)


def permits(table: FilterTable, packet: bytes, offset: int, protocol: int, later: bool) -> bool:
    """Whether ``table`` lets the packet through (``later``: an IPv4 fragment after the first)."""
    rule = table[protocol]
    if rule is True or rule is False:
        return rule
    if later or len(packet) < offset + 4:
        return later  # the first fragment was checked with its port
    port = packet[offset + 2] << 8 | packet[offset + 3]
    return bool(rule[port >> 3] >> (port & 7) & 1)


def resource_prefixes(resource: ResourceView) -> list[Prefix]:
    """The prefixes a CIDR or IP resource covers (none for other types)."""
    if resource.type not in ("cidr", "ip") or not resource.address:
        return []
    try:
        net = ipaddress.ip_network(resource.address, strict=False)
    except ValueError:
        return []
    bits = 32 if net.version == 4 else 128
    mask = ((1 << net.prefixlen) - 1) << (bits - net.prefixlen) if net.prefixlen else 0
    return [(net.version, int(net.network_address) & mask, mask)]


def dns_pattern(resource: ResourceView) -> DnsPattern | None:
    if resource.type != "dns" or not resource.address:
        return None
    try:
        return DnsPattern.compile(resource.address)
    except ValueError:
        return None


def check_domain(
    resource: ResourceView, domain: str, proxy_ips: Iterable[str]
) -> tuple[bytes, ...]:
    """The proxy addresses of a name the client asks for, packed; ``ValueError`` when
    the name is not the resource's or an address is not a proxy address."""
    pattern = dns_pattern(resource)
    if pattern is None:
        raise ValueError("only a dns resource has names")
    if not pattern.matches(domain):
        raise ValueError("the name does not match the resource")
    packed: list[bytes] = []
    per_family = {4: 0, 6: 0}
    for text in proxy_ips:
        ip = ipaddress.ip_address(text)
        if slot_of(ip) is None:
            raise ValueError("not a proxy address")
        per_family[ip.version] += 1
        if per_family[ip.version] > PER_FAMILY:
            raise ValueError("too many proxy addresses")
        packed.append(ip.packed)
    return tuple(dict.fromkeys(packed))


def normalized_name(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


class AccessTable:
    """Clients, their grants, and the per-packet checks."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientAccess] = {}
        # source address (packed) -> the client's checks
        self._rules: dict[bytes, ClientRules] = {}
        # destination address (packed) -> the NAT table of a client with proxy addresses
        self._nat: dict[bytes, NatTable] = {}
        self._filters: dict[str, FilterTable | None] = {}
        #: The gateway's own tunnel addresses (its DNS server listens there).
        self.own: frozenset[bytes] = frozenset()
        #: name -> (IPv4 addresses, IPv6 addresses), packed, as last resolved.
        self.addresses: dict[str, tuple[tuple[bytes, ...], tuple[bytes, ...]]] = {}
        self._pending: dict[str, deque[bytes]] = {}
        #: A coarse clock (seconds) the owner moves with :meth:`tick`.
        self.now = 0.0
        self._swept = 0.0
        self._answer_window = 0.0
        self._answers = 0
        #: Called with an ICMP answer to send back into the tunnel.
        self.on_answer: Callable[[bytes], None] | None = None
        #: Called with a name whose addresses are needed (or may be stale).
        self.on_resolve: Callable[[str], None] | None = None

    # -- changes -------------------------------------------------------------------
    def grant(self, client: ClientInfo, resource: ResourceView, ref: AuthorizationRef,
              expires_at: datetime | None, *, domain: str | None = None,
              proxy_ips: Iterable[str] = ()) -> None:  # fmt: skip
        """Serve ``resource`` to ``client``; for a DNS resource, also the name ``domain``.

        Raises ``ValueError`` (nothing changes) when ``domain`` is not one of the
        resource's names or ``proxy_ips`` are not proxy addresses.
        """
        packed: tuple[bytes, ...] = ()
        name = None
        if domain is not None:
            name = normalized_name(domain)
            packed = check_domain(resource, name, proxy_ips)
        access = self.clients.setdefault(client.id, ClientAccess(client))
        access.client = client
        if name is not None:
            # A proxy address stands for one name only: the newest claim wins.
            for other in access.grants.values():
                for other_name, addresses in list(other.names.items()):
                    if other_name != name and set(addresses) & set(packed):
                        del other.names[other_name]
                        access.nat.drop_proxies(frozenset(addresses))
        old = access.grants.get(resource.id)
        grant = Grant(resource, ref, expires_at, dict(old.names) if old else {})
        if name is not None:
            previous = grant.names.get(name)
            if previous is not None and previous != packed:
                access.nat.drop_proxies(frozenset(previous))
            grant.names[name] = packed
        access.grants[resource.id] = grant
        self._filters[resource.id] = compile_filters(resource)
        self._rebuild(access)
        if name is not None and self.on_resolve is not None:
            self.on_resolve(name)

    def revoke(self, client_id: str, resource_id: str) -> bool:
        """Remove one grant; True when the client has none left (drop its connection)."""
        access = self.clients.get(client_id)
        if access is None:
            return True
        grant = access.grants.pop(resource_id, None)
        if grant is not None:
            for addresses in grant.names.values():
                access.nat.drop_proxies(frozenset(addresses))
        if not access.grants:
            self.forget(client_id)
            return True
        self._rebuild(access)
        return False

    def forget(self, client_id: str) -> None:
        access = self.clients.pop(client_id, None)
        if access is not None:
            for key in _sources(access.client):
                self._rules.pop(key, None)
                self._nat.pop(key, None)

    def update_resource(self, resource: ResourceView) -> None:
        """A resource changed (filters, address): apply it to every client it is served to."""
        self._filters[resource.id] = compile_filters(resource)
        pattern = dns_pattern(resource)
        for access in self.clients.values():
            grant = access.grants.get(resource.id)
            if grant is None:
                continue
            grant.resource = resource
            for name, addresses in list(grant.names.items()):
                if pattern is None or not pattern.matches(name):
                    del grant.names[name]
                    access.nat.drop_proxies(frozenset(addresses))
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
                    for addresses in access.grants[rid].names.values():
                        access.nat.drop_proxies(frozenset(addresses))
                    del access.grants[rid]
                else:
                    access.grants[rid].expires_at = ref.expires_at
            if not access.grants:
                self.forget(cid)
                emptied.append(cid)
            else:
                self._rebuild(access)
        return emptied

    def set_own(self, addresses: Iterable[str]) -> None:
        self.own = frozenset(ipaddress.ip_address(a).packed for a in addresses)

    @property
    def has_nat(self) -> bool:
        """Whether any client has proxy addresses (then :meth:`outbound` is needed)."""
        return bool(self._nat)

    def names_in_use(self) -> set[str]:
        return {name for a in self.clients.values() for g in a.grants.values() for name in g.names}

    def _rebuild(self, access: ClientAccess) -> None:
        rules = ClientRules(access)
        v4: list[tuple[int, int, FilterTable | None]] = []
        v6: list[tuple[int, int, FilterTable | None]] = []
        patterns: list[tuple[str, DnsPattern]] = []
        for rid, grant in access.grants.items():
            table = self._filters.get(rid)
            resource = grant.resource
            if resource.type == "internet":
                rules.internet = True
                rules.internet_filters = table
                continue
            for version, net, mask in resource_prefixes(resource):
                (v4 if version == 4 else v6).append((net, mask, table))
            pattern = dns_pattern(resource)
            if pattern is not None:
                patterns.append((rid, pattern))
            for name, addresses in grant.names.items():
                for packed in addresses:
                    ip = ipaddress.ip_address(packed)
                    found = slot_of(ip)
                    if found is None:
                        continue
                    rules.proxies[packed] = Target(name, found[1], ip.version, rid, table)
        # Most specific first: a refusal by a narrow resource's filter still lets a
        # wider grant through, so every match is tried, but the common case is the first.
        for flow in access.nat.flows():  # the flows already running get the new filters
            target = rules.proxies.get(flow.proxy)
            flow.tag = target.filters if target is not None else None
        rules.v4 = tuple(sorted(v4, key=lambda p: -bin(p[1]).count("1")))
        rules.v6 = tuple(sorted(v6, key=lambda p: -bin(p[1]).count("1")))
        rules.names = NameMatcher(patterns)
        for key in _sources(access.client):
            self._rules[key] = rules
            if rules.proxies:
                self._nat[key] = access.nat
            else:
                self._nat.pop(key, None)

    # -- resolution ------------------------------------------------------------------
    def set_addresses(self, name: str, v4: Iterable[str], v6: Iterable[str]) -> list[bytes]:
        """A name's real addresses (as resolved); returns the packets that waited for them."""
        self.addresses[name] = (
            tuple(ipaddress.IPv4Address(a).packed for a in v4),
            tuple(ipaddress.IPv6Address(a).packed for a in v6),
        )
        waiting = self._pending.pop(name, None)
        return list(waiting) if waiting else []

    # -- time ------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Move the coarse clock; sweep idle NAT flows now and then."""
        self.now = now
        if now - self._swept >= SWEEP_INTERVAL:
            self._swept = now
            for access in self.clients.values():
                if len(access.nat):
                    access.nat.expire(now)

    # -- the per-packet checks ----------------------------------------------------------
    def accept(self, packet: bytes) -> bool:
        """Whether a packet from a client may go on to the site's network."""
        return self.inbound(packet) is not None

    def inbound(self, packet: bytes) -> bytes | bytearray | None:
        """A client's packet as it goes on to the site (translated), or ``None`` (dropped)."""
        n = len(packet)
        b0 = packet[0] if n else 0
        version = b0 >> 4
        if version == 4 and n >= 20:
            rules = self._rules.get(packet[12:16])
            if rules is None:
                return None
            if (
                b0 == 0x45  # no options
                and packet[16] == _P4_FIRST
                and packet[17] & _P4_MASK == _P4_SECOND
                and packet[9] in _PORTED
                and not (packet[6] & 0x1F or packet[7])
                and n >= 24
            ):
                # A flow to a proxy address already translated: its key is one slice.
                nat = rules.access.nat
                flows = nat.tcp_out if packet[9] == PROTO_TCP else nat.udp_out
                flow = flows.get(packet[12:24])
                if flow is not None and (
                    flow.tag is None or permits(flow.tag, packet, 20, packet[9], False)
                ):
                    flow.last = self.now
                    if packet[9] != PROTO_TCP:
                        return rewrite_v4(packet, flow, dst=True)
                    # The bulk of an upload: rewrite_v4 inlined (destination, TCP).
                    adjustment = flow.out_adj
                    out = bytearray(packet)
                    pack_checksum(out, 10, ((packet[10] << 8 | packet[11]) - adjustment) % 0xFFFF)
                    pack_address(out, 16, flow.real)
                    pack_checksum(out, 36, ((packet[36] << 8 | packet[37]) - adjustment) % 0xFFFF)
                    return out  # a bytearray, written to the TUN as it is
            dst = int.from_bytes(packet[16:20], "big")
            offset = (b0 & 0x0F) << 2
            protocol = packet[9]
            later = bool(packet[6] & 0x1F or packet[7])
            prefixes = rules.v4
        elif version == 6 and n >= 40:
            rules = self._rules.get(packet[8:24])
            if rules is None:
                return None
            dst = int.from_bytes(packet[24:40], "big")
            offset = 40
            protocol = packet[6]
            later = False
            prefixes = rules.v6
        else:
            return None
        for net, mask, table in prefixes:
            if dst & mask == net and (
                table is None or permits(table, packet, offset, protocol, later)
            ):
                return packet
        if (dst & _PM4 == _P4) if version == 4 else (dst & _PM6 == _P6):
            return self._to_proxy(rules, packet, version, offset, protocol, later)
        if (dst & _TM4 == _T4) if version == 4 else (dst & _TM6 == _T6):
            if self._to_self(packet, version, offset, protocol):
                return packet
        elif rules.internet:
            table = rules.internet_filters
            if table is None or permits(table, packet, offset, protocol, later):
                return packet
        self._answer(packet, prohibited=True)
        return None

    def _to_self(self, packet: bytes, version: int, offset: int, protocol: int) -> bool:
        """Only the gateway's DNS server (and echo) on its own tunnel address."""
        dst = packet[16:20] if version == 4 else packet[24:40]
        if dst not in self.own or len(packet) < offset + 4:
            return False
        if protocol in (PROTO_UDP, PROTO_TCP):
            return (packet[offset + 2] << 8 | packet[offset + 3]) == DNS_PORT
        return protocol in (PROTO_ICMP, PROTO_ICMPV6) and packet[offset] == _ICMP_ECHO[version]

    def _to_proxy(self, rules: ClientRules, packet: bytes, version: int, offset: int,
                  protocol: int, later: bool) -> bytes | bytearray | None:  # fmt: skip
        proxy = packet[16:20] if version == 4 else packet[24:40]
        target = rules.proxies.get(proxy)
        if target is None or (
            target.filters is not None
            and not permits(target.filters, packet, offset, protocol, later)
        ):
            self._answer(packet, prohibited=True)
            return None
        nat = rules.access.nat
        if offset == 20 and not later and (protocol in (PROTO_TCP, PROTO_UDP)):
            # IPv4 without options: the key is one slice, the rewrite one expression
            flow = (nat.tcp_out if protocol == PROTO_TCP else nat.udp_out).get(packet[12:24])
            if flow is not None:
                flow.last = self.now
                return rewrite_v4(packet, flow, dst=True)
        key = None if later else flow_key(packet, version, offset, protocol)
        flow = nat.find(protocol, key) if key is not None else None
        if flow is None:
            resolved = self.addresses.get(target.name)
            if resolved is None:
                queue = self._pending.get(target.name)
                if queue is None:
                    queue = self._pending[target.name] = deque(maxlen=PENDING_PER_NAME)
                queue.append(packet)
                if self.on_resolve is not None:
                    self.on_resolve(target.name)
                return None
            reals = resolved[0] if version == 4 else resolved[1]
            if not reals:
                self._answer(packet, prohibited=False)
                return None
            real = reals[target.index % len(reals)]
            if key is None:  # a fragment: no flow, the same choice as its first part
                adjustment = (int.from_bytes(real, "big") - int.from_bytes(proxy, "big")) % 0xFFFF
                return rewrite(packet, version, offset, protocol, dst=True, address=real,
                               adjustment=adjustment)  # fmt: skip
            flow = nat.add(protocol, key, proxy, real, self.now)
            flow.tag = target.filters
            if self.on_resolve is not None:
                self.on_resolve(target.name)  # a new flow: refresh the name when stale
        else:
            flow.last = self.now
        return rewrite(packet, version, offset, protocol, dst=True, address=flow.real,
                       adjustment=flow.out_adj)  # fmt: skip

    def outbound(self, packet: bytes) -> bytes | bytearray:
        """A packet from the site to a client: the source of a translated flow goes back."""
        if packet[0] == 0x45:  # IPv4 without options: the usual case, kept short
            nat = self._nat.get(packet[16:20])
            if nat is None:
                return packet
            protocol = packet[9]
            if protocol == PROTO_TCP and not (packet[6] & 0x1F or packet[7]):
                # The bulk of a download: rewrite_v4 inlined (source, TCP).
                flow = nat.tcp_back.get(packet[12:24])
                if flow is None:
                    return packet
                flow.last = self.now
                adjustment = flow.back_adj
                out = bytearray(packet)
                pack_checksum_source(
                    out, 10, ((packet[10] << 8 | packet[11]) - adjustment) % 0xFFFF, flow.proxy
                )
                pack_checksum(out, 36, ((packet[36] << 8 | packet[37]) - adjustment) % 0xFFFF)
                return out  # a bytearray, sealed as it is: no second copy
            if protocol == PROTO_UDP and not (packet[6] & 0x1F or packet[7]):
                flow = nat.udp_back.get(packet[12:24])
                if flow is None:
                    return packet
                flow.last = self.now
                return rewrite_v4(packet, flow, dst=False)
        else:
            nat = self._nat.get(packet[24:40] if packet[0] >> 4 == 6 else packet[16:20])
            if nat is None:
                return packet
        back = nat.back_of(packet, self.now)
        return packet if back is None else back

    def _answer(self, packet: bytes, *, prohibited: bool) -> None:
        if self.on_answer is None:
            return
        if self.now - self._answer_window >= 1.0:
            self._answer_window = self.now
            self._answers = 0
        if self._answers >= ANSWERS_PER_SECOND:
            return
        answer = unreachable(packet, prohibited=prohibited)
        if answer is not None:
            self._answers += 1
            self.on_answer(answer)

    # -- the DNS server ----------------------------------------------------------------
    def dns_allowed(self, source: str, name: str) -> bool:
        """Whether the client at tunnel address ``source`` may ask about ``name``."""
        try:
            key = ipaddress.ip_address(source).packed
        except ValueError:
            return False
        rules = self._rules.get(key)
        return rules is not None and rules.names.match(name) is not None


def _sources(client: ClientInfo) -> list[bytes]:
    out: list[bytes] = []
    for text in (client.ipv4, client.ipv6):
        try:
            out.append(ipaddress.ip_address(text).packed)
        except ValueError:
            continue
    return out
