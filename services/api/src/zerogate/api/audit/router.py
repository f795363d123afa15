"""``/v1/audit_log``: who changed what, when, from where (read only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from zerogate.api.audit import service
from zerogate.api.audit.schemas import AuditEntryPublic
from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep
from zerogate.api.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/v1/audit_log", tags=["audit"])


@router.get("")
async def list_audit_log(
    principal: Admin,
    pool: PoolDep,
    params: Annotated[PageParams, Depends(page_params)],
    actor_id: uuid.UUID | None = None,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Page[AuditEntryPublic]:
    """Oldest first, like every list; ``?actor_id=`` and ``?request_id=`` filter."""
    return await service.list_entries(
        pool, principal, params, actor_id=actor_id, request_id=request_id
    )
