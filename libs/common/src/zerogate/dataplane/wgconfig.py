"""Parse wg-quick configuration files into frozen dataclasses.

Supported (the format of ``wg-quick(8)`` and ``wg(8)``):

``[Interface]``
    ``PrivateKey`` (required), ``Address`` (comma separated, repeatable, IPv4
    and IPv6, with or without a prefix length), ``ListenPort``, ``MTU``,
    ``FwMark``.
``[Peer]``
    ``PublicKey`` (required), ``PresharedKey``, ``AllowedIPs`` (comma
    separated, repeatable), ``Endpoint`` (``host:port`` or ``[v6]:port``),
    ``PersistentKeepalive`` (seconds, or ``off``).

Keys that only the ``wg-quick`` shell script acts upon (``DNS``, ``Table``,
``PreUp``, ``PostUp``, ``PreDown``, ``PostDown``, ``SaveConfig``) are *ignored
with a warning*: a file written for wg-quick still brings the tunnel up, and the
operator is told that no hook ran and no DNS was set. Any other key, a key
outside a section, or a bad value is a :class:`ConfigError` naming the key and
its line. Key names are case-insensitive, like wg-quick's.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from zerogate.dataplane.errors import ConfigError
from zerogate.proto.net import IPNetwork as IPNetwork  # re-exported: tun.py reads it here

KEY_LEN = 32  # Curve25519 keys and the PSK are 32 bytes (whitepaper §5.4)
IFNAMSIZ = 16  # linux/if.h: names are at most 15 bytes plus the NUL
INTERFACE_NAME_RE = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")  # wg-quick's own check
MIN_MTU = 576  # RFC 791 §3.1: every IPv4 host accepts 576 bytes
MAX_MTU = 65535
IPV6_MIN_MTU = 1280  # RFC 8200 §5
MAX_PORT = 65535
MAX_KEEPALIVE = 65535  # wg(8): persistent-keepalive is 1..65535 seconds

WG_QUICK_ONLY_KEYS = frozenset(
    {"dns", "table", "preup", "postup", "predown", "postdown", "saveconfig"}
)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class PeerConfig:
    public_key: bytes
    preshared_key: bytes | None = None
    allowed_ips: tuple[IPNetwork, ...] = ()
    endpoint: tuple[str, int] | None = None  # host (unresolved) and port
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class InterfaceConfig:
    name: str
    private_key: bytes
    addresses: tuple[IPInterface, ...] = ()
    listen_port: int | None = None
    mtu: int | None = None
    fwmark: int | None = None
    peers: tuple[PeerConfig, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)


def validate_interface_name(name: str) -> str:
    """Return ``name`` if it is a usable Linux interface name, else raise."""
    if not INTERFACE_NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ConfigError(
            f"interface name {name!r} must be 1-15 characters of [a-zA-Z0-9_=+.-]",
            key="interface name",
        )
    return name


def interface_name_from_path(path: str | Path) -> str:
    """The interface name wg-quick derives from a file name: ``wg0.conf`` -> ``wg0``."""
    base = Path(path).name
    base = base.removesuffix(".conf")
    return validate_interface_name(base)


def parse_key(value: str) -> bytes:
    """Decode a base64 WireGuard key (32 bytes)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc
    if len(raw) != KEY_LEN:
        raise ValueError(f"must decode to {KEY_LEN} bytes, got {len(raw)}")
    return raw


