"""Who may use the TURN server: nonces and long-term credentials (RFC 8489 §9.2).

:class:`Authenticator` answers one question for a request: which key signs it
(:class:`Authenticated`), or which error it gets (:class:`Refused`), in the
order of RFC 8489 §9.2.4:

1. no MESSAGE-INTEGRITY(-SHA256): 401 with REALM and a fresh NONCE;
2. USERNAME, REALM or NONCE missing: 400;
3. a nonce that is not ours, not for this client address, or too old: 438 with
   a fresh one;
4. an unknown username, an expired or too long-lived TURN REST username, or a
   wrong MESSAGE-INTEGRITY: 401 with REALM and a fresh NONCE.

Nonces are stateless: ``hex(issued) "-" hex(HMAC-SHA256(nonce_secret, issued,
client address))[:24]``, valid ``nonce_lifetime`` seconds for that client address
only.

Passwords: ``static_users`` first, then the TURN REST scheme with
``auth_secret`` (:func:`~zerogate.proto.turn.credentials.rest_api_password_for`,
the same rule the relay service and the registry use). REST usernames carry a
unix expiry, so the caller passes the unix time; without it (``None``) every REST
username is refused rather than an expired one accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from zerogate.proto import stun
from zerogate.proto.net import ClientAddr
from zerogate.proto.stun import Attr
from zerogate.proto.turn.credentials import long_term_key, rest_api_password_for

__all__ = ["Authenticated", "Authenticator", "Nonces", "Refused"]

_NONCE_MAC_HEX = 24  # 96 bits of HMAC-SHA256
_NONCE_ISSUED_HEX_MAX = 16


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The request is signed by ``username``; answers are signed with ``key``."""

    username: str
    key: bytes
    sha256: bool  # answer with MESSAGE-INTEGRITY-SHA256 (the request used it)


@dataclass(frozen=True, slots=True)
class Refused:
    """Answer with ``code``, unsigned; ``challenge``: add REALM and a fresh NONCE."""

    code: int
    challenge: bool


class Nonces:
    """Stateless nonces bound to a client address and an issue time."""

    def __init__(self, secret: bytes, lifetime: float) -> None:
        self._secret = secret
        self._lifetime = lifetime

    def _mac(self, issued: int, source: ClientAddr) -> str:
        material = f"{issued}|{source[0]}|{source[1]}".encode()
        return hmac.new(self._secret, material, hashlib.sha256).hexdigest()[:_NONCE_MAC_HEX]

    def issue(self, source: ClientAddr, now: float) -> str:
        issued = max(int(now), 0)
        return f"{issued:x}-{self._mac(issued, source)}"

    def valid(self, nonce: str, source: ClientAddr, now: float) -> bool:
        issued_hex, sep, mac = nonce.partition("-")
        if not sep or not 0 < len(issued_hex) <= _NONCE_ISSUED_HEX_MAX:
            return False
        if len(mac) != _NONCE_MAC_HEX:
            return False
        try:
            issued = int(issued_hex, 16)
        except ValueError:
            return False
        if not hmac.compare_digest(mac, self._mac(issued, source)):
            return False
        return issued <= now + 1 and now < issued + self._lifetime


class Authenticator:
    """Long-term credential checks of one realm (see the module docstring)."""

    def __init__(
        self,
        *,
        realm: str,
        nonce_secret: bytes,
        nonce_lifetime: float,
        static_users: Mapping[str, str],
        auth_secret: bytes | None,
        max_credential_lifetime: float,
    ) -> None:
        self.realm = realm
        self._nonces = Nonces(nonce_secret, nonce_lifetime)
        self._static = dict(static_users)
        self._secret = auth_secret
        self._max_lifetime = max_credential_lifetime

    def challenge(self, source: ClientAddr, now: float) -> dict[int, object]:
        """REALM and a fresh NONCE, for 401 and 438 answers."""
        return {Attr.REALM: self.realm, Attr.NONCE: self._nonces.issue(source, now)}

    def password(self, username: str, unix_now: float | None) -> str | None:
        """The password of ``username`` now, or None (unknown, expired, too long-lived)."""
        static = self._static.get(username)
        if static is not None:
            return static
        if self._secret is None or unix_now is None:
            return None
        return rest_api_password_for(
            self._secret, username, unix_now=unix_now, max_lifetime=self._max_lifetime
        )

    def authenticate(
        self, message: stun.Message, source: ClientAddr, now: float, unix_now: float | None
    ) -> Authenticated | Refused:
        """RFC 8489 §9.2.4, in its order."""
        if message.integrity_at is None and message.integrity_sha256_at is None:
            return Refused(401, challenge=True)
        username = message.get_str(Attr.USERNAME)
        nonce = message.get_str(Attr.NONCE)
        if username is None or nonce is None or message.get_str(Attr.REALM) is None:
            return Refused(400, challenge=False)
        if not self._nonces.valid(nonce, source, now):
            return Refused(438, challenge=True)
        password = self.password(username, unix_now)
        if password is None:
            return Refused(401, challenge=True)
        key = long_term_key(username, self.realm, password)
        if not stun.check_integrity(message, key):
            return Refused(401, challenge=True)
        return Authenticated(username, key, message.integrity_sha256_at is not None)
