"""``GET /v1/account``."""

from __future__ import annotations

from fastapi import APIRouter

from zerogate.api.accounts import service
from zerogate.api.accounts.schemas import AccountPublic
from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep

router = APIRouter(prefix="/v1/account", tags=["account"])


@router.get("")
async def get_account(principal: Admin, pool: PoolDep) -> AccountPublic:
    return await service.get_account(pool, principal)
