"""Signaling settings: ``ZG_`` environment variables (see the service README)."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from zerogate.common.messages.signaling import HEARTBEAT_TIMEOUT
from zerogate.common.settings import ZGSettings
from zerogate.proto.net import IPNetwork

DEFAULT_PORT = 8090


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SignalingSettings(ZGSettings):
    """What ``zerogate-signaling`` reads from the environment."""

    #: Address of the WebSocket edge and ``/healthz``.
    signaling_host: str = "127.0.0.1"
    #: 0 picks a free port (reported through ``ZG_PORTS_FILE``).
    signaling_port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    #: Proxies whose ``X-Forwarded-For`` is believed (comma-separated networks).
    signaling_trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    #: Name of this instance in the presence bucket (default: host, pid, random).
    signaling_instance_id: str = Field(
        default_factory=_instance_id, pattern=r"^[A-Za-z0-9_.-]{1,128}$"
    )
    #: Seconds a gateway's presence outlives its last refresh (a crashed
    #: instance's gateways disappear after this).
    signaling_presence_ttl: float = Field(default=30.0, ge=3.0, le=3600.0)
    #: Seconds a bus request (api, registry, another instance) may take.
    signaling_bus_timeout: float = Field(default=5.0, gt=0.0, le=60.0)
    #: Seconds a gateway has to confirm ``create_authorization``.
    signaling_gateway_timeout: float = Field(default=5.0, gt=0.0, le=60.0)
    #: Seconds an agent may stay silent before its session is closed (it heartbeats
    #: every 10 s).
    signaling_heartbeat_timeout: float = Field(default=HEARTBEAT_TIMEOUT, ge=1.0, le=3600.0)
    #: Relays offered to each agent.
    signaling_relay_count: int = Field(default=2, ge=0, le=16)

    @field_validator("signaling_trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return [
                    ipaddress.ip_network(part.strip(), strict=False)
                    for part in value.split(",")
                    if part.strip()
                ]
            except ValueError as exc:
                raise ValueError(f"not a list of networks: {exc}") from None
        return value
