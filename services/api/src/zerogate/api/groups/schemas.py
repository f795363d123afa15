"""Group schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from zerogate.api.fields import Name

#: Most actors one ``PUT /members`` may name.
MAX_MEMBERS_PER_PUT = 10_000


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class GroupPublic(BaseModel):
    id: uuid.UUID
    name: str
    kind: Literal["static", "everyone"]
    created_at: datetime
    updated_at: datetime


class MembersUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor_ids: list[uuid.UUID] = Field(max_length=MAX_MEMBERS_PER_PUT)


class MembersPublic(BaseModel):
    group_id: uuid.UUID
    actor_ids: list[uuid.UUID]
