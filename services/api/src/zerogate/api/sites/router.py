"""``/v1/sites``, with gateway tokens and gateways."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep, PublisherDep, SettingsDep
from zerogate.api.pagination import Page, PageParams, page_params
from zerogate.api.sites import service
from zerogate.api.sites.schemas import (
    GatewayPublic,
    GatewayTokenCreate,
    SiteCreate,
    SitePublic,
    SiteUpdate,
)
from zerogate.api.tokens.schemas import TokenCreated, TokenPublic

router = APIRouter(prefix="/v1/sites", tags=["sites"])
Params = Annotated[PageParams, Depends(page_params)]


@router.get("")
async def list_sites(principal: Admin, pool: PoolDep, params: Params) -> Page[SitePublic]:
    return await service.list_sites(pool, principal, params)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_site(body: SiteCreate, principal: Admin, pool: PoolDep) -> SitePublic:
    return await service.create_site(pool, principal, body)


@router.get("/{site_id}")
async def get_site(site_id: uuid.UUID, principal: Admin, pool: PoolDep) -> SitePublic:
    return await service.get_site(pool, principal, site_id)


@router.patch("/{site_id}")
async def update_site(
    site_id: uuid.UUID, body: SiteUpdate, principal: Admin, pool: PoolDep
) -> SitePublic:
    return await service.update_site(pool, principal, site_id, body)


@router.delete("/{site_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_site(
    site_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    await service.delete_site(pool, publisher, principal, site_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{site_id}/gateway_tokens", status_code=status.HTTP_201_CREATED)
async def create_gateway_token(
    site_id: uuid.UUID,
    body: GatewayTokenCreate,
    principal: Admin,
    pool: PoolDep,
    settings: SettingsDep,
) -> TokenCreated:
    return await service.create_gateway_token(pool, settings, principal, site_id, body)


@router.get("/{site_id}/gateway_tokens")
async def list_gateway_tokens(
    site_id: uuid.UUID, principal: Admin, pool: PoolDep, params: Params
) -> Page[TokenPublic]:
    return await service.list_gateway_tokens(pool, principal, site_id, params)


@router.delete("/{site_id}/gateway_tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_gateway_token(
    site_id: uuid.UUID,
    token_id: uuid.UUID,
    principal: Admin,
    pool: PoolDep,
    publisher: PublisherDep,
) -> Response:
    await service.revoke_gateway_token(pool, publisher, principal, site_id, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{site_id}/gateways")
async def list_gateways(
    site_id: uuid.UUID, principal: Admin, pool: PoolDep, params: Params
) -> Page[GatewayPublic]:
    return await service.list_gateways(pool, principal, site_id, params)
