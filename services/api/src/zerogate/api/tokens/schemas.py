"""Token schemas. The plaintext appears only in :class:`TokenCreated`, once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from zerogate.api.fields import Label


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor_id: uuid.UUID | None = Field(
        default=None, description="An api_client actor; default: the caller."
    )
    name: Label | None = None
    expires_at: datetime | None = Field(
        default=None, description="Default: now + ZG_API_TOKEN_TTL_DAYS."
    )


class TokenPublic(BaseModel):
    id: uuid.UUID
    type: Literal["api", "client", "gateway"]
    actor_id: uuid.UUID | None
    site_id: uuid.UUID | None
    name: str | None
    expires_at: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    auth_provider_id: uuid.UUID | None = Field(
        default=None, description="Set on sessions signed in through an identity provider."
    )


class TokenCreated(TokenPublic):
    token: str = Field(description="Shown only in this response; store it now.")
