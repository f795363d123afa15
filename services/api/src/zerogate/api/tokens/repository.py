"""Tokens: issued once, stored only as a salted hash, checked in constant time.

A token reads ``<token_id>.<secret>``: the id (a UUID) finds the row, the
secret (32 random bytes, URL-safe base64) is never stored. The row keeps a
random 16-byte salt and ``HMAC-SHA256(key=salt, msg="<token_id>.<secret>")``.
A slow password hash (scrypt, argon2) buys nothing for 256-bit random secrets
and would cost milliseconds on every connect, so a keyed SHA-256 is used; the
digest is compared with :func:`hmac.compare_digest`. An unknown id still costs
one HMAC and one comparison, so timing does not tell ids apart.

Types: ``api`` (REST, an actor's), ``client`` (an agent's, a service account's
or a user's), ``gateway`` (a site's, reusable by any number of gateways). API
and client tokens always expire (:func:`create_token` refuses one without
``expires_at``, :func:`verify_token` refuses one found without it); a gateway
token may not.

A token whose actor is disabled is refused, and disabling an actor also
revokes its tokens (:func:`revoke_actor_tokens`), so enabling it again brings
none of them back.
"""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from zerogate.api.db import Connection, row, row_or_none, rows
from zerogate.api.pagination import PageParams, keyset_clause

TokenType = Literal["api", "client", "gateway"]

SECRET_BYTES: Final = 32
SALT_BYTES: Final = 16
_DUMMY_SALT: Final = bytes(SALT_BYTES)
_DUMMY_HASH: Final = bytes(32)
#: Longest text :func:`verify_token` even looks at (36-char UUID, dot, 43-char secret).
MAX_TOKEN_LENGTH: Final = 128


def hash_secret(salt: bytes, token_id: uuid.UUID, secret: str) -> bytes:
    return hmac.new(salt, f"{token_id}.{secret}".encode(), hashlib.sha256).digest()


def parse_token(text: str) -> tuple[uuid.UUID, str] | None:
    """``(token_id, secret)``, or None when the text cannot be one of our tokens."""
    if len(text) > MAX_TOKEN_LENGTH or "." not in text:
        return None
    ident, secret = text.split(".", 1)
    try:
        token_id = uuid.UUID(ident)
    except ValueError:
        return None
    if str(token_id) != ident.lower() or not secret:
        return None
    return token_id, secret


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a valid token grants: who, in which account, until when."""

    token_id: uuid.UUID
    account_id: uuid.UUID
    type: TokenType
    actor_id: uuid.UUID | None
    actor_type: str | None
    site_id: uuid.UUID | None
    expires_at: datetime | None


_COLUMNS: Final = (
    "t.id, t.account_id, t.type, t.actor_id, t.site_id, t.name, t.expires_at, "
    "t.revoked_at, t.created_by, t.created_at, t.auth_provider_id"
)


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as stored, without its salt and hash."""

    id: uuid.UUID
    account_id: uuid.UUID
    type: TokenType
    actor_id: uuid.UUID | None
    site_id: uuid.UUID | None
    name: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    #: The identity provider a sign-in session came through (None otherwise).
    auth_provider_id: uuid.UUID | None = None


async def create_token(
    conn: Connection,
    *,
    account_id: uuid.UUID,
    type: TokenType,
    actor_id: uuid.UUID | None = None,
    site_id: uuid.UUID | None = None,
    name: str | None = None,
    expires_at: datetime | None = None,
    created_by: uuid.UUID | None = None,
    auth_provider_id: uuid.UUID | None = None,
) -> tuple[TokenRow, str]:
    """Insert a token; returns its row and the plaintext, which exists only here."""
    if type != "gateway" and expires_at is None:
        raise ValueError(f"an {type} token needs expires_at")
    token_id = uuid.uuid4()
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    record = await conn.fetchrow(
        f"""INSERT INTO tokens AS t (id, account_id, type, actor_id, site_id, name,
                secret_salt, secret_hash, expires_at, created_by, auth_provider_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            RETURNING {_COLUMNS}""",
        token_id,
        account_id,
        type,
        actor_id,
        site_id,
        name,
        salt,
        hash_secret(salt, token_id, secret),
        expires_at,
        created_by,
        auth_provider_id,
    )
    return row(TokenRow, record), f"{token_id}.{secret}"


