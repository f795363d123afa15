"""``/v1/auth_providers``: an account's OpenID Connect identity providers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from zerogate.api.auth import Admin
from zerogate.api.auth_providers import service
from zerogate.api.auth_providers.schemas import (
    AuthProviderCreate,
    AuthProviderPublic,
    AuthProviderUpdate,
)
from zerogate.api.deps import PoolDep, PublisherDep, SettingsDep
from zerogate.api.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/v1/auth_providers", tags=["auth_providers"])
Params = Annotated[PageParams, Depends(page_params)]


@router.get("")
async def list_auth_providers(
    principal: Admin, pool: PoolDep, params: Params
) -> Page[AuthProviderPublic]:
    return await service.list_providers(pool, principal, params)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_auth_provider(
    body: AuthProviderCreate, principal: Admin, pool: PoolDep, settings: SettingsDep
) -> AuthProviderPublic:
    return await service.create_provider(pool, settings, principal, body)


@router.get("/{auth_provider_id}")
async def get_auth_provider(
    auth_provider_id: uuid.UUID, principal: Admin, pool: PoolDep
) -> AuthProviderPublic:
    return await service.get_provider(pool, principal, auth_provider_id)


@router.patch("/{auth_provider_id}")
async def update_auth_provider(
    auth_provider_id: uuid.UUID,
    body: AuthProviderUpdate,
    principal: Admin,
    pool: PoolDep,
    settings: SettingsDep,
) -> AuthProviderPublic:
    return await service.update_provider(pool, settings, principal, auth_provider_id, body)


@router.delete("/{auth_provider_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_auth_provider(
    auth_provider_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    """Revokes every token signed in through the provider, then deletes it."""
    await service.delete_provider(pool, publisher, principal, auth_provider_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
