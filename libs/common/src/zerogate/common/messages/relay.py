"""Bus messages of the relay registry.

Subjects (from :mod:`zerogate.common.subjects`):

* ``RELAY_HEARTBEAT`` – every relay publishes :class:`RelayHeartbeat` every
  ``interval_s`` seconds; the registry considers a relay gone once it has
  missed three intervals.
* ``RELAY_SELECT`` (queue group ``REGISTRY_QUEUE``) – :class:`RelaySelectRequest`
  answered with :class:`RelaySelectReply`: the nearest live relays, each with
  fresh TURN credentials (:class:`RelayOffer`).
* ``event("relay", "online")`` / ``event("relay", "offline")`` –
  :class:`RelayOnline` / :class:`RelayOffline`.

Secrets (a relay's ``auth_secret``, an offer's ``password``) are
:class:`pydantic.SecretStr`: ``repr``/``str``/``model_dump()`` mask them, and only
JSON serialisation (what goes on the bus) reveals them. Never log
``model_dump_json()`` of these models.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from zerogate.common.messages import Message

__all__ = [
    "MAX_SELECT_COUNT",
    "RelayAddress",
    "RelayHeartbeat",
    "RelayOffer",
    "RelayOffline",
    "RelayOnline",
    "RelaySelectReply",
    "RelaySelectRequest",
]

#: The most relays one select request may ask for.
MAX_SELECT_COUNT: Final = 16

_ID_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,128}$"
_ID_RE: Final = re.compile(_ID_PATTERN)

Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
Port = Annotated[int, Field(ge=1, le=65535)]
#: Ids of relays and of the agents credentials are minted for. Restricted to
#: characters safe inside a TURN username (``<expiry>:<id>``) and a subject token.
Identifier = Annotated[str, Field(pattern=_ID_PATTERN)]


def _ip_list(values: list[str], version: Literal[4, 6]) -> list[str]:
    out = []
    for value in values:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address") from exc
        if addr.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        out.append(str(addr))
    return out


class RelayAddress(Message):
    """One transport address of a relay (its STUN/TURN UDP port)."""

    host: str
    port: Port

    @field_validator("host")
    @classmethod
    def _host_is_ip(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address") from exc

    @property
    def family(self) -> Literal[4, 6]:
        return 6 if ":" in self.host else 4

    def __str__(self) -> str:
        """``host:port``, IPv6 in brackets (RFC 3986 section 3.2.2)."""
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


class RelayHeartbeat(Message):
    """What a relay announces about itself on ``RELAY_HEARTBEAT``."""

    relay_id: Identifier
    public_ipv4: list[str] = Field(default_factory=list, max_length=16)
    public_ipv6: list[str] = Field(default_factory=list, max_length=16)
    #: STUN/TURN UDP port (3478 by default, RFC 8489 section 18.6).
    port: Port = 3478
    realm: str = Field(min_length=1, max_length=256)
    lat: Latitude | None = None
    lon: Longitude | None = None
    #: Active allocations.
    load: int = Field(default=0, ge=0)
    #: The TURN REST shared secret the relay checks credentials with.
    auth_secret: SecretStr = Field(min_length=1)
    version: str = Field(default="", max_length=64)
    #: Seconds until the next heartbeat.
    interval_s: float = Field(gt=0.0, le=3600.0, allow_inf_nan=False)
    sent_at: AwareDatetime

    @field_validator("public_ipv4")
    @classmethod
    def _v4(cls, values: list[str]) -> list[str]:
        return _ip_list(values, 4)

    @field_validator("public_ipv6")
    @classmethod
    def _v6(cls, values: list[str]) -> list[str]:
        return _ip_list(values, 6)

    @model_validator(mode="after")
    def _consistent(self) -> RelayHeartbeat:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        if not self.public_ipv4 and not self.public_ipv6:
            raise ValueError("a relay needs at least one public address")
        return self

    @field_serializer("auth_secret", when_used="json")
    def _reveal_secret(self, value: SecretStr) -> str:
        return value.get_secret_value()

    @property
    def addresses(self) -> list[RelayAddress]:
        """Every public address with the STUN/TURN port, IPv4 first."""
        return [
            RelayAddress(host=host, port=self.port)
            for host in (*self.public_ipv4, *self.public_ipv6)
        ]


class RelaySelectRequest(Message):
    """Ask for the relays nearest to an agent, with credentials minted for it.

    The asker's location is ``lat``/``lon`` when given (e.g. from a load
    balancer's geo headers), else the geolocation of ``ip``, else the centre of
    ``country`` (ISO 3166-1 alpha-2, e.g. from a CDN's country header); with
    none of them the registry picks at random.
    """

    ip: str | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    count: int = Field(default=2, ge=1, le=MAX_SELECT_COUNT)
    #: The agent (client or gateway id) the credentials are for.
    for_id: Identifier
    #: When the credentials should stop working; capped by the registry's TTL.
    expires_at: AwareDatetime | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address") from exc

    @field_validator("country")
    @classmethod
    def _country_upper(cls, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    @model_validator(mode="after")
    def _pair(self) -> RelaySelectRequest:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        return self


class RelayOffer(Message):
    """One relay and the TURN credentials to use it (TURN REST scheme)."""

    relay_id: Identifier
    addresses: list[RelayAddress]
    realm: str
    username: str
    password: SecretStr
    expires_at: AwareDatetime
    #: Great-circle distance to the asker, when both locations are known.
    distance_km: float | None = None

    @field_serializer("password", when_used="json")
    def _reveal_password(self, value: SecretStr) -> str:
        return value.get_secret_value()


class RelaySelectReply(Message):
    offers: list[RelayOffer]


class RelayOnline(Message):
    """A relay was heard from for the first time (or again after going offline)."""

    relay_id: Identifier
    addresses: list[RelayAddress]
    lat: Latitude | None = None
    lon: Longitude | None = None
    version: str = ""
    at: AwareDatetime


class RelayOffline(Message):
    """A relay is no longer offered: it missed three heartbeat intervals, or it
    restarted with a new secret (then :class:`RelayOnline` follows at once).
    Either way credentials handed out for it are void."""

    relay_id: Identifier
    last_seen: AwareDatetime
    at: AwareDatetime
