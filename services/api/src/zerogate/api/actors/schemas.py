"""Actor schemas, split by direction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from zerogate.api.fields import Label, Name, NoNul

ActorType = Literal["account_user", "account_admin_user", "service_account", "api_client"]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"),
    NoNul,
]


class ActorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ActorType
    name: Name
    email: Email | None = None


class ActorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ActorType | None = None
    name: Name | None = None
    email: Email | None = None


class ActorPublic(BaseModel):
    id: uuid.UUID
    type: ActorType
    name: str
    email: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ClientTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Label | None = None
    expires_at: datetime | None = Field(
        default=None, description="Default: now + ZG_CLIENT_TOKEN_TTL_DAYS."
    )
