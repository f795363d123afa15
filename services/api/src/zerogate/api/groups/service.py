"""Groups and memberships. The Everyone group is implicit and immutable."""

from __future__ import annotations

import uuid

from zerogate.api.actors import repository as actors
from zerogate.api.actors.schemas import ActorPublic
from zerogate.api.auth import Principal
from zerogate.api.db import Connection, Pool, transaction
from zerogate.api.errors import Conflict, not_found
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.groups import repository
from zerogate.api.groups.repository import GroupRow
from zerogate.api.groups.schemas import GroupCreate, GroupPublic, GroupUpdate, MembersPublic
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.policies import repository as policies
from zerogate.api.requestctx import note_created


def public(row: GroupRow) -> GroupPublic:
    return GroupPublic.model_validate(row, from_attributes=True)


async def _group(conn: Connection, principal: Principal, group_id: uuid.UUID) -> GroupRow:
    row = await repository.get_group(conn, principal.account_id, group_id)
    if row is None:
        raise not_found("group")
    return row


def _static(group: GroupRow, what: str) -> None:
    if group.kind == "everyone":
        raise Conflict(f"the Everyone group can't {what}")


async def create_group(pool: Pool, principal: Principal, body: GroupCreate) -> GroupPublic:
    async with transaction(pool) as conn:
        row = await repository.create_group(conn, principal.account_id, body.name)
        note_created("group_id", row.id)
    return public(row)


async def get_group(pool: Pool, principal: Principal, group_id: uuid.UUID) -> GroupPublic:
    async with pool.acquire() as conn:
        return public(await _group(conn, principal, group_id))


async def list_groups(pool: Pool, principal: Principal, params: PageParams) -> Page[GroupPublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_groups(conn, principal.account_id, params)
    return build_page(rows, params, public)


async def update_group(
    pool: Pool, principal: Principal, group_id: uuid.UUID, body: GroupUpdate
) -> GroupPublic:
    async with transaction(pool) as conn:
        _static(await _group(conn, principal, group_id), "be renamed")
        row = await repository.rename_group(conn, principal.account_id, group_id, body.name)
    if row is None:  # deleted meanwhile
        raise not_found("group")
    return public(row)


async def delete_group(
    pool: Pool, publisher: Publisher | None, principal: Principal, group_id: uuid.UUID
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        _static(await _group(uow.conn, principal, group_id), "be deleted")
        members = await repository.member_ids(uow.conn, group_id)
        cascaded = await policies.policies_of(uow.conn, principal.account_id, group_id=group_id)
        await repository.delete_group(uow.conn, principal.account_id, group_id)
        # The cascade ends access through the group's policies and memberships:
        # announce those too, so subscribers keyed by policy or actor react.
        for row in cascaded:
            uow.emit(
                "policy",
                "deleted",
                principal.account_id,
                policy_id=row.id,
                group_id=group_id,
                resource_id=row.resource_id,
            )
        if members:
            uow.emit(
                "membership",
                "removed",
                principal.account_id,
                group_id=group_id,
                actor_ids=tuple(members),
            )
        uow.emit("group", "deleted", principal.account_id, group_id=group_id)


async def replace_members(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    group_id: uuid.UUID,
    actor_ids: list[uuid.UUID],
) -> MembersPublic:
    wanted = sorted(set(actor_ids))
    async with unit_of_work(pool, publisher) as uow:
        group = await _group(uow.conn, principal, group_id)
        _static(group, "be given members; it holds every actor")
        # Serialise concurrent replacements of the same group.
        await uow.conn.execute("SELECT 1 FROM groups WHERE id = $1 FOR UPDATE", group_id)
        known = await actors.existing_actor_ids(uow.conn, principal.account_id, wanted)
        if len(known) != len(wanted):
            raise not_found("actor")
        added, removed = await repository.replace_members(
            uow.conn, principal.account_id, group_id, wanted
        )
        if removed:
            uow.emit(
                "membership",
                "removed",
                principal.account_id,
                group_id=group_id,
                actor_ids=tuple(removed),
            )
        if added:
            uow.emit(
                "membership",
                "added",
                principal.account_id,
                group_id=group_id,
                actor_ids=tuple(added),
            )
    return MembersPublic(group_id=group_id, actor_ids=wanted)


async def list_members(
    pool: Pool, principal: Principal, group_id: uuid.UUID, params: PageParams
) -> Page[ActorPublic]:
    async with pool.acquire() as conn:
        group = await _group(conn, principal, group_id)
        rows = await repository.list_members(conn, principal.account_id, group, params)
    return build_page(rows, params, lambda r: ActorPublic.model_validate(r, from_attributes=True))
