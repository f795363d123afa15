"""Resource addresses and traffic filters: validation, normalisation and matching.

A resource has a ``type`` and an ``address``:

``cidr``
    An IPv4 or IPv6 network. Host bits are cleared (``10.0.0.5/24`` becomes
    ``10.0.0.0/24``); a bare address becomes a host network (``/32``, ``/128``).
``ip``
    One IPv4 or IPv6 address. A host prefix is accepted and dropped
    (``10.0.0.5/32`` becomes ``10.0.0.5``); any shorter prefix is refused.
``dns``
    A DNS name, optionally with wildcards (below).
``internet``
    Everything else; it has no address (``None``).

Refused IP space, for both ``cidr`` and ``ip`` (a network that overlaps a refused
range at all, containing it or contained in it, is refused):

* ``0.0.0.0/0`` and ``::/0`` (that is the internet resource);
* unspecified / "this network" ``0.0.0.0/8`` and ``::``; loopback ``127.0.0.0/8``
  and ``::1``; link-local ``169.254.0.0/16`` and ``fe80::/10``; multicast
  ``224.0.0.0/4`` and ``ff00::/8``; the reserved ``240.0.0.0/4`` (with the
  broadcast address); the IPv4-compatible ``::/96`` and IPv4-mapped
  ``::ffff:0:0/96`` forms (write the IPv4 address instead);
* Zerogate's own ranges (DESIGN.md, "Addresses"): tunnel addresses
  ``100.64.0.0/11`` and ``fd00:2021:1111::/107``, DNS proxy IPs ``100.96.0.0/11``
  and ``fd00:2021:1111:8000::/107``, and the client stub resolver (``100.100.111.1``
  lies in the proxy range; ``fd00:2021:1111:8000:100:100:111:0`` lies outside the
  IPv6 proxy range, so it is listed on its own);
* any IPv6 address or prefix that reaches a refused IPv4 range through an
  IPv4-in-IPv6 form: NAT64 ``64:ff9b::/96`` (and the local-use ``64:ff9b:1::/48``,
  whose IPv4 position is unknown), 6to4 ``2002::/16``, SIIT ``::ffff:0:0:0/96`` and
  Teredo ``2001::/32``, judged by :func:`zerogate.proto.net.embedded_ipv4_networks`
  (the normalisation the relay's peer filter uses); so ``64:ff9b::7f00:1``,
  ``2002:7f00:1::/48`` and ``64:ff9b::/96`` (which holds loopback) are refused, while
  ``64:ff9b::808:808`` is not.

DNS names and patterns
----------------------
Names are case-insensitive: they are lower-cased, one trailing dot is dropped and
unicode labels are IDNA-encoded (UTS #46 mapping, IDNA 2008). Each label is 1..63
octets and the whole name at most 253 (RFC 1035 §2.3.4); labels use letters,
digits, ``-`` (not first or last) and ``_``.

Wildcards:

* ``?`` matches exactly one character within a label;
* ``*`` matches zero or more characters within one label; a label that is only
  ``*`` therefore matches exactly one whole label (``*.example.com`` matches
  ``a.example.com`` but neither ``example.com`` nor ``a.b.example.com``);
* ``**`` must be a whole label and matches zero or more whole labels, so
  ``**.example.com`` matches ``example.com`` itself and every subdomain at any
  depth (as in Firezone).

Refused: a wildcard in the top-level label, a single-label name (``com``, ``*``),
``localhost`` and anything under it (RFC 6761 §6.3), an all-numeric top-level
label (RFC 3696 §2; that is an IP address), ``**`` twice in a row, and a
wildcard that covers a public suffix: its fixed part (the labels after the last
one holding a wildcard) may be neither a public suffix nor lie above one, by the
Public Suffix List, private section included (:mod:`.publicsuffix`). So
``*.com``, ``**.co.uk``, ``**.github.io``, ``**.рф`` and ``**.amazonaws.com`` (above
``s3.amazonaws.com``) are refused, ``**.example.co.uk`` and exact names such as
``co.uk`` are not. Every two-letter top-level label counts as a country's, listed
or not.

Precedence when several resources match a name: exact > ``?`` > ``*`` > ``**``
(a pattern is ranked by its broadest wildcard); then more literal labels, then
more literal characters, then the pattern text and resource id (so the answer is
deterministic). For IP addresses the longest prefix wins, then the lowest
resource id; an ``internet`` resource matches every IP address as a ``/0`` does.

Filters
-------
``[{"protocol": "tcp"|"udp"|"icmp", "ports": ["443", "8000-8100"]}]``: tcp/udp
take an optional list of ports or ranges ``A-B`` with 1 <= A <= B <= 65535
(empty means every port); icmp takes none; a protocol appears at most once and
its port ranges may not overlap. No filters at all means all traffic.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal, TypedDict

from zerogate.api.engine.errors import EngineValidationError
from zerogate.api.engine.errors import show_input as _show
from zerogate.api.engine.publicsuffix import covering_public_suffix
from zerogate.proto.dns import names as _names
from zerogate.proto.dns.names import MAX_LABEL_LENGTH, MAX_NAME_LENGTH, NameMatcher
from zerogate.proto.net import IPAddress, IPNetwork, embedded_ipv4_networks

__all__ = [
    "DnsPattern",
    "Filter",
    "ResourceMatcher",
    "ResourceType",
    "filter_permits",
    "normalize_address",
    "normalize_dns_pattern",
    "parse_network",
    "validate_filters",
]

ResourceType = Literal["cidr", "ip", "dns", "internet"]
RESOURCE_TYPES: Final = ("cidr", "ip", "dns", "internet")


# Label and name lengths (RFC 1035 §2.3.4), wildcards, pattern kinds and the
# matching itself come from zerogate.proto.dns.names, which the client shares.
_MAX_INPUT_LENGTH: Final = _names.MAX_INPUT_LENGTH
_WILDCARD_CHARS: Final = _names.WILDCARD_CHARS
_DOUBLE_STAR: Final = _names.DOUBLE_STAR

# (network, why) — the first one that overlaps names the refusal. Specific first.
_REFUSED_V4: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (ipaddress.IPv4Network("100.64.0.0/11"), "the Zerogate tunnel address range"),
    (ipaddress.IPv4Network("100.96.0.0/11"), "the Zerogate DNS proxy address range"),
    (ipaddress.IPv4Network("0.0.0.0/8"), "unspecified / 'this network' (RFC 1122 §3.2.1.3)"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback (RFC 1122 §3.2.1.3)"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local (RFC 3927)"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast (RFC 5771)"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved / broadcast (RFC 1112 §4, RFC 919)"),
)
# The same, loopback first: a prefix that reaches every IPv4 address is named by
# the range that matters most.
_REFUSED_V4_BY_MEANING: Final = tuple(sorted(_REFUSED_V4, key=lambda r: not r[0].is_loopback))
_REFUSED_V6: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (ipaddress.IPv6Network("fd00:2021:1111::/107"), "the Zerogate tunnel address range"),
    (ipaddress.IPv6Network("fd00:2021:1111:8000::/107"), "the Zerogate DNS proxy address range"),
    (
        ipaddress.IPv6Network("fd00:2021:1111:8000:100:100:111:0/128"),
        "the Zerogate client stub resolver",
    ),
    (ipaddress.IPv6Network("::/128"), "unspecified (RFC 4291 §2.5.2)"),
    (ipaddress.IPv6Network("::1/128"), "loopback (RFC 4291 §2.5.3)"),
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible (RFC 4291 §2.5.5.1); use the IPv4 form"),
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped (RFC 4291 §2.5.5.2); use the IPv4 form"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local (RFC 4291 §2.5.6)"),
    (ipaddress.IPv6Network("ff00::/8"), "multicast (RFC 4291 §2.7)"),
)

_LABEL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _invalid(message: str) -> EngineValidationError:
    return EngineValidationError(message)


# --------------------------------------------------------------------------- IP


def parse_network(text: str) -> IPNetwork:
    """Parse ``addr`` or ``addr/len`` strictly (decimal prefix, no zone id)."""
    if "%" in text:
        raise _invalid(f"an address with a zone id is not accepted: {_show(text)}")
    addr_text, slash, prefix_text = text.partition("/")
    try:
        address = ipaddress.ip_address(addr_text)
    except ValueError:
        raise _invalid(f"not an IP address: {_show(addr_text)}") from None
    if not slash:
        return ipaddress.ip_network(address)
    if not (prefix_text.isascii() and prefix_text.isdigit()) or len(prefix_text) > 3:
        raise _invalid(f"not a prefix length: {_show(prefix_text)}")
    prefix = int(prefix_text)
    if prefix > address.max_prefixlen:
        raise _invalid(f"prefix length {prefix} is longer than {address.max_prefixlen}")
    return ipaddress.ip_network((address, prefix), strict=False)


def _refuse_special(network: IPNetwork) -> None:
    if network.prefixlen == 0:
        raise _invalid(f"{network} is the whole internet: use the internet resource")
    if isinstance(network, ipaddress.IPv4Network):
        for reserved4, why in _REFUSED_V4:
            if network.overlaps(reserved4):
                raise _invalid(f"{network} overlaps {reserved4}, {why}")
    else:
        for reserved6, why in _REFUSED_V6:
            if network.overlaps(reserved6):
                raise _invalid(f"{network} overlaps {reserved6}, {why}")
        # NAT64, 6to4, SIIT and Teredo reach the IPv4 address they embed: judge
        # that address (or the IPv4 networks a prefix reaches) like an IPv4 one,
        # with the normalisation the relay's peer filter uses too.
        for reached in embedded_ipv4_networks(network):
            for reserved4, why in _REFUSED_V4_BY_MEANING:
                if reached.overlaps(reserved4):
                    what = "any IPv4 address" if reached.prefixlen == 0 else f"IPv4 {reached}"
                    raise _invalid(
                        f"{network} reaches {what} through an IPv4-in-IPv6 form (NAT64,"
                        f" 6to4, SIIT or Teredo), which overlaps {reserved4}, {why}"
                    )


def normalize_cidr(text: str) -> IPNetwork:
    """Return the network of a ``cidr`` resource, host bits cleared; refuse special space."""
    network = parse_network(text.strip())
    _refuse_special(network)
    return network


def normalize_ip(text: str) -> IPAddress:
    """Return the address of an ``ip`` resource; a full-length prefix is accepted."""
    network = parse_network(text.strip())
    if network.prefixlen != network.max_prefixlen:
        raise _invalid(
            f"an ip resource is one address; {_show(text.strip())} is a network (use cidr)"
        )
    _refuse_special(network)
    return network.network_address


# -------------------------------------------------------------------------- DNS


def _to_ascii_label(label: str) -> str:
    if not label.isascii() and any(ch in _WILDCARD_CHARS for ch in label):
        raise _invalid(f"a label cannot mix wildcards and non-ASCII characters: {_show(label)}")
    try:
        return _names.to_ascii_label(label)
    except _names.LabelError:
        raise _invalid(f"label is not a valid internationalised label: {_show(label)}") from None


def _split_name(text: str) -> list[str]:
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise _invalid("a DNS name is required")
    labels = [_to_ascii_label(label) for label in name.split(".")]
    for label in labels:
        if not label:
            raise _invalid(f"empty label in {_show(text.strip())}")
    return labels


def _check_pattern_label(label: str) -> None:
    if len(label) > MAX_LABEL_LENGTH:
        raise _invalid(f"label longer than {MAX_LABEL_LENGTH} characters: {_show(label, 20)}")
    if label == _DOUBLE_STAR:
        return
    if _DOUBLE_STAR in label:
        raise _invalid(f"'**' must be a whole label, not part of {_show(label)}")
    bad = {ch for ch in label if ch not in _LABEL_CHARS and ch not in _WILDCARD_CHARS}
    if bad:
        chars = "".join(sorted(bad))
        raise _invalid(f"label {_show(label)} has characters not allowed: {chars!r}")
    if label[0] == "-" or label[-1] == "-":
        raise _invalid(f"label {_show(label)} starts or ends with '-'")


def normalize_dns_pattern(text: str) -> str:
    """Validate and normalise a DNS name or wildcard pattern (see the module docstring)."""
    if len(text) > _MAX_INPUT_LENGTH:
        raise _invalid(f"name longer than {MAX_NAME_LENGTH} characters")
    labels = _split_name(text)
    for label in labels:
        _check_pattern_label(label)
    tld = labels[-1]
    if tld == "localhost":
        raise _invalid("localhost and names under it are not resources (RFC 6761 §6.3)")
    if len(labels) < 2:
        raise _invalid(f"{tld!r} is a single label; a resource name needs at least two")
    if any(ch in _WILDCARD_CHARS for ch in tld):
        raise _invalid("wildcards are not allowed in the top-level label")
    if tld.isdigit():
        raise _invalid("the top-level label is all digits; use type ip or cidr for addresses")
    for first, second in itertools.pairwise(labels):
        if first == second == _DOUBLE_STAR:
            raise _invalid("'**' twice in a row; one '**' already matches any depth")
    name = ".".join(labels)
    if len(name) > MAX_NAME_LENGTH:
        raise _invalid(f"name longer than {MAX_NAME_LENGTH} characters")
    _refuse_public_wildcard(labels)
    return name


def _refuse_public_wildcard(labels: list[str]) -> None:
    """A wildcard may not cover a public suffix: its fixed part (the labels after
    the last one with a wildcard) must be neither a public suffix nor above one."""
    wild = [i for i, label in enumerate(labels) if set(label) & _WILDCARD_CHARS]
    if not wild:
        return
    fixed = ".".join(labels[wild[-1] + 1 :])
    covered = covering_public_suffix(fixed)
    if covered is None and len(labels[-1]) == 2 and "." not in fixed:
        covered = fixed  # every two-letter top-level label is a country's, listed or not
    if covered == fixed:
        raise _invalid(
            f"too broad: the wildcard covers {fixed!r}, a public suffix (Public Suffix List);"
            f" name a domain registered under it"
        )
    if covered is not None:
        raise _invalid(
            f"too broad: the wildcard over {fixed!r} covers {covered!r}, a public suffix"
            f" (Public Suffix List); name a domain registered under it"
        )


class DnsPattern(_names.DnsPattern):
    """A validated, normalised DNS name or wildcard pattern. Build with :meth:`parse`.

    The matching itself is :class:`zerogate.proto.dns.names.DnsPattern`'s, which
    the client applies to the names it is asked for.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> DnsPattern:
        pattern = cls.compile(normalize_dns_pattern(text))
        assert isinstance(pattern, DnsPattern)
        return pattern


