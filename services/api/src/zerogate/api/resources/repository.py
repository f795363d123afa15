"""Resource SQL."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from typing import Any

from zerogate.api.db import Connection
from zerogate.api.pagination import PageParams, keyset_clause

_COLUMNS = (
    "id, account_id, type, address, name, address_description, site_id, filters,"
    " created_at, updated_at"
)


async def create_resource(conn: Connection, account_id: uuid.UUID, values: dict[str, Any]) -> Any:
    return await conn.fetchrow(
        f"""INSERT INTO resources (account_id, type, address, name, address_description,
                                   site_id, filters)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}""",
        account_id,
        values["type"],
        values["address"],
        values["name"],
        values["address_description"],
        values["site_id"],
        values["filters"],
    )


async def get_resource(conn: Connection, account_id: uuid.UUID, resource_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM resources WHERE account_id = $1 AND id = $2",
        account_id,
        resource_id,
    )


async def list_resources(
    conn: Connection,
    account_id: uuid.UUID,
    params: PageParams,
    *,
    site_id: uuid.UUID | None = None,
) -> list[Any]:
    clause, args = keyset_clause(params, 4)
    return list(
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM resources
                 WHERE account_id = $1 AND ($2::uuid IS NULL OR site_id = $2){clause}
                 ORDER BY created_at, id LIMIT $3""",
            account_id,
            site_id,
            params.limit + 1,
            *args,
        )
    )


async def update_resource(
    conn: Connection, account_id: uuid.UUID, resource_id: uuid.UUID, changes: dict[str, Any]
) -> Any:
    allowed = {
        k: v
        for k, v in changes.items()
        if k in {"address", "name", "address_description", "site_id", "filters"}
    }
    if not allowed:
        return await get_resource(conn, account_id, resource_id)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(allowed, start=3))
    return await conn.fetchrow(
        f"UPDATE resources SET {sets}, updated_at = now() WHERE account_id = $1 AND id = $2"
        f" RETURNING {_COLUMNS}",
        account_id,
        resource_id,
        *allowed.values(),
    )


async def delete_resource(conn: Connection, account_id: uuid.UUID, resource_id: uuid.UUID) -> Any:
    """Delete; its policies go with it (ON DELETE CASCADE)."""
    return await conn.fetchrow(
        f"DELETE FROM resources WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}",
        account_id,
        resource_id,
    )


async def internet_resource_exists(conn: Connection, account_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM resources WHERE account_id = $1 AND type = 'internet')",
            account_id,
        )
    )
