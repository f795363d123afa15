"""Sites, their gateways and their (reusable, revocable) gateway tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta

from zerogate.api.auth import Principal
from zerogate.api.db import Connection, Pool, transaction
from zerogate.api.errors import Conflict, not_found
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.requestctx import note_created
from zerogate.api.settings import ApiSettings
from zerogate.api.sites import repository
from zerogate.api.sites.repository import SiteRow
from zerogate.api.sites.schemas import (
    GatewayPublic,
    GatewayTokenCreate,
    SiteCreate,
    SitePublic,
    SiteUpdate,
)
from zerogate.api.tokens import repository as tokens
from zerogate.api.tokens.rules import check_expiry, created, revoke_in
from zerogate.api.tokens.rules import public as token_public
from zerogate.api.tokens.schemas import TokenCreated, TokenPublic


def public(row: SiteRow) -> SitePublic:
    return SitePublic.model_validate(row, from_attributes=True)


async def _site(conn: Connection, principal: Principal, site_id: uuid.UUID) -> SiteRow:
    row = await repository.get_site(conn, principal.account_id, site_id)
    if row is None:
        raise not_found("site")
    return row


async def create_site(pool: Pool, principal: Principal, body: SiteCreate) -> SitePublic:
    async with transaction(pool) as conn:
        row = await repository.create_site(conn, principal.account_id, body.name)
        note_created("site_id", row.id)
    return public(row)


async def get_site(pool: Pool, principal: Principal, site_id: uuid.UUID) -> SitePublic:
    async with pool.acquire() as conn:
        return public(await _site(conn, principal, site_id))


async def list_sites(pool: Pool, principal: Principal, params: PageParams) -> Page[SitePublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_sites(conn, principal.account_id, params)
    return build_page(rows, params, public)


async def update_site(
    pool: Pool, principal: Principal, site_id: uuid.UUID, body: SiteUpdate
) -> SitePublic:
    async with transaction(pool) as conn:
        await _site(conn, principal, site_id)
        row = await repository.rename_site(conn, principal.account_id, site_id, body.name)
    if row is None:  # deleted meanwhile
        raise not_found("site")
    return public(row)


async def delete_site(
    pool: Pool, publisher: Publisher | None, principal: Principal, site_id: uuid.UUID
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        await _site(uow.conn, principal, site_id)
        if await repository.count_resources(uow.conn, principal.account_id, site_id):
            raise Conflict("the site still holds resources; delete or move them first")
        await repository.delete_site(uow.conn, principal.account_id, site_id)
        uow.emit("site", "deleted", principal.account_id, site_id=site_id)


async def create_gateway_token(
    pool: Pool,
    settings: ApiSettings,
    principal: Principal,
    site_id: uuid.UUID,
    body: GatewayTokenCreate,
) -> TokenCreated:
    """A site's token, reusable by its gateways. Without ``expires_at`` it does not
    expire (gateways are infrastructure: rotate by issuing a new one and revoking
    the old); a named expiry lies at most ``ZG_GATEWAY_TOKEN_MAX_DAYS`` ahead."""
    expires_at = check_expiry(
        body.expires_at,
        default_ttl=None,
        max_ttl=timedelta(days=settings.gateway_token_max_days),
        max_setting="ZG_GATEWAY_TOKEN_MAX_DAYS",
    )
    async with transaction(pool) as conn:
        await _site(conn, principal, site_id)
        row, token = await tokens.create_token(
            conn,
            account_id=principal.account_id,
            type="gateway",
            site_id=site_id,
            name=body.name,
            expires_at=expires_at,
            created_by=principal.actor_id,
        )
        note_created("token_id", row.id)
    return created(row, token)


async def list_gateway_tokens(
    pool: Pool, principal: Principal, site_id: uuid.UUID, params: PageParams
) -> Page[TokenPublic]:
    async with pool.acquire() as conn:
        await _site(conn, principal, site_id)
        rows = await tokens.list_tokens(
            conn, principal.account_id, params, site_id=site_id, type="gateway"
        )
    return build_page(rows, params, token_public)


async def revoke_gateway_token(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    site_id: uuid.UUID,
    token_id: uuid.UUID,
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        await _site(uow.conn, principal, site_id)
        await revoke_in(uow, principal, token_id, site_id=site_id)


async def list_gateways(
    pool: Pool, principal: Principal, site_id: uuid.UUID, params: PageParams
) -> Page[GatewayPublic]:
    async with pool.acquire() as conn:
        await _site(conn, principal, site_id)
        rows = await repository.list_gateways(conn, principal.account_id, site_id, params)
    return build_page(rows, params, lambda r: GatewayPublic.model_validate(r, from_attributes=True))
