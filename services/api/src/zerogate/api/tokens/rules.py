"""Token rules that several domains' services apply (tokens, actors, sites):
expiry bounds, the one-time ``TokenCreated`` view, revocation with its event.
Kept out of :mod:`zerogate.api.tokens.service` so no domain service imports
another's."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from zerogate.api.auth import Principal
from zerogate.api.errors import Invalid, not_found
from zerogate.api.events import UnitOfWork
from zerogate.api.tokens import repository
from zerogate.api.tokens.repository import TokenRow
from zerogate.api.tokens.schemas import TokenCreated, TokenPublic


def check_expiry(
    expires_at: datetime | None,
    *,
    default_ttl: timedelta | None,
    max_ttl: timedelta,
    max_setting: str,
    now: datetime | None = None,
) -> datetime | None:
    """The expiry to store: ``now + default_ttl`` when none is asked for (``None``
    when there is no default, gateway tokens), else the one asked for, which must
    be timezone-aware, in the future and at most ``max_ttl`` ahead."""
    moment = now or datetime.now(UTC)
    if expires_at is None:
        return None if default_ttl is None else moment + default_ttl
    loc = ("body", "expires_at")
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise Invalid("expires_at: needs a time zone (e.g. a trailing Z)", loc=loc)
    if expires_at <= moment:
        raise Invalid("expires_at: is in the past", loc=loc)
    if expires_at > moment + max_ttl:
        raise Invalid(
            f"expires_at: is more than {max_ttl.days} days ahead, the most {max_setting} allows",
            loc=loc,
        )
    return expires_at


def public(row: TokenRow) -> TokenPublic:
    return TokenPublic.model_validate(row, from_attributes=True)


def created(row: TokenRow, token: str) -> TokenCreated:
    return TokenCreated.model_validate({**dataclasses.asdict(row), "token": token})


def emit_revoked(uow: UnitOfWork, row: TokenRow) -> None:
    """``token.revoked`` with the token's owner (actor or site)."""
    uow.emit(
        "token",
        "revoked",
        row.account_id,
        token_id=row.id,
        actor_id=row.actor_id,
        site_id=row.site_id,
    )


async def revoke_in(
    uow: UnitOfWork,
    principal: Principal,
    token_id: uuid.UUID,
    *,
    site_id: uuid.UUID | None = None,
) -> None:
    """Revoke inside the caller's transaction; the event goes out after its commit."""
    row = await repository.revoke_token(uow.conn, principal.account_id, token_id, site_id=site_id)
    if row is None:
        raise not_found("token")
    emit_revoked(uow, row)
