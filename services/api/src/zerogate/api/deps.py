"""FastAPI dependencies shared by the routers: pool, bus, settings.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in
its thread pool, which cost every request several thread hand-offs for what is
an attribute read (see ``bench/bench_rest_list.py``).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from zerogate.api.db import Pool
from zerogate.api.events import Publisher
from zerogate.api.settings import ApiSettings
from zerogate.common.bus import Bus


def pool_of(request: Request) -> Pool:
    """The app's pool, for code that is not itself a dependency."""
    return request.app.state.pool


async def get_pool(request: Request) -> Pool:
    return request.app.state.pool


async def get_publisher(request: Request) -> Publisher | None:
    return cast("Publisher | None", request.app.state.bus)


async def get_bus(request: Request) -> Bus | None:
    """The bus, for requests to other services (``None`` when the api runs without one)."""
    return cast("Bus | None", request.app.state.bus)


async def get_settings(request: Request) -> ApiSettings:
    return cast(ApiSettings, request.app.state.settings)


PoolDep = Annotated[Pool, Depends(get_pool)]
PublisherDep = Annotated[Publisher | None, Depends(get_publisher)]
BusDep = Annotated[Bus | None, Depends(get_bus)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
