"""Which peers a relay may send to (RFC 8656 §21.2.2, §21.3, CVE-2018-4058, CVE-2020-26262).

Every IPv6 form that embeds an IPv4 address is first turned into that IPv4
address (:func:`~zerogate.proto.net.normalise_ip`). Then, in this order:

1. **The relay itself is never a peer**, whatever the allow-list says: an
   endpoint on one of the relay's own hosts whose port is the STUN/TURN listen
   port or inside the relay port range (:meth:`PeerFilter.is_own_endpoint`).
   Relaying to it would make the relay talk to itself: a Send to its own listen
   port came back as a Data indication carrying the relay's own Binding answer,
   and a channel to another allocation's port loops datagrams through the relay
   twice. The relay's own hosts are its listen, public and relay addresses, the
   unspecified addresses (``0.0.0.0`` and ``::`` reach the local host on
   Linux), and, when a listen socket is bound to a wildcard, every local
   address of that family: loopback plus the interface addresses the service
   passes in ``own_addresses``. Permissions are per IP (RFC 8656 §9), so a
   permission for an allowed own IP is granted; it is the ChannelBind, the Send
   indication and the Data indication to or from such an endpoint that are
   refused or dropped.
2. **Never a unicast peer**: the unspecified address, multicast and the limited
   broadcast address are refused even when an allow-list covers them.
3. The operator's allow-list (matched against the address as given and as
   normalised) permits anything else in it, even private, loopback or the
   relay's own addresses (other ports of them: see 1).
4. Otherwise the relay's own addresses and the refused ranges below are
   refused. An IPv6 peer must also be global unicast (2000::/3, RFC 4291 §2.4);
   anything else (ULA, link-local, loopback, 100::/64, 64:ff9b:1::/48 ...) is
   outside it and refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from zerogate.proto.net import IPAddress, IPNetwork, normalise_ip

__all__ = [
    "NEVER_PEERS",
    "REFUSED_V4",
    "REFUSED_V6",
    "PeerFilter",
]


# IANA IPv4 Special-Purpose Address Registry (RFC 6890) and friends.
REFUSED_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network", includes the unspecified address (RFC 791)
        "10.0.0.0/8",  # private (RFC 1918)
        "100.64.0.0/10",  # shared address space / CGNAT (RFC 6598)
        "127.0.0.0/8",  # loopback (RFC 1122)
        "169.254.0.0/16",  # link-local (RFC 3927)
        "172.16.0.0/12",  # private (RFC 1918)
        "192.0.0.0/24",  # IETF protocol assignments (RFC 6890)
        "192.0.2.0/24",  # documentation TEST-NET-1 (RFC 5737)
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated (RFC 7526)
        "192.168.0.0/16",  # private (RFC 1918)
        "198.18.0.0/15",  # benchmarking (RFC 2544)
        "198.51.100.0/24",  # documentation TEST-NET-2 (RFC 5737)
        "203.0.113.0/24",  # documentation TEST-NET-3 (RFC 5737)
        "224.0.0.0/4",  # multicast (RFC 5771)
        "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255 (RFC 1112)
    )
)

# Refused even inside 2000::/3 (everything outside 2000::/3 is refused anyway).
REFUSED_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "2001::/23",  # IETF protocol assignments incl. Teredo, ORCHID, benchmarking (RFC 2928)
        "2001:db8::/32",  # documentation (RFC 3849)
        "2002::/16",  # 6to4 whose embedded IPv4 could not be checked (normally normalised)
        "3fff::/20",  # documentation (RFC 9637)
    )
)

#: No allow-list opens these: they are not one unicast peer.
NEVER_PEERS: tuple[IPNetwork, ...] = (
    ipaddress.IPv4Network("0.0.0.0/32"),  # unspecified (RFC 1122 §3.2.1.3)
    ipaddress.IPv4Network("224.0.0.0/4"),  # multicast (RFC 5771)
    ipaddress.IPv4Network("255.255.255.255/32"),  # limited broadcast (RFC 919)
    ipaddress.IPv6Network("::/128"),  # unspecified (RFC 4291 §2.5.2)
    ipaddress.IPv6Network("ff00::/8"),  # multicast (RFC 4291 §2.7)
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")  # RFC 4291 §2.4
_UNSPECIFIED = (ipaddress.IPv4Address(0), ipaddress.IPv6Address(0))  # 0.0.0.0 and ::
_LOOPBACK: dict[int, IPNetwork] = {
    4: ipaddress.IPv4Network("127.0.0.0/8"),  # RFC 1122 §3.2.1.3
    6: ipaddress.IPv6Network("::1/128"),  # RFC 4291 §2.5.3
}


def _parse(address: str | IPAddress) -> tuple[IPAddress, IPAddress] | None:
    """``(as given, normalised)``, or None for something that is no IP."""
    try:
        raw = ipaddress.ip_address(address) if isinstance(address, str) else address
        return raw, normalise_ip(raw)
    except ValueError:
        return None


class PeerFilter:
    """Decides whether a peer may be relayed to (403 or a silent drop otherwise).

    ``own_addresses``: the relay's own hosts (listen, public and relay addresses,
    and the local interface addresses when listening on a wildcard).
    ``own_ports``: the relay port range; :meth:`add_listen_endpoint` adds each
    bound listen socket. ``allow``: the operator allow-list. See the module
    docstring for the order of the checks.
    """

    def __init__(
        self,
        *,
        own_addresses: Iterable[str | IPAddress] = (),
        own_ports: Iterable[range] = (),
        allow: Iterable[IPNetwork] = (),
    ) -> None:
        self._own = {normalise_ip(a) for a in own_addresses}
        self._own_hosts = set(self._own) | set(_UNSPECIFIED)
        self._own_ports = list(own_ports)
        self.listen_ports: set[int] = set()
        self._wildcard: set[int] = set()
        self._allow = tuple(allow)

    def add_listen_endpoint(self, address: str | IPAddress, port: int) -> None:
        """A listen socket is bound on ``(address, port)``; a wildcard means every
        local address of that family (loopback included) reaches it."""
        ip = normalise_ip(address)
        if ip.is_unspecified:
            self._wildcard.add(ip.version)
        else:
            self._own.add(ip)
            self._own_hosts.add(ip)
        self._own_ports.append(range(port, port + 1))
        self.listen_ports.add(port)

    def is_own_endpoint(self, address: str | IPAddress, port: int) -> bool:
        """True when ``(address, port)`` is, or may become, one of the relay's own
        sockets: an own host, and the listen port or a port of the relay range."""
        if not any(port in ports for ports in self._own_ports):
            return False
        return self.is_own_host(address)

    def is_own_host(self, address: str | IPAddress) -> bool:
        """True when datagrams to ``address`` reach this relay's sockets."""
        parsed = _parse(address)
        if parsed is None:
            return False
        ip = parsed[1]
        if ip in self._own_hosts:
            return True
        return ip.version in self._wildcard and ip in _LOOPBACK[ip.version]

    def is_allowed(self, address: str | IPAddress) -> bool:
        """True when a permission for ``address`` may be installed. Never raises."""
        parsed = _parse(address)
        if parsed is None:
            return False
        raw, ip = parsed
        if any(candidate in net for candidate in (ip, raw) for net in NEVER_PEERS):
            return False
        for net in self._allow:
            for candidate in (ip, raw):
                if candidate.version == net.version and candidate in net:
                    return True
        if ip in self._own:
            return False
        if isinstance(ip, ipaddress.IPv4Address):
            return not any(ip in net for net in REFUSED_V4)
        if ip not in _GLOBAL_UNICAST_V6:
            return False
        return not any(ip in net for net in REFUSED_V6)

    def permits(self, address: str | IPAddress, port: int) -> bool:
        """True when datagrams may be relayed to or from ``(address, port)``."""
        return not self.is_own_endpoint(address, port) and self.is_allowed(address)
