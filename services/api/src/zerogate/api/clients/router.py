"""``/v1/clients``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from zerogate.api.auth import Admin
from zerogate.api.clients import service
from zerogate.api.clients.schemas import ClientPublic
from zerogate.api.deps import PoolDep, PublisherDep
from zerogate.api.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/v1/clients", tags=["clients"])


@router.get("")
async def list_clients(
    principal: Admin,
    pool: PoolDep,
    params: Annotated[PageParams, Depends(page_params)],
    actor_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[ClientPublic]:
    return await service.list_clients(pool, principal, params, actor_id)


@router.get("/{client_id}")
async def get_client(client_id: uuid.UUID, principal: Admin, pool: PoolDep) -> ClientPublic:
    return await service.get_client(pool, principal, client_id)


@router.delete("/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_client(
    client_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    await service.delete_client(pool, publisher, principal, client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{client_id}/verify")
async def verify_client(
    client_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> ClientPublic:
    return await service.set_verified(pool, publisher, principal, client_id, verified=True)


@router.post("/{client_id}/unverify")
async def unverify_client(
    client_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> ClientPublic:
    return await service.set_verified(pool, publisher, principal, client_id, verified=False)
