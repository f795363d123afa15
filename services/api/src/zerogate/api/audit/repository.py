"""Audit log SQL."""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from zerogate.api.db import Connection, rows
from zerogate.api.pagination import PageParams, keyset_clause

_COLUMNS: Final = (
    "id, account_id, actor_id, token_id, action, method, route, target_ids,"
    " host(remote_ip) AS remote_ip, request_id, created_at"
)


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: uuid.UUID
    account_id: uuid.UUID
    actor_id: uuid.UUID | None
    token_id: uuid.UUID | None
    action: str
    method: str
    route: str
    target_ids: dict[str, Any]
    remote_ip: str | None
    request_id: str
    created_at: datetime


async def insert(
    conn: Connection,
    *,
    account_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    token_id: uuid.UUID | None,
    action: str,
    method: str,
    route: str,
    target_ids: dict[str, str],
    remote_ip: str | None,
    request_id: str,
) -> None:
    await conn.execute(
        """INSERT INTO audit_log (account_id, actor_id, token_id, action, method, route,
                                  target_ids, remote_ip, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9)""",
        account_id,
        actor_id,
        token_id,
        action,
        method,
        route,
        target_ids,
        remote_ip,
        request_id,
    )


async def list_entries(
    conn: Connection,
    account_id: uuid.UUID,
    params: PageParams,
    *,
    actor_id: uuid.UUID | None = None,
    request_id: str | None = None,
) -> list[AuditRow]:
    clause, args = keyset_clause(params, 5)
    return rows(
        AuditRow,
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM audit_log
                WHERE account_id = $1 AND ($2::uuid IS NULL OR actor_id = $2)
                  AND ($3::text IS NULL OR request_id = $3) AND $4::int > 0{clause}
                ORDER BY created_at, id LIMIT $4""",
            account_id,
            actor_id,
            request_id,
            params.limit + 1,
            *args,
        ),
    )
