"""Sign-in SQL: requests under way (by state) and one-time codes (by code).

Both are found by the SHA-256 of their secret, never stored in the clear.
"""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zerogate.api.db import Connection, row_or_none

_REQUEST_COLUMNS: Final = (
    "account_id, auth_provider_id, kind, nonce, provider_verifier, redirect_uri,"
    " client_code_challenge, client_state, expires_at"
)
_CODE_COLUMNS: Final = (
    "account_id, auth_provider_id, actor_id, kind, redirect_uri, client_code_challenge,"
    " expires_at, used_at, token_id"
)


@dataclass(frozen=True, slots=True)
class SignInRequestRow:
    account_id: uuid.UUID
    auth_provider_id: uuid.UUID
    kind: str
    nonce: str
    provider_verifier: str
    redirect_uri: str
    client_code_challenge: str
    client_state: str | None
    expires_at: datetime

    def __repr__(self) -> str:  # the nonce and verifier stay out of logs
        return f"SignInRequestRow(account_id={self.account_id}, kind={self.kind})"


@dataclass(frozen=True, slots=True)
class SignInCodeRow:
    account_id: uuid.UUID
    auth_provider_id: uuid.UUID
    actor_id: uuid.UUID
    kind: str
    redirect_uri: str
    client_code_challenge: str
    expires_at: datetime
    used_at: datetime | None
    token_id: uuid.UUID | None


async def create_request(
    conn: Connection,
    *,
    state_hash: bytes,
    account_id: uuid.UUID,
    auth_provider_id: uuid.UUID,
    kind: str,
    nonce: str,
    provider_verifier: str,
    redirect_uri: str,
    client_code_challenge: str,
    client_state: str | None,
    ttl_secs: int,
) -> None:
    await conn.execute(
        """INSERT INTO sign_in_requests (state_hash, account_id, auth_provider_id, kind, nonce,
               provider_verifier, redirect_uri, client_code_challenge, client_state, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))""",
        state_hash,
        account_id,
        auth_provider_id,
        kind,
        nonce,
        provider_verifier,
        redirect_uri,
        client_code_challenge,
        client_state,
        float(ttl_secs),
    )


async def take_request(conn: Connection, state_hash: bytes) -> SignInRequestRow | None:
    """Remove and return the request with this state: a state is good for one callback."""
    return row_or_none(
        SignInRequestRow,
        await conn.fetchrow(
            f"DELETE FROM sign_in_requests WHERE state_hash = $1 RETURNING {_REQUEST_COLUMNS}",
            state_hash,
        ),
    )


async def create_code(
    conn: Connection,
    *,
    code_hash: bytes,
    account_id: uuid.UUID,
    auth_provider_id: uuid.UUID,
    actor_id: uuid.UUID,
    kind: str,
    redirect_uri: str,
    client_code_challenge: str,
    ttl_secs: int,
) -> None:
    await conn.execute(
        """INSERT INTO sign_in_codes (code_hash, account_id, auth_provider_id, actor_id, kind,
               redirect_uri, client_code_challenge, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))""",
        code_hash,
        account_id,
        auth_provider_id,
        actor_id,
        kind,
        redirect_uri,
        client_code_challenge,
        float(ttl_secs),
    )


async def lock_code(conn: Connection, code_hash: bytes) -> SignInCodeRow | None:
    """The code's row, locked until the transaction ends (two exchanges racing for
    one code are served one after the other: the second sees it used)."""
    return row_or_none(
        SignInCodeRow,
        await conn.fetchrow(
            f"SELECT {_CODE_COLUMNS} FROM sign_in_codes WHERE code_hash = $1 FOR UPDATE",
            code_hash,
        ),
    )


async def mark_code_used(conn: Connection, code_hash: bytes, token_id: uuid.UUID | None) -> None:
    await conn.execute(
        "UPDATE sign_in_codes SET used_at = now(), token_id = $2 WHERE code_hash = $1",
        code_hash,
        token_id,
    )


async def now_is_past(conn: Connection, moment: datetime) -> bool:
    return bool(await conn.fetchval("SELECT now() >= $1", moment))


async def forget_expired(conn: Connection, *, keep_used_codes_secs: float) -> None:
    """Drop requests past their expiry, and codes past it by ``keep_used_codes_secs``
    (kept that long so that a late replay is still recognised and answered)."""
    await conn.execute("DELETE FROM sign_in_requests WHERE expires_at < now()")
    await conn.execute(
        "DELETE FROM sign_in_codes WHERE expires_at < now() - make_interval(secs => $1)",
        keep_used_codes_secs,
    )
