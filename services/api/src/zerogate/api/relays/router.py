"""``GET /v1/relays/nearest``: the relays an agent at an address would be given.

The api asks the relay registry over the bus (``zg.v1.relay.select``), exactly
as signaling does when an agent connects, so one HTTP request is one trace:
HTTP server span → ``publish zg.v1.relay.select`` → ``process
zg.v1.relay.select``. Credentials are never shown here.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from zerogate.api.auth import Admin
from zerogate.api.errors import Invalid
from zerogate.api.pagination import PageMetadata
from zerogate.common import subjects
from zerogate.common.bus import Bus
from zerogate.common.errors import Unavailable
from zerogate.common.messages.relay import RelaySelectReply, RelaySelectRequest

SELECT_TIMEOUT: Final = 2.0

router = APIRouter(prefix="/v1/relays", tags=["relays"])


class RelayPublic(BaseModel):
    relay_id: str
    addresses: list[str]
    realm: str
    distance_km: float | None


class RelayList(BaseModel):
    """The list shape of every list route; one page, nearest first, no cursor."""

    data: list[RelayPublic]
    metadata: PageMetadata


@router.get("/nearest", response_model=RelayList)
async def nearest_relays(
    request: Request,
    principal: Admin,
    ip: Annotated[str | None, Query(description="the agent's public IP")] = None,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    count: Annotated[int, Query(ge=1, le=8)] = 2,
) -> RelayList:
    bus: Bus | None = request.app.state.bus
    if bus is None:
        raise Unavailable("the api runs without a bus")
    try:
        ask = RelaySelectRequest(
            ip=ip, lat=lat, lon=lon, count=count, for_id=str(principal.actor_id or "admin")
        )
    except ValueError as exc:
        raise Invalid(str(exc).splitlines()[-1] if str(exc) else "invalid query") from exc
    reply = await bus.request(subjects.RELAY_SELECT, ask, RelaySelectReply, timeout=SELECT_TIMEOUT)
    data = [
        RelayPublic(
            relay_id=offer.relay_id,
            addresses=[str(a) for a in offer.addresses],
            realm=offer.realm,
            distance_km=offer.distance_km,
        )
        for offer in reply.offers
    ]
    # Nearest first, at most ``count``: one page, no cursor.
    return RelayList(
        data=data, metadata=PageMetadata(count=len(data), limit=count, next_page_cursor=None)
    )
