"""Site and gateway SQL (gateway upserts live in :mod:`zerogate.api.devices`)."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from typing import Any

from zerogate.api.db import Connection
from zerogate.api.devices import site_gateways, upsert_gateway
from zerogate.api.pagination import PageParams, keyset_clause

__all__ = [
    "count_resources",
    "create_site",
    "delete_site",
    "get_site",
    "list_gateways",
    "list_sites",
    "rename_site",
    "site_gateways",
    "upsert_gateway",
]

_COLUMNS = "id, account_id, name, created_at, updated_at"
_GATEWAY_COLUMNS = (
    "id, site_id, external_id, name, public_key, ipv4, ipv6, last_seen_at,"
    " host(last_seen_remote_ip) AS last_seen_remote_ip, last_seen_version, created_at"
)


async def create_site(conn: Connection, account_id: uuid.UUID, name: str) -> Any:
    return await conn.fetchrow(
        f"INSERT INTO sites (account_id, name) VALUES ($1, $2) RETURNING {_COLUMNS}",
        account_id,
        name,
    )


async def get_site(conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM sites WHERE account_id = $1 AND id = $2", account_id, site_id
    )


async def list_sites(conn: Connection, account_id: uuid.UUID, params: PageParams) -> list[Any]:
    clause, args = keyset_clause(params, 3)
    return list(
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM sites WHERE account_id = $1{clause}"
            " ORDER BY created_at, id LIMIT $2",
            account_id,
            params.limit + 1,
            *args,
        )
    )


async def rename_site(
    conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID, name: str
) -> Any:
    return await conn.fetchrow(
        f"UPDATE sites SET name = $3, updated_at = now() WHERE account_id = $1 AND id = $2"
        f" RETURNING {_COLUMNS}",
        account_id,
        site_id,
        name,
    )


async def delete_site(conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID) -> Any:
    """Delete a site with its gateways and gateway tokens. A site that still
    holds resources is refused by the foreign key (→ 409)."""
    return await conn.fetchrow(
        f"DELETE FROM sites WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}",
        account_id,
        site_id,
    )


async def count_resources(conn: Connection, site_id: uuid.UUID) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM resources WHERE site_id = $1", site_id))


async def list_gateways(
    conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID, params: PageParams
) -> list[Any]:
    clause, args = keyset_clause(params, 4)
    return list(
        await conn.fetch(
            f"""SELECT {_GATEWAY_COLUMNS} FROM devices
                 WHERE account_id = $1 AND site_id = $2 AND type = 'gateway'{clause}
                 ORDER BY created_at, id LIMIT $3""",
            account_id,
            site_id,
            params.limit + 1,
            *args,
        )
    )
