"""``GET /v1/relays/nearest``: the relays an agent at an address would be given."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from zerogate.api.auth import Admin
from zerogate.api.deps import BusDep
from zerogate.api.relays import service
from zerogate.api.relays.schemas import NearestQuery, RelayList

router = APIRouter(prefix="/v1/relays", tags=["relays"])


@router.get("/nearest")
async def nearest_relays(
    principal: Admin, bus: BusDep, query: Annotated[NearestQuery, Query()]
) -> RelayList:
    return await service.nearest_relays(bus, principal, query)
