"""Site, gateway and gateway-token schemas."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from zerogate.api.fields import Label, Name


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class SiteUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class SitePublic(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


class GatewayTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Label | None = None
    expires_at: datetime | None = Field(
        default=None,
        description="Default: never (revoke it instead); at most ZG_GATEWAY_TOKEN_MAX_DAYS ahead.",
    )


class GatewayPublic(BaseModel):
    id: uuid.UUID
    site_id: uuid.UUID
    external_id: str
    name: str
    public_key: str
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address
    last_seen_at: datetime | None
    last_seen_remote_ip: str | None
    last_seen_version: str | None
    created_at: datetime
