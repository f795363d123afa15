"""Actors: CRUD, disable/enable, client tokens for service accounts.

Disabling an actor revokes every token it holds, in the same transaction, and
announces ``token.revoked`` for each and then ``actor.disabled``; enabling it
again issues nothing and brings none of them back (``actor.enabled``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from zerogate.api.actors import repository
from zerogate.api.actors.repository import ActorRow
from zerogate.api.actors.schemas import ActorCreate, ActorPublic, ActorUpdate, ClientTokenCreate
from zerogate.api.auth import Principal
from zerogate.api.db import Pool, transaction
from zerogate.api.errors import Conflict, Invalid, not_found
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.requestctx import note_created
from zerogate.api.settings import ApiSettings
from zerogate.api.tokens import repository as tokens
from zerogate.api.tokens.rules import check_expiry, created, emit_revoked
from zerogate.api.tokens.rules import public as token_public
from zerogate.api.tokens.schemas import TokenCreated, TokenPublic


def public(row: ActorRow) -> ActorPublic:
    return ActorPublic.model_validate(row, from_attributes=True)


async def create_actor(pool: Pool, principal: Principal, body: ActorCreate) -> ActorPublic:
    async with transaction(pool) as conn:
        row = await repository.create_actor(
            conn,
            account_id=principal.account_id,
            type=body.type,
            name=body.name,
            email=body.email,
        )
        note_created("actor_id", row.id)
    return public(row)


async def get_actor(pool: Pool, principal: Principal, actor_id: uuid.UUID) -> ActorPublic:
    async with pool.acquire() as conn:
        row = await repository.get_actor(conn, principal.account_id, actor_id)
    if row is None:
        raise not_found("actor")
    return public(row)


async def list_actors(pool: Pool, principal: Principal, params: PageParams) -> Page[ActorPublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_actors(conn, principal.account_id, params)
    return build_page(rows, params, public)


async def update_actor(
    pool: Pool, principal: Principal, actor_id: uuid.UUID, body: ActorUpdate
) -> ActorPublic:
    changes = body.model_dump(exclude_unset=True)
    for key in ("type", "name"):
        if key in changes and changes[key] is None:
            raise Invalid(f"{key}: can't be null", loc=("body", key))
    if actor_id == principal.actor_id and changes.get("type", "") not in (
        "",
        "account_admin_user",
        "api_client",
    ):
        raise Conflict("you can't take away your own admin rights")
    async with transaction(pool) as conn:
        row = await repository.update_actor(conn, principal.account_id, actor_id, changes)
    if row is None:
        raise not_found("actor")
    return public(row)


async def set_disabled(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    actor_id: uuid.UUID,
    *,
    disabled: bool,
) -> ActorPublic:
    async with unit_of_work(pool, publisher) as uow:
        if await repository.get_actor(uow.conn, principal.account_id, actor_id) is None:
            raise not_found("actor")
        if disabled and actor_id == principal.actor_id:
            raise Conflict("you can't disable yourself")
        row = await repository.set_disabled(
            uow.conn, principal.account_id, actor_id, disabled=disabled
        )
        if row is None:  # deleted meanwhile
            raise not_found("actor")
        if disabled:
            # The README's promise: disabling kills the actor's tokens at once, and for
            # good, so that enabling the actor again does not revive them.
            for token in await tokens.revoke_actor_tokens(uow.conn, principal.account_id, actor_id):
                emit_revoked(uow, token)
        uow.emit(
            "actor", "disabled" if disabled else "enabled", principal.account_id, actor_id=actor_id
        )
    return public(row)


async def delete_actor(
    pool: Pool, publisher: Publisher | None, principal: Principal, actor_id: uuid.UUID
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        if await repository.get_actor(uow.conn, principal.account_id, actor_id) is None:
            raise not_found("actor")
        if actor_id == principal.actor_id:
            raise Conflict("you can't delete yourself")
        await repository.delete_actor(uow.conn, principal.account_id, actor_id)
        uow.emit("actor", "deleted", principal.account_id, actor_id=actor_id)


async def create_client_token(
    pool: Pool,
    settings: ApiSettings,
    principal: Principal,
    actor_id: uuid.UUID,
    body: ClientTokenCreate,
) -> TokenCreated:
    expires_at = check_expiry(
        body.expires_at,
        default_ttl=timedelta(days=settings.client_token_ttl_days),
        max_ttl=timedelta(days=settings.client_token_max_days),
        max_setting="ZG_CLIENT_TOKEN_MAX_DAYS",
    )
    async with transaction(pool) as conn:
        actor = await repository.get_actor(conn, principal.account_id, actor_id)
        if actor is None:
            raise not_found("actor")
        if actor.type != "service_account":
            raise Invalid(
                "actor_id: client tokens are issued only for service_account actors",
                loc=("path", "actor_id"),
            )
        row, token = await tokens.create_token(
            conn,
            account_id=principal.account_id,
            type="client",
            actor_id=actor_id,
            name=body.name,
            expires_at=expires_at,
            created_by=principal.actor_id,
        )
        note_created("token_id", row.id)
    return created(row, token)


async def list_client_tokens(
    pool: Pool, principal: Principal, actor_id: uuid.UUID, params: PageParams
) -> Page[TokenPublic]:
    async with pool.acquire() as conn:
        if await repository.get_actor(conn, principal.account_id, actor_id) is None:
            raise not_found("actor")
        rows = await tokens.list_tokens(
            conn, principal.account_id, params, actor_id=actor_id, type="client"
        )
    return build_page(rows, params, token_public)
