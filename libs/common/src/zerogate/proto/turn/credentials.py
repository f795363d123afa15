"""Long-term credentials (RFC 8489 §9.2) and the TURN REST API scheme: the one checker.

The REST scheme (draft-uberti-behave-turn-rest-00 §2.2, coturn ``use-auth-secret``):
the username is ``"<unix-expiry>:<id>"`` (or a bare ``"<unix-expiry>"``) and the
password is ``base64(HMAC-SHA1(secret, username))``. The server recomputes the
password from the shared secret, so it keeps no per-user state.

One rule decides whether a REST username is still good, used by the TURN core
(which derives the MESSAGE-INTEGRITY key from :func:`rest_api_password_for`) and
by the relay service and registry (:func:`rest_api_check`,
:func:`rest_api_credentials`)::

    unix_now < expiry <= unix_now + max_lifetime

The username stops working at its expiry second, and one that claims to live
longer than ``max_lifetime`` (the relay's ``--max-credential-lifetime``, 24 h by
default) is refused outright: a leaked secret-minted username cannot be made to
last for years, and nothing of ours mints one that long.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

__all__ = [
    "MAX_CREDENTIAL_LIFETIME",
    "REST_API_SEPARATOR",
    "long_term_key",
    "rest_api_check",
    "rest_api_credentials",
    "rest_api_expiry",
    "rest_api_password",
    "rest_api_password_for",
    "rest_api_username",
]

#: Longest a TURN REST username may live past the moment it is checked (seconds).
MAX_CREDENTIAL_LIFETIME: Final = 24 * 3600
#: coturn's default ``--rest-api-separator``.
REST_API_SEPARATOR: Final = ":"
_MAX_EXPIRY_DIGITS = 12  # up to the year 33658; anything longer is not a timestamp


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """key = MD5(username ":" realm ":" password) (RFC 8489 §9.2.2, MD5 algorithm).

    The password is expected to be already SASLprep-processed / OpaqueString-clean.
    """
    material = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(material, usedforsecurity=False).digest()


def rest_api_password(secret: bytes, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))`` as coturn's ``use-auth-secret`` expects."""
    digest = hmac.new(secret, username.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_api_username(expires_at: int, user_id: str) -> str:
    """``"<expires_at>:<user_id>"``; ``user_id`` must be non-empty and free of ``:``."""
    if not user_id or REST_API_SEPARATOR in user_id:
        raise ValueError(f"id {user_id!r} cannot be part of a TURN REST username")
    if expires_at < 0:
        raise ValueError("expiry before 1970")
    return f"{int(expires_at)}{REST_API_SEPARATOR}{user_id}"


def rest_api_credentials(secret: bytes, user_id: str, expires_at: int) -> tuple[str, str]:
    """Mint ``(username, password)`` valid until the unix time ``expires_at``."""
    username = rest_api_username(expires_at, user_id)
    return username, rest_api_password(secret, username)


def rest_api_expiry(username: str) -> int | None:
    """The unix expiry of a REST username (``"<expiry>:<id>"`` or ``"<expiry>"``), else None.

    ``"<expiry>:"`` (an empty id) is no REST username.
    """
    head, sep, user_id = username.partition(REST_API_SEPARATOR)
    if sep and not user_id:
        return None
    if not head.isascii() or not head.isdigit() or len(head) > _MAX_EXPIRY_DIGITS:
        return None
    return int(head)


def rest_api_password_for(
    secret: bytes, username: str, *, unix_now: float, max_lifetime: float
) -> str | None:
    """The password ``username`` must be used with now, or None when it is refused.

    Refused: not a REST username, expired (``expiry <= unix_now``), or claiming to
    live more than ``max_lifetime`` seconds (``expiry > unix_now + max_lifetime``).
    """
    expiry = rest_api_expiry(username)
    if expiry is None or not unix_now < expiry <= unix_now + max_lifetime:
        return None
    return rest_api_password(secret, username)


def rest_api_check(
    secret: bytes,
    username: str,
    password: str,
    *,
    unix_now: float,
    max_lifetime: float = MAX_CREDENTIAL_LIFETIME,
) -> bool:
    """True when ``password`` is right for ``username`` and the username is good now.

    Constant-time comparison; never raises.
    """
    expected = rest_api_password_for(secret, username, unix_now=unix_now, max_lifetime=max_lifetime)
    if expected is None:
        return False
    return hmac.compare_digest(expected.encode(), password.encode("utf-8", "surrogatepass"))
