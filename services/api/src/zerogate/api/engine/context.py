"""What the engine knows about the client at the moment of a decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from zerogate.api.engine.errors import EngineValidationError

__all__ = ["DecisionContext"]


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """The client's situation, as signaling reports it in ``flow.authorize``.

    ``remote_ip``: the client's public address (``None`` if unknown);
    ``country``: ISO 3166-1 alpha-2 code from geolocating it (``None`` if unknown);
    ``time``: the instant of the decision, timezone-aware (the engine never reads
    the clock); ``client_verified``: whether an admin verified the client device.
    """

    remote_ip: IPv4Address | IPv6Address | None
    country: str | None
    time: datetime
    client_verified: bool

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise EngineValidationError("DecisionContext.time must be timezone-aware")
