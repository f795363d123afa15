"""FastAPI dependencies shared by the routers: pool, bus, settings."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from zerogate.api.db import Pool
from zerogate.api.events import Publisher
from zerogate.api.settings import ApiSettings


def get_pool(request: Request) -> Pool:
    return request.app.state.pool


def get_publisher(request: Request) -> Publisher | None:
    return cast("Publisher | None", request.app.state.bus)


def get_settings(request: Request) -> ApiSettings:
    return cast(ApiSettings, request.app.state.settings)


PoolDep = Annotated[Pool, Depends(get_pool)]
PublisherDep = Annotated[Publisher | None, Depends(get_publisher)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
