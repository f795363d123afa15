"""``/v1/groups`` and ``/v1/groups/{id}/members``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from zerogate.api.actors.schemas import ActorPublic
from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep, PublisherDep
from zerogate.api.groups import service
from zerogate.api.groups.schemas import (
    GroupCreate,
    GroupPublic,
    GroupUpdate,
    MembersPublic,
    MembersUpdate,
)
from zerogate.api.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/v1/groups", tags=["groups"])
Params = Annotated[PageParams, Depends(page_params)]


@router.get("")
async def list_groups(principal: Admin, pool: PoolDep, params: Params) -> Page[GroupPublic]:
    return await service.list_groups(pool, principal, params)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_group(body: GroupCreate, principal: Admin, pool: PoolDep) -> GroupPublic:
    return await service.create_group(pool, principal, body)


@router.get("/{group_id}")
async def get_group(group_id: uuid.UUID, principal: Admin, pool: PoolDep) -> GroupPublic:
    return await service.get_group(pool, principal, group_id)


@router.patch("/{group_id}")
async def update_group(
    group_id: uuid.UUID, body: GroupUpdate, principal: Admin, pool: PoolDep
) -> GroupPublic:
    return await service.update_group(pool, principal, group_id, body)


@router.delete("/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(
    group_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    await service.delete_group(pool, publisher, principal, group_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{group_id}/members")
async def list_members(
    group_id: uuid.UUID, principal: Admin, pool: PoolDep, params: Params
) -> Page[ActorPublic]:
    return await service.list_members(pool, principal, group_id, params)


@router.put("/{group_id}/members")
async def replace_members(
    group_id: uuid.UUID,
    body: MembersUpdate,
    principal: Admin,
    pool: PoolDep,
    publisher: PublisherDep,
) -> MembersPublic:
    return await service.replace_members(pool, publisher, principal, group_id, body.actor_ids)
