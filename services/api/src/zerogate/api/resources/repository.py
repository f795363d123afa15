"""Resource SQL. Rows come back as :class:`ResourceRow`."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from zerogate.api.db import Connection, row, row_or_none, rows
from zerogate.api.engine.addresses import Filter
from zerogate.api.pagination import PageParams, keyset_clause

COLUMNS: Final = (
    "id, account_id, type, address, name, address_description, site_id, filters, ip_stack,"
    " created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class ResourceRow:
    """A resource as stored: the one shape every reader of resources gets."""

    id: uuid.UUID
    account_id: uuid.UUID
    type: str
    address: str | None
    name: str
    address_description: str | None
    site_id: uuid.UUID
    filters: list[Filter]
    ip_stack: str
    created_at: datetime
    updated_at: datetime


async def create_resource(
    conn: Connection, account_id: uuid.UUID, values: dict[str, Any]
) -> ResourceRow:
    return row(
        ResourceRow,
        await conn.fetchrow(
            f"""INSERT INTO resources (account_id, type, address, name, address_description,
                                       site_id, filters, ip_stack)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}""",
            account_id,
            values["type"],
            values["address"],
            values["name"],
            values["address_description"],
            values["site_id"],
            values["filters"],
            values.get("ip_stack", "dual"),
        ),
    )


async def get_resource(
    conn: Connection, account_id: uuid.UUID, resource_id: uuid.UUID
) -> ResourceRow | None:
    return row_or_none(
        ResourceRow,
        await conn.fetchrow(
            f"SELECT {COLUMNS} FROM resources WHERE account_id = $1 AND id = $2",
            account_id,
            resource_id,
        ),
    )


async def list_resources(
    conn: Connection,
    account_id: uuid.UUID,
    params: PageParams,
    *,
    site_id: uuid.UUID | None = None,
) -> list[ResourceRow]:
    clause, args = keyset_clause(params, 4)
    return rows(
        ResourceRow,
        await conn.fetch(
            f"""SELECT {COLUMNS} FROM resources
                 WHERE account_id = $1 AND ($2::uuid IS NULL OR site_id = $2){clause}
                 ORDER BY created_at, id LIMIT $3""",
            account_id,
            site_id,
            params.limit + 1,
            *args,
        ),
    )


async def update_resource(
    conn: Connection, account_id: uuid.UUID, resource_id: uuid.UUID, changes: dict[str, Any]
) -> ResourceRow | None:
    allowed = {
        k: v
        for k, v in changes.items()
        if k in {"address", "name", "address_description", "site_id", "filters", "ip_stack"}
    }
    if not allowed:
        return await get_resource(conn, account_id, resource_id)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(allowed, start=3))
    return row_or_none(
        ResourceRow,
        await conn.fetchrow(
            f"UPDATE resources SET {sets}, updated_at = now() WHERE account_id = $1 AND id = $2"
            f" RETURNING {COLUMNS}",
            account_id,
            resource_id,
            *allowed.values(),
        ),
    )


async def delete_resource(
    conn: Connection, account_id: uuid.UUID, resource_id: uuid.UUID
) -> ResourceRow | None:
    """Delete; its policies go with it (ON DELETE CASCADE)."""
    return row_or_none(
        ResourceRow,
        await conn.fetchrow(
            f"DELETE FROM resources WHERE account_id = $1 AND id = $2 RETURNING {COLUMNS}",
            account_id,
            resource_id,
        ),
    )


async def internet_resource_exists(conn: Connection, account_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM resources WHERE account_id = $1 AND type = 'internet')",
            account_id,
        )
    )


async def visible_resources(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID
) -> list[ResourceRow]:
    """Resources an enabled policy of one of the actor's groups (Everyone included)
    names, conditions aside: what a client is told about at init."""
    return rows(
        ResourceRow,
        await conn.fetch(
            f"""SELECT {", ".join("r." + c.strip() for c in COLUMNS.split(","))}
                  FROM resources r
                 WHERE r.account_id = $1
                   AND EXISTS (
                       SELECT 1 FROM policies p JOIN groups g ON g.id = p.group_id
                        WHERE p.resource_id = r.id AND p.disabled_at IS NULL
                          AND (g.kind = 'everyone' OR EXISTS (
                               SELECT 1 FROM memberships m
                                WHERE m.group_id = p.group_id AND m.actor_id = $2)))
                 ORDER BY r.name, r.id""",
            account_id,
            actor_id,
        ),
    )
