"""Clients: list, get, delete, verify/unverify."""

from __future__ import annotations

import uuid

from zerogate.api.auth import Principal
from zerogate.api.clients import repository
from zerogate.api.clients.repository import ClientRow
from zerogate.api.clients.schemas import ClientPublic
from zerogate.api.db import Pool
from zerogate.api.errors import not_found
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.pagination import Page, PageParams, build_page


def public(row: ClientRow) -> ClientPublic:
    return ClientPublic.model_validate(row, from_attributes=True)


async def list_clients(
    pool: Pool, principal: Principal, params: PageParams, actor_id: uuid.UUID | None
) -> Page[ClientPublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_clients(conn, principal.account_id, params, actor_id=actor_id)
    return build_page(rows, params, public)


async def get_client(pool: Pool, principal: Principal, client_id: uuid.UUID) -> ClientPublic:
    async with pool.acquire() as conn:
        row = await repository.get_client(conn, principal.account_id, client_id)
    if row is None:
        raise not_found("client")
    return public(row)


async def set_verified(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    client_id: uuid.UUID,
    *,
    verified: bool,
) -> ClientPublic:
    async with unit_of_work(pool, publisher) as uow:
        row = await repository.set_verified(
            uow.conn, principal.account_id, client_id, verified=verified
        )
        if row is None:
            raise not_found("client")
        action = "verified" if verified else "unverified"
        uow.emit("client", action, principal.account_id, client_id=client_id, actor_id=row.actor_id)
    return public(row)


async def delete_client(
    pool: Pool, publisher: Publisher | None, principal: Principal, client_id: uuid.UUID
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        row = await repository.delete_client(uow.conn, principal.account_id, client_id)
        if row is None:
            raise not_found("client")
        uow.emit(
            "client", "deleted", principal.account_id, client_id=client_id, actor_id=row.actor_id
        )
