"""TURN credentials in the TURN REST API scheme (coturn ``use-auth-secret``).

A relay and the registry share one secret per relay; the registry mints
time-limited credentials for an agent, and the relay checks them without any
state (draft-uberti-behave-turn-rest-00 section 2.2; coturn
``--use-auth-secret``/``--static-auth-secret``)::

    username = "<unix expiry>:<for_id>"
    password = base64(HMAC-SHA1(secret, username))

The username, the password and the one rule that decides whether a username is
good (:func:`zerogate.proto.turn.rest_api_check`: ``now < expiry <= now +
max_lifetime``) live in :mod:`zerogate.proto.turn.credentials`, shared with the
relay's TURN core. Here is what the registry adds: the expiry it chooses::

    expiry = min(requested expires_at, now + ttl),  ttl <= MAX_TTL

floored to whole seconds, so credentials never outlive what the asker asked
for (a client's token, a policy window). :data:`MAX_TTL` (and the default) is
the relays' default ``--max-credential-lifetime`` (24 h) less
:data:`CLOCK_SKEW_ALLOWANCE` (5 min): a relay whose clock runs a little behind
the registry's still accepts a fresh credential, and nothing the registry mints
is refused for living too long. An agent asks again when it reconnects to
signaling. A requested expiry that is not in the future is refused.

Passwords are secrets: :class:`TurnCredentials` hides it from ``repr``; never
log it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from zerogate.common.errors import ZerogateError
from zerogate.proto.turn.credentials import (
    MAX_CREDENTIAL_LIFETIME,
    REST_API_SEPARATOR,
    rest_api_password,
    rest_api_username,
)

__all__ = [
    "CLOCK_SKEW_ALLOWANCE",
    "DEFAULT_TTL",
    "MAX_TTL",
    "USERNAME_SEPARATOR",
    "CredentialsError",
    "TurnCredentials",
    "mint",
    "turn_password",
    "turn_username",
]

#: coturn's default ``--rest-api-separator``.
USERNAME_SEPARATOR: Final = REST_API_SEPARATOR
#: How far the registry's clock may run ahead of a relay's.
CLOCK_SKEW_ALLOWANCE: Final = timedelta(minutes=5)
#: No credentials are minted longer-lived than this: a relay refuses a username
#: expiring more than its ``--max-credential-lifetime`` (24 h by default) ahead.
MAX_TTL: Final = timedelta(seconds=MAX_CREDENTIAL_LIFETIME) - CLOCK_SKEW_ALLOWANCE
#: How long minted credentials live when the asker sets no earlier expiry.
DEFAULT_TTL: Final = MAX_TTL


class CredentialsError(ZerogateError):
    """Credentials cannot be minted as asked (expiry in the past, bad id, bad TTL)."""

    default_code = "bad_request"


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    username: str
    password: str = field(repr=False)
    expires_at: datetime


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret


def turn_username(expiry_unix: int, for_id: str) -> str:
    """``<expiry>:<for_id>``; ``for_id`` may not contain the separator."""
    try:
        return rest_api_username(expiry_unix, for_id)
    except ValueError as exc:
        raise CredentialsError(str(exc)) from exc


def turn_password(secret: str | bytes, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)), standard alphabet with padding: the
    same function the relay's TURN core checks with."""
    return rest_api_password(_key(secret), username)


def mint(
    secret: str | bytes,
    for_id: str,
    *,
    now: datetime,
    expires_at: datetime | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> TurnCredentials:
    """Credentials for ``for_id`` valid until ``min(expires_at, now + ttl)``."""
    if now.tzinfo is None or (expires_at is not None and expires_at.tzinfo is None):
        raise CredentialsError("times must be timezone-aware")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise CredentialsError(f"TTL must be positive and at most {MAX_TTL}")
    if not secret:
        raise CredentialsError("empty secret")
    until = now + ttl if expires_at is None else min(expires_at, now + ttl)
    expiry = math.floor(until.timestamp())
    if expiry <= now.timestamp():
        raise CredentialsError("requested expiry is not in the future")
    username = turn_username(expiry, for_id)
    return TurnCredentials(
        username=username,
        password=turn_password(secret, username),
        expires_at=datetime.fromtimestamp(expiry, UTC),
    )
