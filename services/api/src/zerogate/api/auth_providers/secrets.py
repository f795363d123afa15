"""Client secrets at rest: AES-256-GCM under ``ZG_SECRET_KEY``.

A sealed secret is ``b"\\x01" + 12-byte nonce + ciphertext-and-tag``; the
provider's id is the associated data, so a sealed secret copied onto another
provider's row does not open. The plaintext lives only in the request that
sets it and in the one that exchanges a code; it is never returned, logged or
written anywhere else.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from zerogate.api.errors import Invalid, ZerogateError

VERSION: Final = b"\x01"
NONCE_BYTES: Final = 12


class SecretUnreadable(ZerogateError):
    """The stored secret does not open with ``ZG_SECRET_KEY`` (the key changed)."""

    default_code = "secret_unreadable"


def seal(key: bytes | None, provider_id: uuid.UUID, secret: str) -> bytes:
    if key is None:
        raise Invalid(
            "client_secret: this server has no ZG_SECRET_KEY to encrypt it with; "
            "set it, or use a public client (PKCE only)",
            loc=("body", "client_secret"),
        )
    nonce = secrets.token_bytes(NONCE_BYTES)
    return VERSION + nonce + AESGCM(key).encrypt(nonce, secret.encode(), provider_id.bytes)


def open_sealed(key: bytes | None, provider_id: uuid.UUID, sealed: bytes) -> str:
    if key is None or not sealed.startswith(VERSION):
        raise SecretUnreadable("the provider's client secret cannot be read: is ZG_SECRET_KEY set?")
    nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, provider_id.bytes).decode()
    except InvalidTag as exc:
        raise SecretUnreadable(
            "the provider's client secret does not open with ZG_SECRET_KEY (was it changed?)"
        ) from exc