def parse_endpoint(value: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` (the host is not resolved here)."""
    value = value.strip()
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or value[close + 1 : close + 2] != ":":
            raise ValueError("expected [address]:port")
        host, port_text = value[1:close], value[close + 2 :]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError as exc:
            raise ValueError(f"{host!r} is not an IPv6 address") from exc
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError("expected host:port")
        if ":" in host:
            raise ValueError("an IPv6 endpoint must be written [address]:port")
    port = _parse_int(port_text, 1, MAX_PORT, "port")
    return host, port


def _parse_int(text: str, low: int, high: int, what: str) -> int:
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{what} must be a number")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{what} must be between {low} and {high}")
    return number


def parse_allowed_ip(value: str) -> IPNetwork:
    """``10.0.0.0/8``, ``fd00::/64`` or a bare address (a /32 or /128)."""
    value = value.strip()
    try:
        # Host bits set are masked off, as wg(8) does.
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP network") from exc


def parse_address(value: str) -> IPInterface:
    value = value.strip()
    try:
        return ipaddress.ip_interface(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc


def _split_list(value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",")]
    return [part for part in parts if part]


class _PeerBuilder:
    def __init__(self, line: int) -> None:
        self.line = line
        self.public_key: bytes | None = None
        self.preshared_key: bytes | None = None
        self.allowed_ips: list[IPNetwork] = []
        self.endpoint: tuple[str, int] | None = None
        self.persistent_keepalive: int | None = None


def parse_config(text: str, name: str) -> InterfaceConfig:
    """Parse the text of a wg-quick file for interface ``name``."""
    validate_interface_name(name)
    section: str | None = None
    seen_interface = False
    private_key: bytes | None = None
    addresses: list[IPInterface] = []
    listen_port: int | None = None
    mtu: int | None = None
    fwmark: int | None = None
    peers: list[_PeerBuilder] = []
    warnings: list[str] = []
    interface_line: int | None = None

    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            header = line.lower()
            if header == "[interface]":
                if seen_interface:
                    raise ConfigError("second [Interface] section", key="[Interface]", line=lineno)
                seen_interface = True
                interface_line = lineno
                section = "interface"
            elif header == "[peer]":
                section = "peer"
                peers.append(_PeerBuilder(lineno))
            else:
                raise ConfigError(f"unknown section {line}", key=line, line=lineno)
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        value = value.strip()
        if not sep or not key:
            raise ConfigError("expected Key = Value", key=line[:40], line=lineno)
        lkey = key.lower()
        if section is None:
            raise ConfigError("key outside any section", key=key, line=lineno)
        try:
            if section == "interface":
                if lkey == "privatekey":
                    private_key = parse_key(value)
                elif lkey == "address":
                    addresses.extend(parse_address(v) for v in _split_list(value))
                elif lkey == "listenport":
                    listen_port = _parse_int(value, 0, MAX_PORT, "port")
                elif lkey == "mtu":
                    mtu = _parse_int(value, MIN_MTU, MAX_MTU, "MTU")
                elif lkey == "fwmark":
                    fwmark = _parse_fwmark(value)
                elif lkey in WG_QUICK_ONLY_KEYS:
                    warnings.append(
                        f"line {lineno}: {key}: only wg-quick acts on this key; ignored"
                    )
                else:
                    raise ConfigError("unknown key in [Interface]", key=key, line=lineno)
            else:
                peer = peers[-1]
                if lkey == "publickey":
                    peer.public_key = parse_key(value)
                elif lkey == "presharedkey":
                    peer.preshared_key = parse_key(value)
                elif lkey == "allowedips":
                    peer.allowed_ips.extend(parse_allowed_ip(v) for v in _split_list(value))
                elif lkey == "endpoint":
                    peer.endpoint = parse_endpoint(value)
                elif lkey == "persistentkeepalive":
                    if value.lower() == "off":
                        peer.persistent_keepalive = None
                    else:
                        seconds = _parse_int(value, 0, MAX_KEEPALIVE, "keepalive")
                        peer.persistent_keepalive = seconds or None
                else:
                    raise ConfigError("unknown key in [Peer]", key=key, line=lineno)
        except ValueError as exc:
            raise ConfigError(str(exc), key=key, line=lineno) from exc

    if not seen_interface:
        raise ConfigError("no [Interface] section", key="[Interface]")
    if private_key is None:
        raise ConfigError("missing in [Interface]", key="PrivateKey", line=interface_line)
    if mtu is not None and mtu < IPV6_MIN_MTU and any(a.version == 6 for a in addresses):
        raise ConfigError(f"must be at least {IPV6_MIN_MTU} with an IPv6 Address", key="MTU")

    built: list[PeerConfig] = []
    seen_keys: set[bytes] = set()
    for peer in peers:
        if peer.public_key is None:
            raise ConfigError("missing in [Peer]", key="PublicKey", line=peer.line)
        if peer.public_key in seen_keys:
            raise ConfigError("same peer listed twice", key="PublicKey", line=peer.line)
        seen_keys.add(peer.public_key)
        built.append(
            PeerConfig(
                public_key=peer.public_key,
                preshared_key=peer.preshared_key,
                allowed_ips=tuple(peer.allowed_ips),
                endpoint=peer.endpoint,
                persistent_keepalive=peer.persistent_keepalive,
            )
        )
    return InterfaceConfig(
        name=name,
        private_key=private_key,
        addresses=tuple(addresses),
        listen_port=listen_port,
        mtu=mtu,
        fwmark=fwmark,
        peers=tuple(built),
        warnings=tuple(warnings),
    )


def _parse_fwmark(value: str) -> int | None:
    text = value.strip().lower()
    if text == "off":
        return None
    try:
        number = int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError as exc:
        raise ValueError("fwmark must be a number or off") from exc
    if not 0 <= number <= 0xFFFFFFFF:
        raise ValueError("fwmark must fit in 32 bits")
    return number or None


def load_config(path: str | Path) -> InterfaceConfig:
    """Read and parse a wg-quick file; the interface is named after the file."""
    name = interface_name_from_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", key="CONFIG") from exc
    return parse_config(text, name)
