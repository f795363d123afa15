"""Site and gateway SQL (gateway upserts live in :mod:`zerogate.api.devices`)."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zerogate.api.db import Connection, row, row_or_none, rows
from zerogate.api.pagination import PageParams, keyset_clause

_COLUMNS: Final = "id, account_id, name, created_at, updated_at"
_GATEWAY_COLUMNS: Final = (
    "id, site_id, external_id, name, public_key, ipv4, ipv6, last_seen_at,"
    " host(last_seen_remote_ip) AS last_seen_remote_ip, last_seen_version, created_at"
)


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayRow:
    id: uuid.UUID
    site_id: uuid.UUID
    external_id: str
    name: str
    public_key: str
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address
    last_seen_at: datetime | None
    last_seen_remote_ip: str | None
    last_seen_version: str | None
    created_at: datetime


async def create_site(conn: Connection, account_id: uuid.UUID, name: str) -> SiteRow:
    return row(
        SiteRow,
        await conn.fetchrow(
            f"INSERT INTO sites (account_id, name) VALUES ($1, $2) RETURNING {_COLUMNS}",
            account_id,
            name,
        ),
    )


async def get_site(conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID) -> SiteRow | None:
    return row_or_none(
        SiteRow,
        await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM sites WHERE account_id = $1 AND id = $2", account_id, site_id
        ),
    )


async def list_sites(conn: Connection, account_id: uuid.UUID, params: PageParams) -> list[SiteRow]:
    clause, args = keyset_clause(params, 3)
    return rows(
        SiteRow,
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM sites WHERE account_id = $1{clause}"
            " ORDER BY created_at, id LIMIT $2",
            account_id,
            params.limit + 1,
            *args,
        ),
    )


async def rename_site(
    conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID, name: str
) -> SiteRow | None:
    return row_or_none(
        SiteRow,
        await conn.fetchrow(
            f"UPDATE sites SET name = $3, updated_at = now() WHERE account_id = $1 AND id = $2"
            f" RETURNING {_COLUMNS}",
            account_id,
            site_id,
            name,
        ),
    )


async def delete_site(
    conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID
) -> SiteRow | None:
    """Delete a site with its gateways and gateway tokens. A site that still
    holds resources is refused by the foreign key (→ 409)."""
    return row_or_none(
        SiteRow,
        await conn.fetchrow(
            f"DELETE FROM sites WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}",
            account_id,
            site_id,
        ),
    )


async def count_resources(conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM resources WHERE account_id = $1 AND site_id = $2",
            account_id,
            site_id,
        )
    )


async def list_gateways(
    conn: Connection, account_id: uuid.UUID, site_id: uuid.UUID, params: PageParams
) -> list[GatewayRow]:
    clause, args = keyset_clause(params, 4)
    return rows(
        GatewayRow,
        await conn.fetch(
            f"""SELECT {_GATEWAY_COLUMNS} FROM devices
                 WHERE account_id = $1 AND site_id = $2 AND type = 'gateway'{clause}
                 ORDER BY created_at, id LIMIT $3""",
            account_id,
            site_id,
            params.limit + 1,
            *args,
        ),
    )
