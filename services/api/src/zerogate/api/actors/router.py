"""``/v1/actors``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from zerogate.api.actors import service
from zerogate.api.actors.schemas import ActorCreate, ActorPublic, ActorUpdate, ClientTokenCreate
from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep, PublisherDep, SettingsDep
from zerogate.api.pagination import Page, PageParams, page_params
from zerogate.api.tokens.schemas import TokenCreated, TokenPublic

router = APIRouter(prefix="/v1/actors", tags=["actors"])
Params = Annotated[PageParams, Depends(page_params)]


@router.get("")
async def list_actors(principal: Admin, pool: PoolDep, params: Params) -> Page[ActorPublic]:
    return await service.list_actors(pool, principal, params)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_actor(body: ActorCreate, principal: Admin, pool: PoolDep) -> ActorPublic:
    return await service.create_actor(pool, principal, body)


@router.get("/{actor_id}")
async def get_actor(actor_id: uuid.UUID, principal: Admin, pool: PoolDep) -> ActorPublic:
    return await service.get_actor(pool, principal, actor_id)


@router.patch("/{actor_id}")
async def update_actor(
    actor_id: uuid.UUID, body: ActorUpdate, principal: Admin, pool: PoolDep
) -> ActorPublic:
    return await service.update_actor(pool, principal, actor_id, body)


@router.delete("/{actor_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_actor(
    actor_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    await service.delete_actor(pool, publisher, principal, actor_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{actor_id}/disable")
async def disable_actor(
    actor_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> ActorPublic:
    return await service.set_disabled(pool, publisher, principal, actor_id, disabled=True)


@router.post("/{actor_id}/enable")
async def enable_actor(
    actor_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> ActorPublic:
    return await service.set_disabled(pool, publisher, principal, actor_id, disabled=False)


@router.post("/{actor_id}/client_tokens", status_code=status.HTTP_201_CREATED)
async def create_client_token(
    actor_id: uuid.UUID,
    body: ClientTokenCreate,
    principal: Admin,
    pool: PoolDep,
    settings: SettingsDep,
) -> TokenCreated:
    return await service.create_client_token(pool, settings, principal, actor_id, body)


@router.get("/{actor_id}/client_tokens")
async def list_client_tokens(
    actor_id: uuid.UUID, principal: Admin, pool: PoolDep, params: Params
) -> Page[TokenPublic]:
    return await service.list_client_tokens(pool, principal, actor_id, params)
