"""Configuration of the TURN server core."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from zerogate.proto.net import IPNetwork
from zerogate.proto.turn.credentials import MAX_CREDENTIAL_LIFETIME
from zerogate.proto.turn.errors import LocalProtocolError

__all__ = [
    "CHANNEL_LIFETIME",
    "DEFAULT_LIFETIME",
    "MAX_CREDENTIAL_LIFETIME",
    "MAX_LIFETIME",
    "NONCE_LIFETIME",
    "PERMISSION_LIFETIME",
    "ServerConfig",
]

DEFAULT_LIFETIME = 600  # RFC 8656 §7.2: default allocation lifetime, seconds
MAX_LIFETIME = 3600  # RFC 8656 §7.2: a server SHOULD cap the lifetime at one hour
PERMISSION_LIFETIME = 300  # RFC 8656 §9: a permission lives 300 seconds
CHANNEL_LIFETIME = 600  # RFC 8656 §12: a channel binding lives 600 seconds
NONCE_LIFETIME = 600  # coturn `stale-nonce=600`
RELAY_PORT_MIN = 49152  # RFC 8656 §7.2 recommends the dynamic range 49152-65535
RELAY_PORT_MAX = 65535


@dataclass
class ServerConfig:
    """Everything the :class:`~zerogate.proto.turn.Server` needs to decide.

    ``relay_addresses_v4`` / ``relay_addresses_v6`` are the public addresses the
    server advertises in XOR-RELAYED-ADDRESS (only the first of each list is used
    for new allocations; an empty list means the family is not offered, and a
    request for it gets 440). The shell binds each relay port on the local
    address that corresponds to the advertised one.

    ``own_addresses`` are the listen and public addresses of this relay (and every
    local interface address when it listens on a wildcard); a peer on one of them
    is refused with 403 (the relay addresses are added automatically), and no
    allow-list opens their listen port or relay ports (see
    :mod:`zerogate.proto.turn.peers`).

    ``allow_peers`` is the operator allow-list: a peer whose normalised address is
    inside one of these networks is permitted even though it is private, loopback,
    or one of our own addresses (but never the relay's own sockets).

    Credentials: ``auth_secret`` enables the TURN REST API scheme (coturn's
    ``use-auth-secret``); ``static_users`` maps username to password. Both may be
    used at once. A REST username whose expiry lies more than
    ``max_credential_lifetime`` seconds ahead is refused (401). ``nonce_secret``
    keys the stateless nonces; give every process its own random 32 bytes.
    """

    realm: str
    nonce_secret: bytes
    auth_secret: bytes | None = None
    static_users: Mapping[str, str] = field(default_factory=dict)
    relay_addresses_v4: list[str] = field(default_factory=list)
    relay_addresses_v6: list[str] = field(default_factory=list)
    own_addresses: list[str] = field(default_factory=list)
    allow_peers: list[IPNetwork] = field(default_factory=list)
    relay_port_min: int = RELAY_PORT_MIN
    relay_port_max: int = RELAY_PORT_MAX
    default_lifetime: int = DEFAULT_LIFETIME
    max_lifetime: int = MAX_LIFETIME
    permission_lifetime: int = PERMISSION_LIFETIME
    channel_lifetime: int = CHANNEL_LIFETIME
    max_allocations_per_user: int = 64
    max_allocations_total: int = 10_000
    #: Distinct peer IPs one allocation may hold permissions for (508 beyond).
    max_permissions_per_allocation: int = 1024
    nonce_lifetime: int = NONCE_LIFETIME
    max_credential_lifetime: int = MAX_CREDENTIAL_LIFETIME
    software: str | None = "zerogate-relay"
    transaction_cache_seconds: float = 40.0  # RFC 8489 §6.3.1: Ti = 39.5 s for UDP
    #: Accept RFC 5766 channel numbers 0x4000-0x7FFF (coturn's turnutils_uclient
    #: picks from that range) instead of RFC 8656's 0x4000-0x4FFF.
    rfc5766_channel_numbers: bool = False

    def validate(self) -> None:
        """Raise :class:`LocalProtocolError` naming the first bad setting."""
        if not self.realm:
            raise LocalProtocolError("realm must not be empty")
        if len(self.nonce_secret) < 16:
            raise LocalProtocolError("nonce_secret must be at least 16 bytes")
        if not self.relay_addresses_v4 and not self.relay_addresses_v6:
            raise LocalProtocolError("relay_addresses_v4 or relay_addresses_v6 must be set")
        for name, values, version in (
            ("relay_addresses_v4", self.relay_addresses_v4, 4),
            ("relay_addresses_v6", self.relay_addresses_v6, 6),
        ):
            for value in values:
                try:
                    ok = ipaddress.ip_address(value).version == version
                except ValueError:
                    ok = False
                if not ok:
                    raise LocalProtocolError(f"{name}: {value!r} is not an IPv{version} address")
        for value in self.own_addresses:
            try:
                ipaddress.ip_address(value)
            except ValueError as exc:
                raise LocalProtocolError(f"own_addresses: {value!r} is not an IP") from exc
        if not 1 <= self.relay_port_min <= self.relay_port_max <= 65535:
            raise LocalProtocolError("relay_port_min/relay_port_max must be 1..65535, min <= max")
        if not 0 < self.default_lifetime <= self.max_lifetime:
            raise LocalProtocolError("default_lifetime must be in 1..max_lifetime")
        if self.max_allocations_per_user < 1 or self.max_allocations_total < 1:
            raise LocalProtocolError(
                "max_allocations_per_user and max_allocations_total must be positive"
            )
        if self.max_permissions_per_allocation < 1:
            raise LocalProtocolError("max_permissions_per_allocation must be positive")
        if self.nonce_lifetime < 1:
            raise LocalProtocolError("nonce_lifetime must be positive")
        if self.max_credential_lifetime < 1:
            raise LocalProtocolError("max_credential_lifetime must be positive")
