"""Per-client address translation of the gateway for DNS resources: proxy ⇄ real address.

A client sends packets for a DNS resource to the *proxy address* its stub
resolver gave the name (``zerogate.proto.dns.proxy``). The gateway rewrites
the destination to one of the name's real addresses on the way in, and the
source of the answers back to that proxy address on the way out; the kernel
then masquerades the client's tunnel address as for any resource. A
:class:`NatTable` holds one client's flows, per IP protocol, each keyed both
ways by the packet's own bytes (:func:`flow_key`): source and destination
address, then the ports (TCP, UDP) or the echo identifier (ICMP):

* out (client → site): ``client | proxy | client port, port``;
* back (site → client): ``real | client | port, client port``.

For IPv4 without options that is the slice ``packet[12:24]``, one copy, so
the owner's per-packet path (``zerogate.gateway.state``) looks a flow up
without building anything.

A flow keeps its real address until it expires, even when the name's
records change. Idle flows expire like Firezone's NAT table (its
``nat_table.rs``): TCP after :data:`TCP_IDLE` (2 h 4 min, beyond RFC 5382's
2 h 4 min minimum for established connections), UDP and ICMP after
:data:`UDP_IDLE` (2 min, RFC 4787 REQ-5). Time is a coarse ``now`` the owner
sets (a tick a second is plenty): a packet only writes a float.

Checksums are patched incrementally (RFC 1624 eqn. 3): the IPv4 header's,
and TCP's, UDP's and ICMPv6's, whose pseudo-header holds the address
(RFC 9293 §3.1, RFC 768, RFC 8200 §8.1). The sum of an address's 16-bit words
is its integer value modulo 0xFFFF, so the adjustment for one flow and
direction is computed once. An IPv4 UDP checksum of zero (none, RFC 768)
stays zero. ICMP errors coming back about a flow (port unreachable, packet
too big) get their quoted packet translated too, and their checksums
recomputed. Nothing here reads a clock or raises on a bad packet.
"""

from __future__ import annotations

import struct
from typing import Any, Final

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMPV6: Final = 58
TCP_IDLE: Final = 2 * 3600.0 + 4 * 60.0
UDP_IDLE: Final = 120.0
ICMP_IDLE: Final = 120.0
#: Flows one client may hold; the oldest go first beyond this.
MAX_FLOWS: Final = 65536

ICMP_ECHO_REQUEST: Final = 8  # RFC 792
ICMP_ECHO_REPLY: Final = 0
ICMP_ERRORS: Final = frozenset({3, 4, 5, 11, 12})  # RFC 792
ICMPV6_ECHO_REQUEST: Final = 128  # RFC 4443 §4
ICMPV6_ECHO_REPLY: Final = 129
ICMPV6_ERRORS: Final = frozenset({1, 2, 3, 4})  # RFC 4443 §3

_U16: Final = struct.Struct(">H")
#: An IPv4 header's checksum and the source address after it (offsets 10 to 16).
_CHECKSUM_SOURCE: Final = struct.Struct(">H4s")
#: ``pack_checksum(buffer, offset, value)``, ``pack_checksum_source(buffer, 10, value,
#: address)``: for per-packet code that inlines :func:`rewrite_v4`.
pack_checksum: Final = _U16.pack_into
pack_checksum_source: Final = _CHECKSUM_SOURCE.pack_into
#: ``pack_address(buffer, 16, address)``: an IPv4 destination (a slice assignment costs more).
pack_address: Final = struct.Struct("4s").pack_into

_ECHO: Final = frozenset(
    {ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY}
)


def address_adjustment(old: bytes, new: bytes) -> int:
    """What replacing ``old`` by ``new`` adds to a ones'-complement sum (RFC 1624)."""
    return (int.from_bytes(new, "big") - int.from_bytes(old, "big")) % 0xFFFF


def adjust(checksum: int, adjustment: int) -> int:
    """A checksum after its data changed by ``adjustment`` (RFC 1624 eqn. 3)."""
    return 0xFFFF - (((0xFFFF - checksum) + adjustment) % 0xFFFF or 0xFFFF)


