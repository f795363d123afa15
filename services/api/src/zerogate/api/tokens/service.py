"""API tokens: issue (shown once), list, revoke."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from zerogate.api.actors import repository as actors
from zerogate.api.auth import Principal
from zerogate.api.db import Pool, transaction
from zerogate.api.errors import Invalid, not_found
from zerogate.api.events import Publisher, UnitOfWork, unit_of_work
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.tokens import repository
from zerogate.api.tokens.schemas import TokenCreate, TokenCreated, TokenPublic


def check_expiry(expires_at: datetime | None, default_ttl: timedelta) -> datetime:
    now = datetime.now(UTC)
    if expires_at is None:
        return now + default_ttl
    if expires_at.tzinfo is None:
        raise Invalid("expires_at needs a time zone (e.g. a trailing Z)")
    if expires_at <= now:
        raise Invalid("expires_at is in the past")
    return expires_at


def created(row: Any, token: str) -> TokenCreated:
    return TokenCreated.model_validate({**dict(row), "token": token})


async def create_api_token(
    pool: Pool, principal: Principal, body: TokenCreate, default_ttl: timedelta
) -> TokenCreated:
    expires_at = check_expiry(body.expires_at, default_ttl)
    async with transaction(pool) as conn:
        actor_id = body.actor_id or principal.actor_id
        if actor_id != principal.actor_id:
            actor = await actors.get_actor(conn, principal.account_id, actor_id)
            if actor is None:
                raise not_found("actor")
            if actor["type"] != "api_client":
                raise Invalid("API tokens are issued for api_client actors or for yourself")
        row, token = await repository.create_token(
            conn,
            account_id=principal.account_id,
            type="api",
            actor_id=actor_id,
            name=body.name,
            expires_at=expires_at,
            created_by=principal.actor_id,
        )
    return created(row, token)


async def list_tokens(pool: Pool, principal: Principal, params: PageParams) -> Page[TokenPublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_tokens(conn, principal.account_id, params)
    return build_page(rows, params, lambda r: TokenPublic.model_validate(dict(r)))


async def get_token(pool: Pool, principal: Principal, token_id: uuid.UUID) -> TokenPublic:
    async with pool.acquire() as conn:
        row = await repository.get_token(conn, principal.account_id, token_id)
    if row is None:
        raise not_found("token")
    return TokenPublic.model_validate(dict(row))


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


async def revoke_in(
    uow: UnitOfWork,
    principal: Principal,
    token_id: uuid.UUID,
    *,
    site_id: uuid.UUID | None = None,
) -> None:
    """Revoke inside the caller's transaction; the event goes out after its commit."""
    row = await repository.revoke_token(uow.conn, principal.account_id, token_id, site_id=site_id)
    if row is None:
        raise not_found("token")
    uow.emit(
        "token",
        "revoked",
        principal.account_id,
        token_id=row["id"],
        actor_id=row["actor_id"],
        site_id=row["site_id"],
    )
