"""Long-term credentials (RFC 8489 §9.2) and the TURN REST API scheme.

The REST scheme (draft-uberti-behave-turn-rest, coturn ``use-auth-secret``):
the username is ``"<unix-expiry>:<id>"`` and the password is
``base64(HMAC-SHA1(secret, username))``. The server recomputes the password from
the shared secret, so it keeps no per-user state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = [
    "long_term_key",
    "rest_api_credentials",
    "rest_api_expiry",
    "rest_api_password",
]


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """key = MD5(username ":" realm ":" password) (RFC 8489 §9.2.2, MD5 algorithm).

    The password is expected to be already SASLprep-processed / OpaqueString-clean.
    """
    material = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(material, usedforsecurity=False).digest()


def rest_api_password(secret: bytes, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))`` as coturn's ``use-auth-secret`` expects."""
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_api_credentials(secret: bytes, user_id: str, expires_at: int) -> tuple[str, str]:
    """Mint ``(username, password)`` valid until the unix time ``expires_at``."""
    username = f"{int(expires_at)}:{user_id}"
    return username, rest_api_password(secret, username)


def rest_api_expiry(username: str) -> int | None:
    """The unix expiry of a REST username (``"<expiry>:<id>"`` or just ``"<expiry>"``)."""
    head = username.split(":", 1)[0]
    if not head.isascii() or not head.isdigit() or len(head) > 12:
        return None
    return int(head)
