"""Group and membership SQL."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zerogate.api.actors.repository import ActorRow
from zerogate.api.db import Connection, row, row_or_none, rows
from zerogate.api.pagination import PageParams, keyset_clause

_COLUMNS: Final = "id, account_id, name, kind, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class GroupRow:
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    kind: str
    created_at: datetime
    updated_at: datetime


async def create_group(conn: Connection, account_id: uuid.UUID, name: str) -> GroupRow:
    return row(
        GroupRow,
        await conn.fetchrow(
            f"INSERT INTO groups (account_id, name) VALUES ($1, $2) RETURNING {_COLUMNS}",
            account_id,
            name,
        ),
    )


async def get_group(
    conn: Connection, account_id: uuid.UUID, group_id: uuid.UUID
) -> GroupRow | None:
    return row_or_none(
        GroupRow,
        await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM groups WHERE account_id = $1 AND id = $2",
            account_id,
            group_id,
        ),
    )


async def list_groups(
    conn: Connection, account_id: uuid.UUID, params: PageParams
) -> list[GroupRow]:
    clause, args = keyset_clause(params, 3)
    return rows(
        GroupRow,
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM groups WHERE account_id = $1{clause}"
            " ORDER BY created_at, id LIMIT $2",
            account_id,
            params.limit + 1,
            *args,
        ),
    )


async def rename_group(
    conn: Connection, account_id: uuid.UUID, group_id: uuid.UUID, name: str
) -> GroupRow | None:
    return row_or_none(
        GroupRow,
        await conn.fetchrow(
            f"UPDATE groups SET name = $3, updated_at = now() WHERE account_id = $1 AND id = $2"
            f" RETURNING {_COLUMNS}",
            account_id,
            group_id,
            name,
        ),
    )


async def delete_group(
    conn: Connection, account_id: uuid.UUID, group_id: uuid.UUID
) -> GroupRow | None:
    """Delete a static group; its memberships and policies go with it."""
    return row_or_none(
        GroupRow,
        await conn.fetchrow(
            f"DELETE FROM groups WHERE account_id = $1 AND id = $2 AND kind = 'static'"
            f" RETURNING {_COLUMNS}",
            account_id,
            group_id,
        ),
    )


async def member_ids(conn: Connection, group_id: uuid.UUID) -> list[uuid.UUID]:
    records = await conn.fetch(
        "SELECT actor_id FROM memberships WHERE group_id = $1 ORDER BY actor_id", group_id
    )
    return [r["actor_id"] for r in records]


async def replace_members(
    conn: Connection, account_id: uuid.UUID, group_id: uuid.UUID, actor_ids: list[uuid.UUID]
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Make the membership exactly ``actor_ids``; returns (added, removed)."""
    removed = await conn.fetch(
        "DELETE FROM memberships WHERE group_id = $1 AND NOT (actor_id = ANY($2::uuid[]))"
        " RETURNING actor_id",
        group_id,
        actor_ids,
    )
    added = await conn.fetch(
        """INSERT INTO memberships (account_id, group_id, actor_id)
           SELECT $1, $2, unnest($3::uuid[])
           ON CONFLICT (group_id, actor_id) DO NOTHING RETURNING actor_id""",
        account_id,
        group_id,
        actor_ids,
    )
    return sorted(r["actor_id"] for r in added), sorted(r["actor_id"] for r in removed)


async def list_members(
    conn: Connection, account_id: uuid.UUID, group: GroupRow, params: PageParams
) -> list[ActorRow]:
    """Actors of a group as pages; the Everyone group lists every actor."""
    clause, args = keyset_clause(params, 4, "a.")
    return rows(
        ActorRow,
        await conn.fetch(
            f"""SELECT a.id, a.account_id, a.type, a.name, a.email, a.disabled_at,
                       a.created_at, a.updated_at
                  FROM actors a
                 WHERE a.account_id = $1
                   AND ($3::text = 'everyone' OR EXISTS (
                        SELECT 1 FROM memberships m WHERE m.group_id = $2 AND m.actor_id = a.id))
                   {clause}
                 ORDER BY a.created_at, a.id LIMIT ${4 + len(args)}""",
            account_id,
            group.id,
            group.kind,
            *args,
            params.limit + 1,
        ),
    )
