"""Plain-SQL migrations: in order, once, under an advisory lock (item 16)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from zerogate.api import db


@pytest.fixture
async def fresh_database(database_url):
    name = f"zg_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield name
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def test_migration_files_are_numbered_and_ordered():
    migrations = db.load_migrations()
    assert migrations, "the package ships its migrations"
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert versions[0] == "0001"
    assert all(m.name.endswith(".sql") for m in migrations)


async def test_concurrent_migrators_apply_each_file_once(database_url, fresh_database):
    conns = [await asyncpg.connect(database_url, database=fresh_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(db.migrate(c) for c in conns))
        applied = [name for result in results for name in result]
        assert sorted(applied) == sorted(m.name for m in db.load_migrations())
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in db.load_migrations()]
        # A later start applies nothing.
        assert await db.migrate(conns[0]) == []
        # The lock is released afterwards.
        assert await conns[1].fetchval("SELECT pg_try_advisory_lock($1)", db.MIGRATION_LOCK_KEY)
    finally:
        for c in conns:
            await c.close()


async def test_a_failing_migration_is_rolled_back_and_not_recorded(
    database_url, fresh_database, monkeypatch
):
    good = db.load_migrations()
    bad = db.Migration("9999", "9999_broken.sql", "CREATE TABLE half_done (id int); SELECT 1/0;")
    monkeypatch.setattr(db, "load_migrations", lambda: [*good, bad])
    conn = await asyncpg.connect(database_url, database=fresh_database)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await db.migrate(conn)
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert "9999" not in versions
        assert sorted(versions) == [m.version for m in good]
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", db.MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
