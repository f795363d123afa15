"""``/v1/tokens``: API tokens."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep, PublisherDep, SettingsDep
from zerogate.api.pagination import Page, PageParams, page_params
from zerogate.api.tokens import service
from zerogate.api.tokens.schemas import TokenCreate, TokenCreated, TokenPublic

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(
    body: TokenCreate, principal: Admin, pool: PoolDep, settings: SettingsDep
) -> TokenCreated:
    return await service.create_api_token(pool, principal, body, settings)


@router.get("")
async def list_tokens(
    principal: Admin, pool: PoolDep, params: Annotated[PageParams, Depends(page_params)]
) -> Page[TokenPublic]:
    return await service.list_tokens(pool, principal, params)


@router.get("/{token_id}")
async def get_token(token_id: uuid.UUID, principal: Admin, pool: PoolDep) -> TokenPublic:
    return await service.get_token(pool, principal, token_id)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(
    token_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    await service.revoke_token(pool, publisher, principal, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
