"""Accounts: read, and bootstrap (account + Everyone + first admin + API token)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

from zerogate.api.accounts import repository
from zerogate.api.accounts.schemas import AccountPublic
from zerogate.api.actors import repository as actors
from zerogate.api.auth import Principal
from zerogate.api.db import Pool, transaction
from zerogate.api.errors import Conflict, Invalid, not_found
from zerogate.api.tokens import repository as tokens

SLUG_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
#: Slugs that name sign-in routes (``/v1/sign_in/callback``, ``/v1/sign_in/token``).
RESERVED_SLUGS: Final = frozenset({"callback", "token"})
EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    account_id: uuid.UUID
    actor_id: uuid.UUID
    token: str


async def get_account(pool: Pool, principal: Principal) -> AccountPublic:
    async with pool.acquire() as conn:
        row = await repository.get_account(conn, principal.account_id)
    if row is None:
        raise not_found("account")
    return AccountPublic.model_validate(row, from_attributes=True)


async def bootstrap_account(
    pool: Pool,
    *,
    slug: str,
    email: str,
    name: str | None = None,
    token_ttl: timedelta = timedelta(days=90),
) -> Bootstrapped:
    """Create an account with an admin actor and an API token, in one transaction."""
    if not SLUG_RE.match(slug):
        raise Invalid("slug must be 2-63 of a-z, 0-9, '-', '_' and start with a letter or digit")
    if slug in RESERVED_SLUGS:
        raise Invalid(f"slug {slug!r} is reserved (it names a sign-in route)")
    if not EMAIL_RE.match(email):
        raise Invalid("email is not an email address")
    taken = Conflict(f"an account with slug {slug!r} already exists")
    async with transaction(pool) as conn:
        if await repository.slug_taken(conn, slug):
            raise taken
        try:
            async with conn.transaction():
                account = await repository.create_account(conn, slug=slug, name=name or slug)
        except asyncpg.UniqueViolationError as exc:  # a concurrent bootstrap won
            raise taken from exc
        actor = await actors.create_actor(
            conn,
            account_id=account.id,
            type="account_admin_user",
            name=email.split("@", 1)[0],
            email=email,
        )
        _, token = await tokens.create_token(
            conn,
            account_id=account.id,
            type="api",
            actor_id=actor.id,
            name="bootstrap",
            expires_at=datetime.now(UTC) + token_ttl,
        )
    return Bootstrapped(account.id, actor.id, token)
