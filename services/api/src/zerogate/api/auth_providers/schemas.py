"""Identity provider schemas. ``client_secret`` is write-only: it is accepted by
``AuthProviderCreate``/``AuthProviderUpdate`` and never returned (``AuthProviderPublic``
says only ``has_client_secret``)."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from zerogate.api.fields import Name, NoNul

#: Firezone's defaults: 7 days for clients, 8 hours for the portal (admins).
DEFAULT_CLIENT_SESSION_SECS: Final = 7 * 86_400
DEFAULT_ADMIN_SESSION_SECS: Final = 8 * 3_600
MIN_SESSION_SECS: Final = 300
#: At most ZG_CLIENT_TOKEN_MAX_DAYS' default (90 days) and 7 days for admins.
MAX_CLIENT_SESSION_SECS: Final = 90 * 86_400
MAX_ADMIN_SESSION_SECS: Final = 7 * 86_400
MAX_SCOPES: Final = 20
LOOPBACK_HOSTS: Final = frozenset({"localhost"})


def _issuer(value: str) -> str:
    """An https URL without query or fragment (OpenID Discovery §2); http only on
    a loopback host, for development and tests."""
    parts = urlsplit(value)
    if parts.query or parts.fragment or not parts.hostname or parts.username or parts.password:
        raise ValueError("must be a URL without query, fragment or credentials")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return value
    raise ValueError("must be an https URL (http only on a loopback address)")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Issuer = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=8, max_length=512),
    NoNul,
    AfterValidator(_issuer),
]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=255), NoNul]
#: RFC 6749 §3.3 scope-token: printable ASCII but space, '"' and '\'.
Scope = Annotated[str, StringConstraints(pattern=r"^[\x21\x23-\x5B\x5D-\x7E]{1,100}$")]
Scopes = Annotated[list[Scope], Field(min_length=1, max_length=MAX_SCOPES)]
ClaimName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,100}$")]
ClientSecret = Annotated[SecretStr, Field(min_length=1, max_length=1024)]
ClientSessionSecs = Annotated[int, Field(ge=MIN_SESSION_SECS, le=MAX_CLIENT_SESSION_SECS)]
AdminSessionSecs = Annotated[int, Field(ge=MIN_SESSION_SECS, le=MAX_ADMIN_SESSION_SECS)]


def _has_openid(scopes: list[str]) -> list[str]:
    if "openid" not in scopes:
        raise ValueError("must include openid")
    return list(dict.fromkeys(scopes))


class AuthProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    issuer: Issuer = Field(
        description="The issuer; its discovery document is read from "
        "<issuer>/.well-known/openid-configuration."
    )
    client_id: ClientId
    client_secret: ClientSecret | None = Field(
        default=None,
        description="Write-only; encrypted at rest (ZG_SECRET_KEY), never returned. "
        "Omit it for a public client (PKCE only).",
    )
    scopes: Annotated[Scopes, AfterValidator(_has_openid)] = Field(
        default_factory=lambda: ["openid", "email", "profile"]
    )
    email_claim: ClaimName = Field(
        default="email", description="The ID token claim holding the email that names the actor."
    )
    client_session_lifetime_secs: ClientSessionSecs = DEFAULT_CLIENT_SESSION_SECS
    admin_session_lifetime_secs: AdminSessionSecs = DEFAULT_ADMIN_SESSION_SECS
    allow_jit_users: bool = Field(
        default=False,
        description="Create an account_user (member of Everyone) for an unknown email "
        "on a client sign-in.",
    )


class AuthProviderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    issuer: Issuer | None = None
    client_id: ClientId | None = None
    client_secret: ClientSecret | None = Field(
        default=None, description="A new secret; null removes it (a public client)."
    )
    scopes: Annotated[Scopes, AfterValidator(_has_openid)] | None = None
    email_claim: ClaimName | None = None
    client_session_lifetime_secs: ClientSessionSecs | None = None
    admin_session_lifetime_secs: AdminSessionSecs | None = None
    allow_jit_users: bool | None = None


class AuthProviderPublic(BaseModel):
    id: uuid.UUID
    name: str
    issuer: str
    client_id: str
    has_client_secret: bool
    scopes: list[str]
    email_claim: str
    client_session_lifetime_secs: int
    admin_session_lifetime_secs: int
    allow_jit_users: bool
    created_at: datetime
    updated_at: datetime
