"""Client SQL for the REST side (the connect-time upsert is in :mod:`zerogate.api.devices`)."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zerogate.api.db import Connection, row_or_none, rows
from zerogate.api.pagination import PageParams, keyset_clause

_COLUMNS: Final = (
    "id, actor_id, external_id, name, public_key, ipv4, ipv6, verified_at, last_seen_at,"
    " host(last_seen_remote_ip) AS last_seen_remote_ip, last_seen_version, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: uuid.UUID
    actor_id: uuid.UUID
    external_id: str
    name: str
    public_key: str
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address
    verified_at: datetime | None
    last_seen_at: datetime | None
    last_seen_remote_ip: str | None
    last_seen_version: str | None
    created_at: datetime
    updated_at: datetime


async def get_client(
    conn: Connection, account_id: uuid.UUID, client_id: uuid.UUID
) -> ClientRow | None:
    return row_or_none(
        ClientRow,
        await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM devices WHERE account_id = $1 AND id = $2 AND type = 'client'",
            account_id,
            client_id,
        ),
    )


async def list_clients(
    conn: Connection,
    account_id: uuid.UUID,
    params: PageParams,
    *,
    actor_id: uuid.UUID | None = None,
) -> list[ClientRow]:
    clause, args = keyset_clause(params, 4)
    return rows(
        ClientRow,
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM devices
                 WHERE account_id = $1 AND type = 'client'
                   AND ($2::uuid IS NULL OR actor_id = $2){clause}
                 ORDER BY created_at, id LIMIT $3""",
            account_id,
            actor_id,
            params.limit + 1,
            *args,
        ),
    )


async def set_verified(
    conn: Connection,
    account_id: uuid.UUID,
    client_id: uuid.UUID,
    *,
    verified: bool,
) -> ClientRow | None:
    return row_or_none(
        ClientRow,
        await conn.fetchrow(
            f"""UPDATE devices
                   SET verified_at = CASE WHEN $3 THEN coalesce(verified_at, now()) ELSE NULL END,
                       updated_at = now()
                 WHERE account_id = $1 AND id = $2 AND type = 'client' RETURNING {_COLUMNS}""",
            account_id,
            client_id,
            verified,
        ),
    )


async def delete_client(
    conn: Connection, account_id: uuid.UUID, client_id: uuid.UUID
) -> ClientRow | None:
    return row_or_none(
        ClientRow,
        await conn.fetchrow(
            f"DELETE FROM devices WHERE account_id = $1 AND id = $2 AND type = 'client'"
            f" RETURNING {_COLUMNS}",
            account_id,
            client_id,
        ),
    )