# ---------------------------------------------------------------------- address


def normalize_address(type: ResourceType | str, address: str | None) -> str | None:
    """Validate a resource address for its type and return its canonical text.

    ``internet`` has no address: ``None`` (or an empty string) gives ``None``.
    Raises :class:`EngineValidationError` (a ``ValueError``) with a clear message.
    """
    if type == "internet":
        if address is None or (isinstance(address, str) and not address.strip()):
            return None
        raise _invalid("the internet resource has no address")
    if type not in RESOURCE_TYPES:
        raise _invalid(f"unknown resource type {_show(type)}; expected one of {RESOURCE_TYPES}")
    if not isinstance(address, str) or not address.strip():
        raise _invalid(f"a {type} resource needs an address")
    if type == "cidr":
        return normalize_cidr(address).with_prefixlen
    if type == "ip":
        return str(normalize_ip(address))
    return normalize_dns_pattern(address)


class ResourceMatcher:
    """Find the resource for an IP address or a queried DNS name.

    Built from ``(resource_id, type, address)`` items; addresses are validated
    and normalised (a bad one raises ``ValueError``). ``match_ip`` answers by
    longest prefix (ties: lowest resource id), falling back to an ``internet``
    resource if there is one; ``match_name`` by the DNS precedence of the module
    docstring (:class:`zerogate.proto.dns.names.NameMatcher`, which the client
    uses too). Both cost a few dictionary lookups, not a scan of all resources.
    """

    __slots__ = ("_internet", "_names", "_prefixes")

    def __init__(self, items: Iterable[tuple[str, ResourceType | str, str | None]]) -> None:
        # family version -> [(prefixlen, {network int -> resource id})], longest first
        by_len: dict[int, dict[int, dict[int, str]]] = {4: {}, 6: {}}
        patterns: list[tuple[str, DnsPattern]] = []
        internet: str | None = None
        for resource_id, rtype, address in items:
            normalized = normalize_address(rtype, address)
            if rtype == "internet":
                internet = resource_id if internet is None else min(internet, resource_id)
            elif rtype in ("cidr", "ip"):
                assert normalized is not None
                network = ipaddress.ip_network(normalized)
                table = by_len[network.version].setdefault(network.prefixlen, {})
                key = int(network.network_address)
                table[key] = min(table.get(key, resource_id), resource_id)
            else:
                assert normalized is not None
                patterns.append((resource_id, DnsPattern.parse(normalized)))
        self._prefixes: dict[int, tuple[tuple[int, int, Mapping[int, str]], ...]] = {}
        for version, lengths in by_len.items():
            bits = 32 if version == 4 else 128
            full = (1 << bits) - 1
            self._prefixes[version] = tuple(
                (plen, full ^ ((1 << (bits - plen)) - 1), lengths[plen])
                for plen in sorted(lengths, reverse=True)
            )
        self._names = NameMatcher(patterns)
        self._internet = internet

    def match_ip(self, ip: IPAddress | str) -> str | None:
        """The resource id for ``ip``: longest prefix, then the internet resource."""
        if isinstance(ip, str):
            try:
                ip = ipaddress.ip_address(ip.strip())
            except ValueError:
                return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        for _plen, mask, table in self._prefixes[ip.version]:
            found = table.get(value & mask)
            if found is not None:
                return found
        return self._internet

    def match_name(self, fqdn: str) -> str | None:
        """The resource id for a queried name; ``None`` if no DNS resource matches."""
        return self._names.match(fqdn)


