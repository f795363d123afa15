"""Identity provider SQL. Rows carry the sealed secret; it never leaves the service."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from zerogate.api.db import Connection, row, row_or_none, rows
from zerogate.api.pagination import PageParams, keyset_clause

_COLUMNS: Final = (
    "id, account_id, name, issuer, client_id, client_secret_sealed, scopes, email_claim,"
    " client_session_lifetime_secs, admin_session_lifetime_secs, allow_jit_users,"
    " created_at, updated_at"
)
#: Columns an update may set.
UPDATABLE: Final = frozenset(
    {
        "name",
        "issuer",
        "client_id",
        "client_secret_sealed",
        "scopes",
        "email_claim",
        "client_session_lifetime_secs",
        "admin_session_lifetime_secs",
        "allow_jit_users",
    }
)


@dataclass(frozen=True, slots=True)
class AuthProviderRow:
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    issuer: str
    client_id: str
    client_secret_sealed: bytes | None
    scopes: list[str]
    email_claim: str
    client_session_lifetime_secs: int
    admin_session_lifetime_secs: int
    allow_jit_users: bool
    created_at: datetime
    updated_at: datetime

    def __repr__(self) -> str:  # the sealed secret stays out of logs and tracebacks
        return f"AuthProviderRow(id={self.id}, account_id={self.account_id}, name={self.name!r})"


async def create(
    conn: Connection, provider_id: uuid.UUID, values: dict[str, Any]
) -> AuthProviderRow:
    columns = ["id", "account_id", *(k for k in values if k in UPDATABLE)]
    args = [provider_id, values["account_id"], *(values[k] for k in columns[2:])]
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return row(
        AuthProviderRow,
        await conn.fetchrow(
            f"INSERT INTO auth_providers ({', '.join(columns)}) VALUES ({placeholders})"
            f" RETURNING {_COLUMNS}",
            *args,
        ),
    )


async def get(
    conn: Connection, account_id: uuid.UUID, provider_id: uuid.UUID
) -> AuthProviderRow | None:
    return row_or_none(
        AuthProviderRow,
        await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM auth_providers WHERE account_id = $1 AND id = $2",
            account_id,
            provider_id,
        ),
    )


async def list_providers(
    conn: Connection, account_id: uuid.UUID, params: PageParams
) -> list[AuthProviderRow]:
    clause, args = keyset_clause(params, 3)
    return rows(
        AuthProviderRow,
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM auth_providers WHERE account_id = $1{clause}"
            " ORDER BY created_at, id LIMIT $2",
            account_id,
            params.limit + 1,
            *args,
        ),
    )


async def all_of_account(
    conn: Connection, account_id: uuid.UUID, limit: int
) -> list[AuthProviderRow]:
    return rows(
        AuthProviderRow,
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM auth_providers WHERE account_id = $1"
            " ORDER BY created_at, id LIMIT $2",
            account_id,
            limit,
        ),
    )


async def update(
    conn: Connection, account_id: uuid.UUID, provider_id: uuid.UUID, changes: dict[str, Any]
) -> AuthProviderRow | None:
    allowed = {k: v for k, v in changes.items() if k in UPDATABLE}
    if not allowed:
        return await get(conn, account_id, provider_id)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(allowed, start=3))
    return row_or_none(
        AuthProviderRow,
        await conn.fetchrow(
            f"UPDATE auth_providers SET {sets}, updated_at = now()"
            f" WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}",
            account_id,
            provider_id,
            *allowed.values(),
        ),
    )


async def delete(
    conn: Connection, account_id: uuid.UUID, provider_id: uuid.UUID
) -> AuthProviderRow | None:
    return row_or_none(
        AuthProviderRow,
        await conn.fetchrow(
            f"DELETE FROM auth_providers WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}",
            account_id,
            provider_id,
        ),
    )
