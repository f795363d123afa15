"""Settings of the relay process: ``ZG_RELAY_*`` environment variables or CLI flags.

Every list setting takes a comma-separated string in the environment
(``ZG_RELAY_PUBLIC_IP=203.0.113.7,2001:db8::7``) and a repeated flag on the
command line (``--public-ip 203.0.113.7 --public-ip 2001:db8::7``). The bus URL
is the shared ``ZG_NATS_URL``; without it the relay runs standalone as a plain
TURN server (TURN REST API credentials, ``--auth-secret``).

A bad value stops start-up with one line naming the variable (exit code 2, see
:func:`zerogate.common.settings.load_settings`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Annotated, Any, Final

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from zerogate.common.settings import ZGSettings
from zerogate.proto.net import IPAddress, IPNetwork
from zerogate.proto.turn import MAX_CREDENTIAL_LIFETIME

ENV_PREFIX: Final = "ZG_RELAY_"

#: STUN/TURN over UDP (RFC 8489 section 18.6).
DEFAULT_PORT: Final = 3478
#: The IANA dynamic port range, which RFC 8656 section 7.2 recommends for relays.
DEFAULT_RELAY_PORTS: Final = (49152, 65535)
#: Allocation lifetimes (RFC 8656 section 7.2): 600 s by default, 3600 s at most.
DEFAULT_LIFETIME: Final = 600
MAX_LIFETIME: Final = 3600
DEFAULT_HTTP_PORT: Final = 8081
DEFAULT_HEARTBEAT_INTERVAL: Final = 5.0
#: TURN REST usernames expiring further ahead are refused (401): 24 hours.
DEFAULT_MAX_CREDENTIAL_LIFETIME: Final = MAX_CREDENTIAL_LIFETIME

_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_RANGE_RE: Final = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


def _default_relay_id() -> str:
    """The host name, reduced to characters valid in a TURN username and a subject token."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:122] or "relay"
    return f"relay-{name}"


def _split(value: Any) -> Any:
    """Accept ``"a,b"`` (environment) as well as ``["a", "b"]`` (flags, code)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class RelaySettings(ZGSettings):
    """Settings of ``zerogate-relay``; see ``zerogate-relay --help`` for each one."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        validate_default=True,
    )

    # Shared with every service (no RELAY in the variable name).
    nats_url: str | None = Field(default=None, validation_alias="ZG_NATS_URL")
    log_level: str = Field(default="INFO", validation_alias="ZG_LOG_LEVEL")

    relay_id: str = Field(default_factory=_default_relay_id)
    listen_ip: Annotated[list[IPAddress], NoDecode] = Field(
        default_factory=lambda: [ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")]  # noqa: S104
    )
    public_ip: Annotated[list[IPAddress], NoDecode] = Field(default_factory=list)
    #: 0 binds a free port (tests); the heartbeat announces the bound one.
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    relay_ports: Annotated[tuple[int, int], NoDecode] = DEFAULT_RELAY_PORTS
    realm: str = Field(default="zerogate", min_length=1, max_length=127)
    auth_secret: SecretStr | None = None
    allow_peer: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    lat: float | None = Field(default=None, ge=-90.0, le=90.0, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0, allow_inf_nan=False)
    #: Probes are scraped from outside the pod/host, so all interfaces by default.
    http_ip: IPAddress = ipaddress.ip_address("0.0.0.0")  # noqa: S104
    #: 0 binds a free port (logged).
    http_port: int = Field(default=DEFAULT_HTTP_PORT, ge=0, le=65535)
    heartbeat_interval: float = Field(
        default=DEFAULT_HEARTBEAT_INTERVAL, gt=0.0, le=3600.0, allow_inf_nan=False
    )
    default_lifetime: int = Field(default=DEFAULT_LIFETIME, ge=1, le=MAX_LIFETIME)
    max_lifetime: int = Field(default=MAX_LIFETIME, ge=1, le=MAX_LIFETIME)
    #: Seconds a TURN REST username may still have to live when it is used; one
    #: whose ``<expiry>`` lies further ahead is refused (401).
    max_credential_lifetime: int = Field(
        default=DEFAULT_MAX_CREDENTIAL_LIFETIME, ge=60, le=30 * 24 * 3600
    )
    #: Allocations one username may hold (RFC 8656 section 7.2: 486 above it).
    user_quota: int = Field(default=64, ge=1)
    #: Allocations in total (486 above it); the relay port range bounds it too.
    total_quota: int = Field(default=10_000, ge=1)
    #: Also accept ChannelBind numbers 0x5000-0x7FFF, the RFC 5766 range that RFC 8656
    #: section 12 reserved (legacy clients such as coturn 4.6's turnutils_uclient).
    rfc5766_channel_numbers: bool = False
    #: Send runs of equal-sized datagrams to one destination with UDP GSO (Linux).
    udp_gso: bool = True
    #: Kernel socket buffers in bytes (the default ~200 KiB drops bursts).
    socket_buffer: int = Field(default=8 * 1024 * 1024, ge=65536, le=1 << 30)

    @field_validator("listen_ip", "public_ip", "allow_peer", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("allow_peer", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        # A bare address means that one host.
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("relay_ports", mode="before")
    @classmethod
    def _port_range(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _RANGE_RE.match(value)
            if match is None:
                raise ValueError(f"{value!r} is not a port range LOW-HIGH")
            value = (int(match.group(1)), int(match.group(2)))
        return value

    @field_validator("relay_ports")
    @classmethod
    def _port_range_bounds(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"{low}-{high} is not within 1024-65535 with LOW <= HIGH")
        return value

    @field_validator("relay_id")
    @classmethod
    def _relay_id(cls, value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError("use 1-128 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not re.match(r"^(nats|tls|ws|wss)://", value):
            raise ValueError("expected nats://host:port (or tls://, ws://, wss://)")
        return value

    # Cross-field checks are field validators (not a model validator) so that an
    # error names its variable; fields are validated in declaration order.
    @field_validator("listen_ip")
    @classmethod
    def _one_per_family(cls, value: list[IPAddress]) -> list[IPAddress]:
        if not value:
            raise ValueError("at least one address is needed")
        families = [ip.version for ip in value]
        if len(set(families)) != len(families):
            raise ValueError("at most one address per family (IPv4, IPv6)")
        return value

    @field_validator("public_ip")
    @classmethod
    def _some_public(cls, value: list[IPAddress], info: ValidationInfo) -> list[IPAddress]:
        listen = info.data.get("listen_ip") or []
        if not value and all(ip.is_unspecified for ip in listen):
            raise ValueError("required when listening on a wildcard address")
        return value

    @field_validator("auth_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and "nats_url" in info.data and info.data["nats_url"] is None:
            raise ValueError("required without ZG_NATS_URL (a standalone relay checks credentials)")
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("lon")
    @classmethod
    def _lat_lon(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "lat" in info.data and (info.data["lat"] is None) != (value is None):
            raise ValueError("lat and lon go together")
        return value

    @field_validator("max_lifetime")
    @classmethod
    def _lifetimes(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("default_lifetime", 0):
            raise ValueError("below default_lifetime")
        return value

    def public_ips(self, version: int) -> list[IPAddress]:
        """Addresses announced for a family: ``public_ip``, else a specific ``listen_ip``."""
        public = [ip for ip in self.public_ip if ip.version == version]
        if public:
            return public
        return [ip for ip in self.listen_ip if ip.version == version and not ip.is_unspecified]
