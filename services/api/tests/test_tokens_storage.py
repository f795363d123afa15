"""Tokens are stored only as salted hashes and checked in constant time (item 16)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.api.tokens.repository import create_token, hash_secret, parse_token, verify_token


async def _dump_text_and_bytes(conn) -> list[bytes]:
    """Every text-like and bytea value of every table of the public schema."""
    columns = await conn.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public'
              AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json', 'uuid',
                                'inet')"""
    )
    values: list[bytes] = []
    for col in columns:
        rows = await conn.fetch(
            f'SELECT "{col["column_name"]}"::text AS v FROM "{col["table_name"]}"'
        )
        values += [r["v"].encode() for r in rows if r["v"] is not None]
        if col["data_type"] == "bytea":
            raw = await conn.fetch(f'SELECT "{col["column_name"]}" AS v FROM "{col["table_name"]}"')
            values += [bytes(r["v"]) for r in raw if r["v"] is not None]
    return values


async def test_no_plaintext_token_anywhere_in_the_database(h, tenant, api_pool):
    issued = [tenant.token]
    issued.append((await tenant.create("/v1/tokens", {}))["token"])
    service = await h.make_actor(tenant, "service_account")
    issued.append((await tenant.create(f"/v1/actors/{service['id']}/client_tokens", {}))["token"])
    site = await h.make_site(tenant)
    issued.append((await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {}))["token"])
    async with api_pool.acquire() as conn:
        dump = await _dump_text_and_bytes(conn)
        stored = await conn.fetch(
            "SELECT id, secret_salt, secret_hash FROM tokens WHERE account_id = $1",
            tenant.account_id,
        )
    assert len(stored) == 4
    blob = b"\n".join(dump)
    for token in issued:
        token_id, secret = token.split(".", 1)
        assert secret.encode() not in blob
        assert token.encode() not in blob
        # Nor the secret's plain SHA-256, hex or raw.
        assert hashlib.sha256(secret.encode()).hexdigest().encode() not in blob
        assert hashlib.sha256(secret.encode()).digest() not in blob
    # What is stored is HMAC-SHA256(salt, "<id>.<secret>") with a 16-byte salt.
    by_id = {str(r["id"]): r for r in stored}
    for token in issued:
        token_id, _ = token.split(".", 1)
        row = by_id[token_id]
        assert len(row["secret_salt"]) == 16
        expected = hmac.new(row["secret_salt"], token.encode(), hashlib.sha256).digest()
        assert bytes(row["secret_hash"]) == expected
    assert len({bytes(r["secret_salt"]) for r in stored}) == 4


async def test_verify_token_grants_and_refuses(tenant, api_pool):
    async with api_pool.acquire() as conn:
        grant = await verify_token(conn, tenant.token)
        assert grant is not None
        assert grant.account_id == tenant.account_id
        assert grant.actor_id == tenant.actor_id
        assert grant.type == "api"
        assert grant.actor_type == "account_admin_user"
        # Wrong type filter, tampered secret, future "now" past the expiry.
        assert await verify_token(conn, tenant.token, types=frozenset({"client"})) is None
        token_id, secret = tenant.token.split(".", 1)
        flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        assert await verify_token(conn, f"{token_id}.{flipped}") is None
        later = datetime.now(UTC) + timedelta(days=91)
        assert await verify_token(conn, tenant.token, now=later) is None
        # API and client tokens always expire: none is made without an expiry, and a
        # row found without one is refused; a gateway token may lack one.
        with pytest.raises(ValueError, match="expires_at"):
            await create_token(
                conn, account_id=tenant.account_id, type="api", actor_id=tenant.actor_id
            )
        await conn.execute("UPDATE tokens SET expires_at = NULL WHERE id = $1", grant.token_id)
        assert await verify_token(conn, tenant.token) is None
        site = await conn.fetchval(
            "INSERT INTO sites (account_id, name) VALUES ($1, 'forever') RETURNING id",
            tenant.account_id,
        )
        _, forever = await create_token(
            conn, account_id=tenant.account_id, type="gateway", site_id=site
        )
        assert await verify_token(conn, forever, now=later) is not None


async def test_revoked_gateway_token_fails_verification(h, tenant, api_pool):
    site = await h.make_site(tenant)
    created = await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {})
    async with api_pool.acquire() as conn:
        grant = await verify_token(conn, created["token"], types=frozenset({"gateway"}))
        assert grant is not None
        assert str(grant.site_id) == site["id"]
        assert grant.actor_id is None
        await tenant.http.delete(f"/v1/sites/{site['id']}/gateway_tokens/{created['id']}")
        assert await verify_token(conn, created["token"]) is None


def test_hash_is_keyed_by_salt_and_bound_to_the_id():
    token_id = uuid.uuid4()
    assert hash_secret(b"a" * 16, token_id, "s") != hash_secret(b"b" * 16, token_id, "s")
    assert hash_secret(b"a" * 16, token_id, "s") != hash_secret(b"a" * 16, uuid.uuid4(), "s")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_token_never_raises(text):
    parsed = parse_token(text)
    if parsed is not None:
        token_id, secret = parsed
        assert text == f"{token_id}.{secret}"


async def test_verify_token_answers_garbage_with_none(api_pool):
    async with api_pool.acquire() as conn:
        for text in [
            "",
            ".",
            "x.y",
            f"{uuid.uuid4()}.",
            f"{uuid.uuid4()}.abc",
            "é" * 200,
            f"{str(uuid.uuid4()).upper()}.abc",
            "\x00." + "a" * 10,
        ]:
            assert await verify_token(conn, text) is None
