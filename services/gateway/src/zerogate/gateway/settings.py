"""Gateway settings (``ZG_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from zerogate.common.agentsettings import AgentSettings


class GatewaySettings(AgentSettings):
    #: Name of the gateway's TUN interface.
    gateway_interface: str = Field(default="zg-gateway", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    #: Turn forwarding and masquerading on (off when the host is set up otherwise).
    gateway_host_setup: bool = True
