"""Audit log schemas (read only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class AuditEntryPublic(BaseModel):
    id: uuid.UUID
    actor_id: uuid.UUID | None = Field(description="Who: the actor whose token made the change.")
    token_id: uuid.UUID | None = Field(description="The token used (its id, never the token).")
    action: str = Field(description="What: the operation, e.g. create_site, revoke_token.")
    method: str
    route: str = Field(description="The route template, e.g. /v1/sites/{site_id}.")
    target_ids: dict[str, str] = Field(
        description="Ids the change touched: those in the path and those it created."
    )
    remote_ip: str | None = Field(description="From which address the request came.")
    request_id: str = Field(description="The request's X-Request-ID.")
    created_at: datetime = Field(description="When (the transaction's time).")
