"""Addresses shared by every core: one definition of each type, one normalisation.

``Endpoint`` is a UDP address as ``(ip literal, port)``; IPv6 literals are
written without brackets and without a zone. The TURN core's three kinds of
endpoint get their own ``NewType`` so they cannot be mixed up silently.

:func:`normalise_ip` turns every IPv6 form that embeds an IPv4 address into
that IPv4 address. Anything that decides whether an address is refused (the
relay's peer filter, the api's resource checks) normalises first, so a
loopback address cannot slip through as NAT64, 6to4, SIIT or Teredo.
"""

from __future__ import annotations

import ipaddress
from typing import NewType

__all__ = [
    "ClientAddr",
    "Endpoint",
    "IPAddress",
    "IPNetwork",
    "PeerAddr",
    "RelayAddr",
    "embedded_ipv4_networks",
    "normalise_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Endpoint = tuple[str, int]
"""(ip literal, port). IPv6 literals are written without brackets."""

#: Where a TURN client's datagrams come from (its server-reflexive address).
ClientAddr = NewType("ClientAddr", Endpoint)
#: A peer an allocation relays to and from.
PeerAddr = NewType("PeerAddr", Endpoint)
#: A relayed transport address (the relay's public IP and an allocation port).
RelayAddr = NewType("RelayAddr", Endpoint)

_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # RFC 4291 §2.5.5.2
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1 (deprecated)
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # RFC 3056
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, refused as a whole
_TEREDO = ipaddress.IPv6Network("2001::/32")  # RFC 4380
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT
# :: and ::1 lie inside ::/96 but are the IPv6 unspecified and loopback
# addresses (RFC 4291 §2.5.2, §2.5.3), never IPv4-compatible ones.
_NOT_COMPATIBLE = ipaddress.IPv6Network("::/127")


def normalise_ip(address: str | IPAddress) -> IPAddress:
    """Turn every IPv4-in-IPv6 form into its IPv4 address; leave anything else alone.

    Handled: IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, SIIT
    ``::ffff:0:a.b.c.d``, 6to4 ``2002:AABB:CCDD::/48``, the NAT64 well-known
    prefix ``64:ff9b::a.b.c.d`` and Teredo ``2001:0::/32`` (the client address,
    de-obfuscated). Raises ``ValueError`` for a string that is no IP literal.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if ip.version == 4:
        return ip
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.scope_id is not None:
        ip = ipaddress.IPv6Address(ip.packed)
    value = int(ip)
    if ip in _NOT_COMPATIBLE:
        return ip
    if ip in _V4_MAPPED or ip in _V4_COMPATIBLE or ip in _NAT64_WKP or ip in _V4_TRANSLATED:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    if ip in _TEREDO:
        return ipaddress.IPv4Address((value & 0xFFFFFFFF) ^ 0xFFFFFFFF)
    return ip


def embedded_ipv4_networks(
    network: ipaddress.IPv6Network,
) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks an IPv6 prefix reaches through a translation form.

    A prefix inside one of the forms of :func:`normalise_ip` (or one that
    contains such a form wholly or in part) reaches the IPv4 addresses
    embedded at that form's bit positions; the result lists them so a caller
    can refuse a prefix that covers a refused IPv4 range. Teredo's embedded
    client address is obfuscated (bit-inverted), which a prefix check cannot
    undo for partial prefixes, so any prefix overlapping Teredo that does not
    pin the whole address yields ``0.0.0.0/0``.
    """
    out: list[ipaddress.IPv4Network] = []
    for form, shift in (
        (_V4_MAPPED, 0),
        (_V4_COMPATIBLE, 0),
        (_NAT64_WKP, 0),
        (_V4_TRANSLATED, 0),
        (_SIX_TO_FOUR, 80),
    ):
        if not network.overlaps(form):
            continue
        if form == _V4_COMPATIBLE and network.subnet_of(_NOT_COMPATIBLE):
            continue
        if network.prefixlen <= form.prefixlen:
            out.append(ipaddress.IPv4Network("0.0.0.0/0"))
            continue
        fixed = min(network.prefixlen - form.prefixlen, 32)
        value = (int(network.network_address) >> shift) & 0xFFFFFFFF
        mask = ((1 << fixed) - 1) << (32 - fixed) if fixed else 0
        out.append(ipaddress.IPv4Network((value & mask, fixed)))
    if network.overlaps(_NAT64_LOCAL):
        # RFC 8215 local-use prefixes embed IPv4 at a position the operator picks.
        out.append(ipaddress.IPv4Network("0.0.0.0/0"))
    if network.overlaps(_TEREDO):
        if network.prefixlen == 128:
            out.append(ipaddress.IPv4Network(normalise_ip(network.network_address)))
        else:
            out.append(ipaddress.IPv4Network("0.0.0.0/0"))
    return out
