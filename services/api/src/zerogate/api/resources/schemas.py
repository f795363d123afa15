"""Resource schemas. Address and filters are validated by the engine."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zerogate.api.fields import BoundedObject, Name, Text
from zerogate.api.pagination import ordered

ResourceType = Literal["cidr", "ip", "dns", "internet"]
#: The address families a DNS resource's names are answered in (Firezone's ``ip_stack``);
#: only ``dual`` makes sense for the other types.
IpStack = Literal["dual", "ipv4_only", "ipv6_only"]
#: Filters are checked by ``zerogate.api.engine.addresses.validate_filters``.
Filters = Annotated[list[BoundedObject], Field(max_length=16)]


class ResourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ResourceType
    address: Text | None = None
    name: Name
    address_description: Text | None = None
    site_id: uuid.UUID
    filters: Filters = Field(
        default_factory=list,
        examples=[[{"protocol": "tcp", "ports": ["443", "8000-8100"]}, {"protocol": "icmp"}]],
    )
    ip_stack: IpStack = "dual"


class ResourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: Text | None = None
    name: Name | None = None
    address_description: Text | None = None
    site_id: uuid.UUID | None = None
    filters: Filters | None = None
    ip_stack: IpStack | None = None


class ResourcePublic(BaseModel):
    id: uuid.UUID
    type: ResourceType
    address: str | None
    name: str
    address_description: str | None
    site_id: uuid.UUID
    filters: list[dict[str, Any]]
    ip_stack: IpStack
    created_at: datetime
    updated_at: datetime

    @field_validator("filters")
    @classmethod
    def _documented_key_order(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # jsonb keeps keys in its own order; answer in the documented one.
        return [ordered(item, ("protocol", "ports")) for item in value]
