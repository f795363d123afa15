"""Gateway settings (``ZG_`` environment variables)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from zerogate.common.agentsettings import AgentSettings


class GatewaySettings(AgentSettings):
    #: Name of the gateway's TUN interface.
    gateway_interface: str = Field(default="zg-gateway", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    #: Turn forwarding and masquerading on (off when the host is set up otherwise).
    gateway_host_setup: bool = True
    #: Resolvers for the DNS resources' names (comma-separated; default: /etc/resolv.conf's).
    gateway_dns_upstream: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("gateway_dns_upstream", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
