"""Account SQL."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zerogate.api.db import Connection, row, row_or_none

EVERYONE_GROUP_NAME: Final = "Everyone"
_COLUMNS: Final = "id, slug, name, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: uuid.UUID
    slug: str
    name: str
    created_at: datetime
    updated_at: datetime


async def create_account(conn: Connection, *, slug: str, name: str) -> AccountRow:
    """Insert an account and its implicit Everyone group."""
    account = row(
        AccountRow,
        await conn.fetchrow(
            f"INSERT INTO accounts (slug, name) VALUES ($1, $2) RETURNING {_COLUMNS}", slug, name
        ),
    )
    await conn.execute(
        "INSERT INTO groups (account_id, name, kind) VALUES ($1, $2, 'everyone')",
        account.id,
        EVERYONE_GROUP_NAME,
    )
    return account


async def get_account(conn: Connection, account_id: uuid.UUID) -> AccountRow | None:
    return row_or_none(
        AccountRow,
        await conn.fetchrow(f"SELECT {_COLUMNS} FROM accounts WHERE id = $1", account_id),
    )


async def slug_taken(conn: Connection, slug: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE slug = $1)", slug))


async def get_by_slug(conn: Connection, slug: str) -> AccountRow | None:
    return row_or_none(
        AccountRow,
        await conn.fetchrow(f"SELECT {_COLUMNS} FROM accounts WHERE slug = $1", slug),
    )