# ---------------------------------------------------------------------- filters

FilterProtocol = Literal["tcp", "udp", "icmp"]


class Filter(TypedDict):
    """A normalised filter: ``{"protocol": "tcp", "ports": ["443", "8000-8100"]}``."""

    protocol: str
    ports: list[str]


_PORT_PROTOCOLS: Final = ("tcp", "udp")
_FILTER_PROTOCOLS: Final = ("icmp", "tcp", "udp")
MIN_PORT: Final = 1  # port 0 is reserved (RFC 6335 §6)
MAX_PORT: Final = 65535


def _parse_port_range(raw: object) -> tuple[int, int]:
    if isinstance(raw, bool):
        raise _invalid(f"not a port: {_show(raw)}")
    if isinstance(raw, int):
        start = end = raw
    elif isinstance(raw, str):
        text = raw.strip()
        first, dash, second = text.partition("-")
        first, second = first.strip(), second.strip()
        parts = (first, second) if dash else (first,)
        for part in parts:
            if not (part.isascii() and part.isdigit()) or len(part) > 5:
                raise _invalid(f"not a port or port range: {_show(raw)}")
        start = int(first)
        end = int(second) if dash else start
    else:
        raise _invalid(f"not a port or port range: {_show(raw)}")
    if not MIN_PORT <= start <= MAX_PORT or not MIN_PORT <= end <= MAX_PORT:
        raise _invalid(f"ports must be between {MIN_PORT} and {MAX_PORT}: {_show(raw)}")
    if start > end:
        raise _invalid(f"port range starts after it ends: {_show(raw)}")
    return start, end


