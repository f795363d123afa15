"""Which peers a relay may send to (RFC 8656 §21.2.2, §21.3, CVE-2018-4058, CVE-2020-26262).

Every IPv6 form that embeds an IPv4 address is first turned into that IPv4
address (:func:`normalise_ip`), then the address is checked against the refused
ranges below, the relay's own addresses, and finally the operator allow-list,
which wins over everything else.

An IPv6 peer must also be global unicast (2000::/3, RFC 4291 §2.4); anything else
(ULA, link-local, multicast, loopback, the unspecified address, 100::/64,
64:ff9b:1::/48 ...) is outside it and refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from zerogate.proto.net import IPAddress, IPNetwork, normalise_ip

__all__ = [
    "REFUSED_V4",
    "REFUSED_V6",
    "IPAddress",
    "PeerFilter",
    "normalise_ip",
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
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")  # RFC 4291 §2.4


class PeerFilter:
    """Decides whether a peer address may be relayed to (403 otherwise)."""

    def __init__(
        self,
        *,
        own_addresses: Iterable[str | IPAddress] = (),
        allow: Iterable[IPNetwork] = (),
    ) -> None:
        self._own = frozenset(normalise_ip(a) for a in own_addresses)
        self._allow = tuple(allow)

    def is_allowed(self, address: str | IPAddress) -> bool:
        """True when relaying to ``address`` is permitted. Never raises."""
        try:
            raw = ipaddress.ip_address(address) if isinstance(address, str) else address
            ip = normalise_ip(raw)
        except ValueError:
            return False
        # The operator's allow-list is matched against the address as given and
        # as normalised, so both "::ffff:10.0.0.0/104" and "10.0.0.0/8" work.
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
