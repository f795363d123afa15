"""Account SQL."""

from __future__ import annotations

import uuid
from typing import Any

from zerogate.api.db import Connection

EVERYONE_GROUP_NAME = "Everyone"


async def create_account(conn: Connection, *, slug: str, name: str) -> Any:
    """Insert an account and its implicit Everyone group."""
    row = await conn.fetchrow(
        "INSERT INTO accounts (slug, name) VALUES ($1, $2) RETURNING *", slug, name
    )
    await conn.execute(
        "INSERT INTO groups (account_id, name, kind) VALUES ($1, $2, 'everyone')",
        row["id"],
        EVERYONE_GROUP_NAME,
    )
    return row


async def get_account(conn: Connection, account_id: uuid.UUID) -> Any:
    return await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)


async def slug_taken(conn: Connection, slug: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE slug = $1)", slug))