def validate_filters(raw: object) -> list[Filter]:
    """Validate and normalise resource filters (see the module docstring).

    Returns ``[{"protocol": ..., "ports": [...]}]`` sorted by protocol, ports
    sorted and written ``"N"`` or ``"A-B"``. Raises ``EngineValidationError``.
    """
    if not isinstance(raw, list | tuple):
        raise _invalid("filters must be a list")
    seen: dict[str, list[tuple[int, int]]] = {}
    for item in raw:
        if not isinstance(item, Mapping):
            raise _invalid("each filter must be an object with 'protocol' and 'ports'")
        extra = set(item) - {"protocol", "ports"}
        if extra:
            raise _invalid(f"unknown filter fields: {sorted(map(str, extra))}")
        protocol = item.get("protocol")
        if not isinstance(protocol, str) or protocol.strip().lower() not in _FILTER_PROTOCOLS:
            raise _invalid(f"filter protocol must be one of tcp, udp, icmp: {_show(protocol)}")
        protocol = protocol.strip().lower()
        if protocol in seen:
            raise _invalid(f"protocol {protocol} appears in more than one filter")
        ports_raw = item.get("ports")
        if ports_raw is None:
            ports_raw = []
        if not isinstance(ports_raw, list | tuple):
            raise _invalid("filter ports must be a list")
        if protocol not in _PORT_PROTOCOLS and ports_raw:
            raise _invalid(f"{protocol} filters take no ports")
        ranges = sorted(_parse_port_range(port) for port in ports_raw)
        for (a_start, a_end), (b_start, b_end) in itertools.pairwise(ranges):
            if b_start <= a_end:
                raise _invalid(
                    f"port ranges {_format_range(a_start, a_end)} and "
                    f"{_format_range(b_start, b_end)} overlap"
                )
        seen[protocol] = ranges
    return [
        Filter(protocol=protocol, ports=[_format_range(a, b) for a, b in seen[protocol]])
        for protocol in _FILTER_PROTOCOLS
        if protocol in seen
    ]


def _format_range(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"


def filter_permits(
    filters: Sequence[Mapping[str, object]], protocol: str, port: int | None
) -> bool:
    """Whether normalised ``filters`` let ``protocol``/``port`` through.

    No filters means all traffic. A tcp/udp filter without ports allows every
    port; ``port`` is ignored for icmp.
    """
    if not filters:
        return True
    for item in filters:
        if item.get("protocol") != protocol:
            continue
        ports = item.get("ports") or []
        if protocol not in _PORT_PROTOCOLS or not ports:
            return True
        if port is None:
            return False
        assert isinstance(ports, list)
        for entry in ports:
            start, end = _parse_port_range(entry)
            if start <= port <= end:
                return True
        return False
    return False
