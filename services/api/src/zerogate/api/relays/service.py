"""The relays the registry would hand an agent, asked over the bus exactly as
signaling asks when an agent connects (``zg.v1.relay.select``), so one HTTP
request is one trace: HTTP server span → ``publish zg.v1.relay.select`` →
``process zg.v1.relay.select``. Credentials are never shown."""

from __future__ import annotations

from typing import Final

from zerogate.api.auth import Principal
from zerogate.api.pagination import PageMetadata
from zerogate.api.relays.schemas import NearestQuery, RelayList, RelayPublic
from zerogate.common import subjects
from zerogate.common.bus import Bus
from zerogate.common.errors import Unavailable
from zerogate.common.messages.relay import RelaySelectReply, RelaySelectRequest

SELECT_TIMEOUT: Final = 2.0


async def nearest_relays(bus: Bus | None, principal: Principal, query: NearestQuery) -> RelayList:
    """Nearest first, at most ``query.count``: one page, no cursor. 503 without a
    bus or a registry (the bus errors are :class:`Unavailable`); 502 when the
    registry answers with an error."""
    if bus is None:
        raise Unavailable("the api runs without a bus")
    ask = RelaySelectRequest(
        ip=str(query.ip) if query.ip is not None else None,
        lat=query.lat,
        lon=query.lon,
        count=query.count,
        for_id=str(principal.actor_id),
    )
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
    return RelayList(
        data=data, metadata=PageMetadata(count=len(data), limit=query.count, next_page_cursor=None)
    )
