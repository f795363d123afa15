"""Client schemas. Clients are created by agents connecting, never by REST."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime

from pydantic import BaseModel


class ClientPublic(BaseModel):
    id: uuid.UUID
    actor_id: uuid.UUID
    external_id: str
    name: str
    public_key: str
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address
    verified_at: datetime | None
    last_seen_at: datetime | None
    last_seen_remote_ip: str | None
    last_seen_version: str | None
    created_at: datetime
    updated_at: datetime