async def verify_token(
    conn: Connection,
    text: str,
    *,
    types: frozenset[TokenType] | None = None,
    now: datetime | None = None,
) -> VerifiedToken | None:
    """The grant of a token, or None if it is unknown, wrong, expired, revoked,
    of another type, an API or client token without an expiry, or its actor is
    disabled (or missing). Never raises on bad input."""
    parsed = parse_token(text)
    if parsed is None:
        hmac.compare_digest(_DUMMY_HASH, hash_secret(_DUMMY_SALT, uuid.UUID(int=0), text[:64]))
        return None
    token_id, secret = parsed
    # LEFT JOIN: gateway tokens have no actor. An actor_id whose row is not found
    # (a.id IS NULL) must refuse the token, never pass as "not disabled".
    found = await conn.fetchrow(
        """SELECT t.id, t.account_id, t.type, t.actor_id, t.site_id, t.expires_at,
                  t.revoked_at, t.secret_salt, t.secret_hash,
                  a.id AS actor_found, a.type AS actor_type,
                  a.disabled_at AS actor_disabled_at
             FROM tokens t
             LEFT JOIN actors a ON a.account_id = t.account_id AND a.id = t.actor_id
            WHERE t.id = $1""",
        token_id,
    )
    salt = found["secret_salt"] if found is not None else _DUMMY_SALT
    expected = found["secret_hash"] if found is not None else _DUMMY_HASH
    matches = hmac.compare_digest(expected, hash_secret(salt, token_id, secret))
    if found is None or not matches:
        return None
    moment = now or datetime.now(UTC)
    if found["revoked_at"] is not None:
        return None
    if found["expires_at"] is None and found["type"] != "gateway":
        return None
    if found["expires_at"] is not None and found["expires_at"] <= moment:
        return None
    if types is not None and found["type"] not in types:
        return None
    if found["actor_id"] is not None and (
        found["actor_found"] is None or found["actor_disabled_at"] is not None
    ):
        return None
    return VerifiedToken(
        token_id=found["id"],
        account_id=found["account_id"],
        type=found["type"],
        actor_id=found["actor_id"],
        actor_type=found["actor_type"],
        site_id=found["site_id"],
        expires_at=found["expires_at"],
    )


async def get_token(
    conn: Connection, account_id: uuid.UUID, token_id: uuid.UUID
) -> TokenRow | None:
    return row_or_none(
        TokenRow,
        await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM tokens t"
            " WHERE t.account_id = $1 AND t.id = $2 AND t.revoked_at IS NULL"
            " AND (t.expires_at IS NULL OR t.expires_at > now())",
            account_id,
            token_id,
        ),
    )


async def list_tokens(
    conn: Connection,
    account_id: uuid.UUID,
    params: PageParams,
    *,
    actor_id: uuid.UUID | None = None,
    site_id: uuid.UUID | None = None,
    type: TokenType | None = None,
) -> list[TokenRow]:
    """Live (neither revoked nor expired) tokens, optionally of one actor, site or type."""
    clause, args = keyset_clause(params, 6, "t.")
    return rows(
        TokenRow,
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM tokens t
                WHERE t.account_id = $1 AND t.revoked_at IS NULL
                  AND (t.expires_at IS NULL OR t.expires_at > now())
                  AND ($2::uuid IS NULL OR t.actor_id = $2)
                  AND ($3::uuid IS NULL OR t.site_id = $3)
                  AND ($4::text IS NULL OR t.type = $4)
                  AND $5::int > 0{clause}
                ORDER BY t.created_at, t.id LIMIT $5""",
            account_id,
            actor_id,
            site_id,
            type,
            params.limit + 1,
            *args,
        ),
    )


async def revoke_token(
    conn: Connection,
    account_id: uuid.UUID,
    token_id: uuid.UUID,
    *,
    site_id: uuid.UUID | None = None,
) -> TokenRow | None:
    """Mark revoked; returns the row, or None if no such live token (in that site)."""
    return row_or_none(
        TokenRow,
        await conn.fetchrow(
            f"""UPDATE tokens t SET revoked_at = now()
                WHERE t.account_id = $1 AND t.id = $2 AND t.revoked_at IS NULL
                  AND ($3::uuid IS NULL OR t.site_id = $3)
                RETURNING {_COLUMNS}""",
            account_id,
            token_id,
            site_id,
        ),
    )


async def revoke_actor_tokens(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID
) -> list[TokenRow]:
    """Revoke every token of an actor not yet revoked (expired ones too, so none
    can come back); returns the rows revoked now."""
    return rows(
        TokenRow,
        await conn.fetch(
            f"""UPDATE tokens t SET revoked_at = now()
                WHERE t.account_id = $1 AND t.actor_id = $2 AND t.revoked_at IS NULL
                RETURNING {_COLUMNS}""",
            account_id,
            actor_id,
        ),
    )


async def revoke_provider_tokens(
    conn: Connection, account_id: uuid.UUID, auth_provider_id: uuid.UUID
) -> list[TokenRow]:
    """Revoke every token signed in through a provider; returns the rows revoked now."""
    return rows(
        TokenRow,
        await conn.fetch(
            f"""UPDATE tokens t SET revoked_at = now()
                WHERE t.account_id = $1 AND t.auth_provider_id = $2 AND t.revoked_at IS NULL
                RETURNING {_COLUMNS}""",
            account_id,
            auth_provider_id,
        ),
    )


async def revoke_by_id(conn: Connection, token_id: uuid.UUID) -> TokenRow | None:
    """Revoke one token found by id alone (its account is read from the row)."""
    return row_or_none(
        TokenRow,
        await conn.fetchrow(
            f"""UPDATE tokens t SET revoked_at = now()
                WHERE t.id = $1 AND t.revoked_at IS NULL RETURNING {_COLUMNS}""",
            token_id,
        ),
    )
