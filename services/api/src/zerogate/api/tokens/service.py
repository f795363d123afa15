"""API tokens: issue (shown once), list, revoke."""

from __future__ import annotations

import uuid
from datetime import timedelta

from zerogate.api.actors import repository as actors
from zerogate.api.auth import Principal
from zerogate.api.db import Pool, transaction
from zerogate.api.errors import Invalid, not_found
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.requestctx import note_created
from zerogate.api.settings import ApiSettings
from zerogate.api.tokens import repository
from zerogate.api.tokens.rules import check_expiry, created, public, revoke_in
from zerogate.api.tokens.schemas import TokenCreate, TokenCreated, TokenPublic


async def create_api_token(
    pool: Pool,
    principal: Principal,
    body: TokenCreate,
    settings: ApiSettings,
) -> TokenCreated:
    expires_at = check_expiry(
        body.expires_at,
        default_ttl=timedelta(days=settings.api_token_ttl_days),
        max_ttl=timedelta(days=settings.api_token_max_days),
        max_setting="ZG_API_TOKEN_MAX_DAYS",
    )
    async with transaction(pool) as conn:
        actor_id = body.actor_id or principal.actor_id
        if actor_id != principal.actor_id:
            actor = await actors.get_actor(conn, principal.account_id, actor_id)
            if actor is None:
                raise not_found("actor")
            if actor.type != "api_client":
                raise Invalid(
                    "actor_id: API tokens are issued for api_client actors or for yourself",
                    loc=("body", "actor_id"),
                )
        row, token = await repository.create_token(
            conn,
            account_id=principal.account_id,
            type="api",
            actor_id=actor_id,
            name=body.name,
            expires_at=expires_at,
            created_by=principal.actor_id,
        )
        note_created("token_id", row.id)
    return created(row, token)


async def list_tokens(pool: Pool, principal: Principal, params: PageParams) -> Page[TokenPublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_tokens(conn, principal.account_id, params)
    return build_page(rows, params, public)


async def get_token(pool: Pool, principal: Principal, token_id: uuid.UUID) -> TokenPublic:
    async with pool.acquire() as conn:
        row = await repository.get_token(conn, principal.account_id, token_id)
    if row is None:
        raise not_found("token")
    return public(row)


async def revoke_token(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    token_id: uuid.UUID,
    *,
    site_id: uuid.UUID | None = None,
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        await revoke_in(uow, principal, token_id, site_id=site_id)
