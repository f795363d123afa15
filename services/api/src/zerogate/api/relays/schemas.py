"""Relay schemas: the query of ``GET /v1/relays/nearest`` and its answer."""

from __future__ import annotations

from pydantic import BaseModel, Field, IPvAnyAddress, model_validator

from zerogate.api.pagination import PageMetadata
from zerogate.common.messages.relay import Latitude, Longitude

#: The most relays one request may ask for (signaling hands agents two).
MAX_COUNT = 8


class NearestQuery(BaseModel):
    """Where the agent is: ``lat``/``lon`` when given, else the geolocation of ``ip``;
    with neither, the registry picks at random."""

    ip: IPvAnyAddress | None = Field(default=None, description="the agent's public IP")
    lat: Latitude | None = None
    lon: Longitude | None = None
    count: int = Field(default=2, ge=1, le=MAX_COUNT)

    @model_validator(mode="after")
    def _a_whole_location(self) -> NearestQuery:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self


class RelayPublic(BaseModel):
    relay_id: str
    addresses: list[str]
    realm: str
    distance_km: float | None


class RelayList(BaseModel):
    """The list shape of every list route; one page, nearest first, no cursor."""

    data: list[RelayPublic]
    metadata: PageMetadata
