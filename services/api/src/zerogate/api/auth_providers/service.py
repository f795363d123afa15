"""Identity providers: CRUD. The client secret is sealed on the way in
(:mod:`.secrets`) and never comes out through the API.

Deleting a provider ends every session signed in through it: its live tokens
are revoked (``token.revoked`` each, so flows resting on them end) in the same
transaction, then the provider is deleted.
"""

from __future__ import annotations

import uuid
from typing import Any

from zerogate.api.auth import Principal
from zerogate.api.auth_providers import repository
from zerogate.api.auth_providers.repository import AuthProviderRow
from zerogate.api.auth_providers.schemas import (
    AuthProviderCreate,
    AuthProviderPublic,
    AuthProviderUpdate,
)
from zerogate.api.auth_providers.secrets import seal
from zerogate.api.db import Pool, transaction
from zerogate.api.errors import Invalid, not_found
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.requestctx import note_created
from zerogate.api.settings import ApiSettings
from zerogate.api.tokens import repository as tokens
from zerogate.api.tokens.rules import emit_revoked


def public(row: AuthProviderRow) -> AuthProviderPublic:
    return AuthProviderPublic(
        id=row.id,
        name=row.name,
        issuer=row.issuer,
        client_id=row.client_id,
        has_client_secret=row.client_secret_sealed is not None,
        scopes=list(row.scopes),
        email_claim=row.email_claim,
        client_session_lifetime_secs=row.client_session_lifetime_secs,
        admin_session_lifetime_secs=row.admin_session_lifetime_secs,
        allow_jit_users=row.allow_jit_users,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def create_provider(
    pool: Pool, settings: ApiSettings, principal: Principal, body: AuthProviderCreate
) -> AuthProviderPublic:
    provider_id = uuid.uuid4()
    values: dict[str, Any] = body.model_dump(exclude={"client_secret"})
    values["account_id"] = principal.account_id
    if body.client_secret is not None:
        values["client_secret_sealed"] = seal(
            settings.secret_key_bytes(), provider_id, body.client_secret.get_secret_value()
        )
    async with transaction(pool) as conn:
        row = await repository.create(conn, provider_id, values)
        note_created("auth_provider_id", row.id)
    return public(row)


async def get_provider(
    pool: Pool, principal: Principal, provider_id: uuid.UUID
) -> AuthProviderPublic:
    async with pool.acquire() as conn:
        row = await repository.get(conn, principal.account_id, provider_id)
    if row is None:
        raise not_found("auth provider")
    return public(row)


async def list_providers(
    pool: Pool, principal: Principal, params: PageParams
) -> Page[AuthProviderPublic]:
    async with pool.acquire() as conn:
        found = await repository.list_providers(conn, principal.account_id, params)
    return build_page(found, params, public)


async def update_provider(
    pool: Pool,
    settings: ApiSettings,
    principal: Principal,
    provider_id: uuid.UUID,
    body: AuthProviderUpdate,
) -> AuthProviderPublic:
    changes = body.model_dump(exclude_unset=True, exclude={"client_secret"})
    for key, value in changes.items():
        if value is None:
            raise Invalid(f"{key}: can't be null", loc=("body", key))
    if "client_secret" in body.model_fields_set:
        secret = body.client_secret
        changes["client_secret_sealed"] = (
            None
            if secret is None
            else seal(settings.secret_key_bytes(), provider_id, secret.get_secret_value())
        )
    async with transaction(pool) as conn:
        row = await repository.update(conn, principal.account_id, provider_id, changes)
    if row is None:
        raise not_found("auth provider")
    return public(row)


async def delete_provider(
    pool: Pool, publisher: Publisher | None, principal: Principal, provider_id: uuid.UUID
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        if await repository.get(uow.conn, principal.account_id, provider_id) is None:
            raise not_found("auth provider")
        for token in await tokens.revoke_provider_tokens(
            uow.conn, principal.account_id, provider_id
        ):
            emit_revoked(uow, token)
        await repository.delete(uow.conn, principal.account_id, provider_id)
