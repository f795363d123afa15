"""Actor SQL. Rows come back as :class:`ActorRow`."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from zerogate.api.db import Connection, row, row_or_none, rows
from zerogate.api.pagination import PageParams, keyset_clause

COLUMNS: Final = "id, account_id, type, name, email, disabled_at, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class ActorRow:
    id: uuid.UUID
    account_id: uuid.UUID
    type: str
    name: str
    email: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


async def create_actor(
    conn: Connection, *, account_id: uuid.UUID, type: str, name: str, email: str | None
) -> ActorRow:
    return row(
        ActorRow,
        await conn.fetchrow(
            f"INSERT INTO actors (account_id, type, name, email) VALUES ($1, $2, $3, $4)"
            f" RETURNING {COLUMNS}",
            account_id,
            type,
            name,
            email,
        ),
    )


async def get_actor(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID
) -> ActorRow | None:
    return row_or_none(
        ActorRow,
        await conn.fetchrow(
            f"SELECT {COLUMNS} FROM actors WHERE account_id = $1 AND id = $2",
            account_id,
            actor_id,
        ),
    )


async def list_actors(
    conn: Connection, account_id: uuid.UUID, params: PageParams
) -> list[ActorRow]:
    clause, args = keyset_clause(params, 3)
    return rows(
        ActorRow,
        await conn.fetch(
            f"SELECT {COLUMNS} FROM actors WHERE account_id = $1{clause}"
            " ORDER BY created_at, id LIMIT $2",
            account_id,
            params.limit + 1,
            *args,
        ),
    )


async def update_actor(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID, changes: dict[str, Any]
) -> ActorRow | None:
    allowed = {k: v for k, v in changes.items() if k in {"type", "name", "email"}}
    if not allowed:
        return await get_actor(conn, account_id, actor_id)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(allowed, start=3))
    return row_or_none(
        ActorRow,
        await conn.fetchrow(
            f"UPDATE actors SET {sets}, updated_at = now() WHERE account_id = $1 AND id = $2"
            f" RETURNING {COLUMNS}",
            account_id,
            actor_id,
            *allowed.values(),
        ),
    )


async def set_disabled(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID, *, disabled: bool
) -> ActorRow | None:
    return row_or_none(
        ActorRow,
        await conn.fetchrow(
            f"""UPDATE actors
                   SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) ELSE NULL END,
                       updated_at = now()
                 WHERE account_id = $1 AND id = $2 RETURNING {COLUMNS}""",
            account_id,
            actor_id,
            disabled,
        ),
    )


async def delete_actor(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID
) -> ActorRow | None:
    """Delete; memberships, clients and tokens go with it (ON DELETE CASCADE)."""
    return row_or_none(
        ActorRow,
        await conn.fetchrow(
            f"DELETE FROM actors WHERE account_id = $1 AND id = $2 RETURNING {COLUMNS}",
            account_id,
            actor_id,
        ),
    )


async def existing_actor_ids(
    conn: Connection, account_id: uuid.UUID, actor_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    records = await conn.fetch(
        "SELECT id FROM actors WHERE account_id = $1 AND id = ANY($2::uuid[])",
        account_id,
        actor_ids,
    )
    return {r["id"] for r in records}


async def get_by_email(conn: Connection, account_id: uuid.UUID, email: str) -> ActorRow | None:
    """The actor of this account with this email, compared case-insensitively
    (the unique index ``actors_account_email`` is on ``lower(email)``)."""
    return row_or_none(
        ActorRow,
        await conn.fetchrow(
            f"SELECT {COLUMNS} FROM actors WHERE account_id = $1 AND lower(email) = lower($2)",
            account_id,
            email,
        ),
    )