def internet_checksum(data: bytes | bytearray, initial: int = 0) -> int:
    """RFC 1071 over ``data`` plus an already folded ``initial`` sum."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    total = int.from_bytes(data, "big") + initial
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF  # a non-zero sum that folds to zero is "negative zero"
    return 0xFFFF - folded


def idle_timeout(protocol: int) -> float:
    return TCP_IDLE if protocol == PROTO_TCP else (UDP_IDLE if protocol == PROTO_UDP else ICMP_IDLE)


class Flow:
    """One translated flow of one client."""

    __slots__ = (
        "back_adj", "back_key", "last", "out_adj", "out_key", "protocol", "proxy", "real",
        "tag", "timeout",
    )  # fmt: skip

    def __init__(self, protocol: int, out_key: bytes, back_key: bytes, proxy: bytes, real: bytes,
                 now: float) -> None:  # fmt: skip
        self.protocol = protocol
        self.out_key = out_key
        self.back_key = back_key
        self.proxy = proxy
        self.real = real
        self.out_adj = address_adjustment(proxy, real)
        self.back_adj = address_adjustment(real, proxy)
        self.timeout = idle_timeout(protocol)
        self.last = now
        #: The owner's: what it checks per packet of the flow (the gateway: the filters).
        self.tag: Any = None


def flow_key(packet: bytes, version: int, offset: int, protocol: int) -> bytes | None:
    """Source and destination address, then ports or echo identifier (``offset``: L4).

    ``None`` when the packet has no flow to speak of: an IPv4 fragment after
    the first, a header cut short, an ICMP message that is no echo.
    """
    ends = packet[12:20] if version == 4 else packet[8:40]
    if protocol in (PROTO_TCP, PROTO_UDP):
        if len(packet) < offset + 4:
            return None
        return ends + packet[offset : offset + 4]
    if protocol in (PROTO_ICMP, PROTO_ICMPV6):
        if len(packet) < offset + 8 or packet[offset] not in _ECHO:
            return None
        return ends + packet[offset + 4 : offset + 6]
    return ends


def back_key_for(out: bytes, protocol: int, real: bytes) -> bytes:
    """The key the answers of a flow with out-key ``out`` carry."""
    alen = len(real)
    client = out[:alen]
    if protocol in (PROTO_TCP, PROTO_UDP):
        return real + client + out[-2:] + out[-4:-2]
    if protocol in (PROTO_ICMP, PROTO_ICMPV6):
        return real + client + out[-2:]
    return real + client


def rewrite(packet: bytes, version: int, offset: int, protocol: int, *, dst: bool,
            address: bytes, adjustment: int) -> bytes:  # fmt: skip
    """``packet`` with its destination (``dst``) or source replaced by ``address``."""
    out = bytearray(packet)
    if version == 4:
        if dst:
            out[16:20] = address
        else:
            out[12:16] = address
        out[10:12] = adjust(packet[10] << 8 | packet[11], adjustment).to_bytes(2, "big")
        if packet[6] & 0x1F or packet[7]:  # not the first fragment: no L4 header here
            return bytes(out)
    elif dst:
        out[24:40] = address
    else:
        out[8:24] = address
    if protocol == PROTO_TCP:
        at = offset + 16
    elif protocol == PROTO_UDP:
        at = offset + 6
        if version == 4 and len(packet) >= at + 2 and not (packet[at] or packet[at + 1]):
            return bytes(out)  # no UDP checksum
    elif protocol == PROTO_ICMPV6:
        at = offset + 2
    else:
        return bytes(out)
    if len(packet) >= at + 2:
        value = adjust(packet[at] << 8 | packet[at + 1], adjustment)
        if value == 0 and protocol == PROTO_UDP:
            value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
        out[at : at + 2] = value.to_bytes(2, "big")
    return bytes(out)


def rewrite_v4(packet: bytes, flow: Flow, *, dst: bool) -> bytes | bytearray:
    """The fast case of :func:`rewrite`: IPv4 without options, TCP or UDP, not a later
    fragment (the caller checked), with the flow's address and adjustment.

    RFC 1624 eqn. 3, ``HC' = ~(~HC + m)``, is in ones'-complement arithmetic
    ``HC - m``: ``(HC - m) % 0xFFFF`` gives exactly what :func:`adjust` gives.
    Returns a ``bytearray`` (one copy of the packet, no second one to ``bytes``).
    """
    out = bytearray(packet)
    if dst:
        adjustment = flow.out_adj
        _U16.pack_into(out, 10, ((packet[10] << 8 | packet[11]) - adjustment) % 0xFFFF)
        pack_address(out, 16, flow.real)
    else:
        adjustment = flow.back_adj
        _CHECKSUM_SOURCE.pack_into(
            out, 10, ((packet[10] << 8 | packet[11]) - adjustment) % 0xFFFF, flow.proxy
        )
    if packet[9] == PROTO_TCP:
        _U16.pack_into(out, 36, ((packet[36] << 8 | packet[37]) - adjustment) % 0xFFFF)
    elif packet[26] or packet[27]:  # UDP with a checksum (0: none, RFC 768)
        # RFC 768: a computed zero is sent as all ones
        _U16.pack_into(out, 26, ((packet[26] << 8 | packet[27]) - adjustment) % 0xFFFF or 0xFFFF)
    return out


class NatTable:
    """One client's translated flows, found from either side.

    ``tcp_out``/``udp_out`` and ``tcp_back``/``udp_back`` are public for the
    owner's per-packet fast path; other protocols live in ``other``.
    """

    __slots__ = ("other_back", "other_out", "tcp_back", "tcp_out", "udp_back", "udp_out")

    def __init__(self) -> None:
        self.tcp_out: dict[bytes, Flow] = {}
        self.udp_out: dict[bytes, Flow] = {}
        self.tcp_back: dict[bytes, Flow] = {}
        self.udp_back: dict[bytes, Flow] = {}
        self.other_out: dict[int, dict[bytes, Flow]] = {}
        self.other_back: dict[int, dict[bytes, Flow]] = {}

    def _tables(self, protocol: int) -> tuple[dict[bytes, Flow], dict[bytes, Flow]]:
        if protocol == PROTO_TCP:
            return self.tcp_out, self.tcp_back
        if protocol == PROTO_UDP:
            return self.udp_out, self.udp_back
        return self.other_out.setdefault(protocol, {}), self.other_back.setdefault(protocol, {})

    def flows(self) -> list[Flow]:
        out = [*self.tcp_out.values(), *self.udp_out.values()]
        for table in self.other_out.values():
            out.extend(table.values())
        return out

    def __len__(self) -> int:
        return len(self.tcp_out) + len(self.udp_out) + sum(map(len, self.other_out.values()))

    def find(self, protocol: int, key: bytes) -> Flow | None:
        """The flow a client's packet with this :func:`flow_key` belongs to."""
        if protocol == PROTO_TCP:
            return self.tcp_out.get(key)
        if protocol == PROTO_UDP:
            return self.udp_out.get(key)
        table = self.other_out.get(protocol)
        return table.get(key) if table is not None else None

    def add(self, protocol: int, key: bytes, proxy: bytes, real: bytes, now: float) -> Flow:
        if len(self) >= MAX_FLOWS:
            self.remove(min(self.flows(), key=lambda f: f.last))
        flow = Flow(protocol, key, back_key_for(key, protocol, real), proxy, real, now)
        out, back = self._tables(protocol)
        out[key] = flow
        back[flow.back_key] = flow
        return flow

    def remove(self, flow: Flow) -> None:
        out, back = self._tables(flow.protocol)
        if out.get(flow.out_key) is flow:
            del out[flow.out_key]
        if back.get(flow.back_key) is flow:
            del back[flow.back_key]

    def expire(self, now: float) -> int:
        """Drop flows idle past their timeout; returns how many went."""
        gone = [f for f in self.flows() if now - f.last >= f.timeout]
        for flow in gone:
            self.remove(flow)
        return len(gone)

    def drop_proxies(self, proxies: set[bytes] | frozenset[bytes]) -> None:
        """Forget the flows to these proxy addresses (their name is no longer served)."""
        for flow in [f for f in self.flows() if f.proxy in proxies]:
            self.remove(flow)

    # -- the way back ------------------------------------------------------------------
    def back_of(self, packet: bytes, now: float) -> bytes | None:
        """``packet`` from the site to this client, translated; ``None`` when no flow is its.

        The caller checked the version and that the destination is this client.
        """
        b0 = packet[0]
        if b0 >> 4 == 4:
            offset = (b0 & 0x0F) << 2
            protocol = packet[9]
            version = 4
            if packet[6] & 0x1F or packet[7]:
                return None
        else:
            offset = 40
            protocol = packet[6]
            version = 6
        if protocol in (PROTO_ICMP, PROTO_ICMPV6):
            if len(packet) < offset + 8:
                return None
            kind = packet[offset]
            errors = ICMP_ERRORS if protocol == PROTO_ICMP else ICMPV6_ERRORS
            if kind in errors:
                return self._error_back(packet, version, offset, now)
            if kind not in _ECHO:
                return None
        key = flow_key(packet, version, offset, protocol)
        if key is None:
            return None
        if protocol == PROTO_TCP:
            flow = self.tcp_back.get(key)
        elif protocol == PROTO_UDP:
            flow = self.udp_back.get(key)
        else:
            table = self.other_back.get(protocol)
            flow = table.get(key) if table is not None else None
        if flow is None:
            return None
        flow.last = now
        return rewrite(packet, version, offset, protocol, dst=False, address=flow.proxy,
                       adjustment=flow.back_adj)  # fmt: skip

    def _error_back(self, packet: bytes, version: int, offset: int, now: float) -> bytes | None:
        """An ICMP error about one of our flows: translate the quoted packet as well."""
        inner_at = offset + 8
        if version == 4:
            if len(packet) < inner_at + 20 or packet[inner_at] >> 4 != 4:
                return None
            inner_offset = inner_at + ((packet[inner_at] & 0x0F) << 2)
            inner_protocol = packet[inner_at + 9]
            client = packet[inner_at + 12 : inner_at + 16]
            inner_dst = packet[inner_at + 16 : inner_at + 20]
        else:
            if len(packet) < inner_at + 40 or packet[inner_at] >> 4 != 6:
                return None
            inner_offset = inner_at + 40
            inner_protocol = packet[inner_at + 6]
            client = packet[inner_at + 8 : inner_at + 24]
            inner_dst = packet[inner_at + 24 : inner_at + 40]
        if inner_protocol in (PROTO_TCP, PROTO_UDP):
            if len(packet) < inner_offset + 4:
                return None
            ports = packet[inner_offset : inner_offset + 4]
            key = inner_dst + client + ports[2:4] + ports[0:2]
        elif inner_protocol in (PROTO_ICMP, PROTO_ICMPV6):
            if len(packet) < inner_offset + 6:
                return None
            key = inner_dst + client + packet[inner_offset + 4 : inner_offset + 6]
        else:
            key = inner_dst + client
        _, back = self._tables(inner_protocol)
        flow = back.get(key)
        if flow is None:
            return None
        flow.last = now
        out = bytearray(packet)
        if version == 4:
            out[inner_at + 16 : inner_at + 20] = flow.proxy
            out[inner_at + 10 : inner_at + 12] = b"\x00\x00"
            header_len = inner_offset - inner_at
            out[inner_at + 10 : inner_at + 12] = internet_checksum(
                bytes(out[inner_at : inner_at + header_len])
            ).to_bytes(2, "big")
            if packet[12:16] == flow.real:  # the real host itself answered
                out[12:16] = flow.proxy
            out[10:12] = b"\x00\x00"
            out[10:12] = internet_checksum(bytes(out[:offset])).to_bytes(2, "big")
            out[offset + 2 : offset + 4] = b"\x00\x00"
            out[offset + 2 : offset + 4] = internet_checksum(bytes(out[offset:])).to_bytes(2, "big")
        else:
            out[inner_at + 24 : inner_at + 40] = flow.proxy
            if packet[8:24] == flow.real:
                out[8:24] = flow.proxy
            out[offset + 2 : offset + 4] = b"\x00\x00"
            body = bytes(out[offset:])
            pseudo = bytes(out[8:40]) + struct.pack("!I3xB", len(body), PROTO_ICMPV6)
            out[offset + 2 : offset + 4] = internet_checksum(pseudo + body).to_bytes(2, "big")
        return bytes(out)
