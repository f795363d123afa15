"""Policy schemas. Conditions are checked by the engine's ``parse_conditions``."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from zerogate.api.fields import BoundedObject, Text
from zerogate.api.pagination import ordered

Description = Text
Conditions = Annotated[
    list[BoundedObject],
    Field(
        max_length=16,
        examples=[[{"property": "remote_country", "operator": "is_in", "values": ["DE", "FR"]}]],
    ),
]


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_id: uuid.UUID
    resource_id: uuid.UUID
    description: Description | None = None
    conditions: Conditions = Field(default_factory=list)


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_id: uuid.UUID | None = None
    resource_id: uuid.UUID | None = None
    description: Description | None = None
    conditions: Conditions | None = None


class PolicyPublic(BaseModel):
    id: uuid.UUID
    group_id: uuid.UUID
    resource_id: uuid.UUID
    description: str | None
    conditions: list[dict[str, Any]]
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @field_validator("conditions")
    @classmethod
    def _documented_key_order(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # jsonb keeps keys in its own order; answer in the documented one.
        return [ordered(item, ("property", "operator", "values")) for item in value]


class EvaluateContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remote_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    country: Annotated[str, StringConstraints(min_length=2, max_length=2)] | None = None
    time: AwareDatetime | None = Field(default=None, description="Default: now.")
    client_verified: bool | None = Field(
        default=None, description="Default: the client's state when client_id is given, else false."
    )


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None
    resource_id: uuid.UUID
    context: EvaluateContext = Field(default_factory=EvaluateContext)

    @model_validator(mode="after")
    def _one_subject(self) -> EvaluateRequest:
        if (self.actor_id is None) == (self.client_id is None):
            raise ValueError("give exactly one of actor_id and client_id")
        return self


class EvaluateAllow(BaseModel):
    """``{"decision": "allow", "expires_at", "policy_id"}``: ``expires_at`` is the end
    of the winning policy's time window (``null``: the access does not expire)."""

    decision: Literal["allow"] = "allow"
    expires_at: datetime | None
    policy_id: uuid.UUID


class EvaluateDeny(BaseModel):
    """``{"decision": "deny", "violated_properties": [...]}``: the properties whose
    conditions failed (empty: no enabled policy of the actor's groups names the
    resource; ``actor_disabled``: the actor is disabled)."""

    decision: Literal["deny"] = "deny"
    violated_properties: list[str]


EvaluateResponse = Annotated[EvaluateAllow | EvaluateDeny, Field(discriminator="decision")]
