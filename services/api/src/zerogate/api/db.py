"""Postgres access: the pool, transactions and the migrations runner.

Migrations are plain-SQL files ``migrations/NNNN_name.sql`` shipped with the
package. :func:`migrate` applies the ones not yet recorded in
``schema_migrations``, in order, each in its own transaction, while holding a
session-level ``pg_advisory_lock`` so that any number of api processes starting
at once apply each file exactly once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, TypeAlias, TypeVar

import asyncpg

log = logging.getLogger(__name__)

#: Key of the advisory lock held while migrating ("zg-migr" as an int64).
MIGRATION_LOCK_KEY: Final = 0x7A672D6D69677200
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

#: asyncpg ships no type information; these aliases keep signatures readable.
Connection: TypeAlias = Any
Pool: TypeAlias = Any


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migration files of this package, sorted by version."""
    found: list[Migration] = []
    for entry in resources.files("zerogate.api").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(match.group(1), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {versions}")
    return found


async def migrate(conn: Connection) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("applied migration", extra={"migration": migration.name})
            applied_now.append(migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def migrate_url(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _release(conn: Connection) -> None:
    """Make a connection fit for the next user without a round trip when we can.

    asyncpg's default reset sends ``RESET ALL``, ``UNLISTEN *``, advisory-lock
    release and more on every release: one extra round trip per request on the
    hot path. This code never changes session state (no SET, LISTEN or
    session advisory locks on pooled connections; migrations use their own
    connection), so only an open transaction, left by a cancelled task, needs
    undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    pool: Pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_release,
    )
    return pool


@asynccontextmanager
async def transaction(pool: Pool) -> AsyncIterator[Connection]:
    """One connection from the pool inside one transaction (commit on success).

    Before it commits, the REST request's pre-commit hook runs in it
    (:func:`zerogate.api.requestctx.before_commit`: the audit row)."""
    from zerogate.api.requestctx import before_commit

    async with pool.acquire() as conn, conn.transaction():
        yield conn
        await before_commit(conn)


R = TypeVar("R")


def row(cls: type[R], record: Any) -> R:
    """A repository's typed row (a dataclass whose fields are the query's columns)."""
    return cls(**record)


def row_or_none(cls: type[R], record: Any) -> R | None:
    return None if record is None else cls(**record)


def rows(cls: type[R], records: Any) -> list[R]:
    return [cls(**record) for record in records]
