"""TURN credentials in the TURN REST API scheme (coturn ``use-auth-secret``).

A relay and the registry share one secret per relay; the registry mints
time-limited credentials for an agent, and the relay checks them without any
state (draft-uberti-behave-turn-rest-00 section 2.2; coturn
``--use-auth-secret``/``--static-auth-secret``)::

    username = "<unix expiry>:<for_id>"
    password = base64(HMAC-SHA1(secret, username))

The expiry is the Unix time (whole seconds, UTC) after which the relay refuses
the username. We choose::

    expiry = min(requested expires_at, now + ttl),  ttl = DEFAULT_TTL (24 h)

floored to whole seconds, so credentials never outlive what the asker asked
for (a client's token, a policy window) and never live longer than a day: an
agent asks again when it reconnects to signaling. A requested expiry that is
not in the future is refused.

Passwords are secrets: :class:`TurnCredentials` hides it from ``repr``; never
log it.
"""

from __future__ import annotations

import hmac
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from zerogate.common.errors import ZerogateError
from zerogate.proto.turn.credentials import rest_api_password

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "USERNAME_SEPARATOR",
    "CredentialsError",
    "TurnCredentials",
    "check",
    "mint",
    "turn_password",
    "turn_username",
]

#: coturn's default ``--rest-api-separator``.
USERNAME_SEPARATOR: Final = ":"
#: How long minted credentials live when the asker sets no earlier expiry.
DEFAULT_TTL: Final = timedelta(hours=24)
#: No configuration may mint credentials longer-lived than this.
MAX_TTL: Final = timedelta(days=30)

_EXPIRY: Final = re.compile(r"[0-9]{1,12}")


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
    if not for_id or USERNAME_SEPARATOR in for_id:
        raise CredentialsError(f"id {for_id!r} cannot be part of a TURN username")
    if expiry_unix < 0:
        raise CredentialsError("expiry before 1970")
    return f"{expiry_unix}{USERNAME_SEPARATOR}{for_id}"


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


def check(secret: str | bytes, username: str, password: str, *, now: datetime) -> bool:
    """True when ``password`` is right for ``username`` and it has not expired.

    What a relay does with a username it receives (it learns the password to
    check MESSAGE-INTEGRITY with from :func:`turn_password`). Comparison is
    constant-time.
    """
    expiry_text, sep, for_id = username.partition(USERNAME_SEPARATOR)
    if not sep or not for_id or not _EXPIRY.fullmatch(expiry_text):
        return False
    if int(expiry_text) <= now.timestamp():
        return False
    expected = turn_password(secret, username)
    return hmac.compare_digest(expected.encode(), password.encode("utf-8", "surrogatepass"))
