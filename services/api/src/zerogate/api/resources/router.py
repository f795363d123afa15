"""``/v1/resources``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep, PublisherDep
from zerogate.api.pagination import Page, PageParams, page_params
from zerogate.api.resources import service
from zerogate.api.resources.schemas import ResourceCreate, ResourcePublic, ResourceUpdate

router = APIRouter(prefix="/v1/resources", tags=["resources"])


@router.get("")
async def list_resources(
    principal: Admin,
    pool: PoolDep,
    params: Annotated[PageParams, Depends(page_params)],
    site_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[ResourcePublic]:
    return await service.list_resources(pool, principal, params, site_id)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_resource(
    body: ResourceCreate, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> ResourcePublic:
    return await service.create_resource(pool, publisher, principal, body)


@router.get("/{resource_id}")
async def get_resource(resource_id: uuid.UUID, principal: Admin, pool: PoolDep) -> ResourcePublic:
    return await service.get_resource(pool, principal, resource_id)


@router.patch("/{resource_id}")
async def update_resource(
    resource_id: uuid.UUID,
    body: ResourceUpdate,
    principal: Admin,
    pool: PoolDep,
    publisher: PublisherDep,
) -> ResourcePublic:
    return await service.update_resource(pool, publisher, principal, resource_id, body)


@router.delete("/{resource_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_resource(
    resource_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    await service.delete_resource(pool, publisher, principal, resource_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
