"""Settings of the api service (environment variables ``ZG_*``)."""

from __future__ import annotations

import base64
import binascii
from typing import Final

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from zerogate.common.settings import ZGSettings

#: Bytes of ``ZG_SECRET_KEY`` (AES-256-GCM).
SECRET_KEY_BYTES: Final = 32
#: Default refused request body size (``ZG_MAX_BODY_BYTES``).
ONE_MIB: Final = 1024 * 1024


class ApiSettings(ZGSettings):
    #: ``ZG_DATABASE_URL``: a libpq URL; it may hold a password, hence SecretStr.
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/zerogate")
    #: ``ZG_NATS_URL``
    nats_url: str | None = "nats://127.0.0.1:4222"
    #: ``ZG_NATS_CONNECT_TIMEOUT``: how long ``serve`` waits for the bus at start-up
    #: before it gives up with a message naming ``ZG_NATS_URL`` (once connected, the
    #: bus reconnects by itself forever).
    nats_connect_timeout: float = Field(default=30.0, gt=0, le=3600)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (ZG_PORTS_FILE)
    #: Furthest ahead an API token's ``expires_at`` may lie (422 beyond it).
    api_token_max_days: int = Field(default=365, ge=1, le=3650)
    #: Furthest ahead a client token's ``expires_at`` may lie.
    client_token_max_days: int = Field(default=90, ge=1, le=3650)
    #: Furthest ahead a gateway token's ``expires_at`` may lie when one is named; a
    #: gateway token issued without one does not expire (it is revoked instead).
    gateway_token_max_days: int = Field(default=365, ge=1, le=3650)
    #: Lifetime of an API token when the request names no ``expires_at``.
    api_token_ttl_days: int = Field(default=90, ge=1, le=3650)
    #: Lifetime of a service account's client token when none is named.
    client_token_ttl_days: int = Field(default=90, ge=1, le=3650)
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    #: Apply pending migrations when ``serve`` starts.
    migrate_on_start: bool = True

    # --- sign-in with OpenID providers (issue 12) -----------------------------------
    #: ``ZG_API_PUBLIC_URL``: the api's address as browsers reach it; the provider's
    #: redirect goes to ``<this>/v1/sign_in/callback`` (register that URI at the
    #: provider). Unset: the address the request came in on.
    api_public_url: str | None = None
    #: ``ZG_SECRET_KEY``: 32 random bytes, URL-safe base64 (``python -c "import
    #: secrets; print(secrets.token_urlsafe(32))"``), that encrypts providers'
    #: client secrets at rest. Without it, a provider cannot be given a secret.
    secret_key: SecretStr | None = None
    #: Seconds any one request to an identity provider may take (discovery, JWKS,
    #: token exchange): past it sign-in fails with 503, it never hangs.
    oidc_timeout: float = Field(default=5.0, gt=0, le=60)
    #: Clock skew allowed on an ID token's ``exp`` and ``iat``, seconds.
    oidc_leeway_secs: int = Field(default=60, ge=0, le=600)
    #: How long a started sign-in may wait for the provider's callback, seconds.
    sign_in_ttl_secs: int = Field(default=600, ge=30, le=3600)
    #: How long the client has to exchange its one-time code, seconds.
    sign_in_code_ttl_secs: int = Field(default=60, ge=5, le=600)

    # --- an API that defends itself -------------------------------------------------
    #: Rate limits (token buckets in Postgres, shared by every replica).
    rate_limit_enabled: bool = True
    #: Per account, on authenticated REST calls: sustained requests/s and burst.
    rate_limit_account_per_s: float = Field(default=20.0, gt=0)
    rate_limit_account_burst: int = Field(default=100, ge=1)
    #: Per source IP, on sign-in requests and failed authentications.
    rate_limit_ip_per_s: float = Field(default=1.0, gt=0)
    rate_limit_ip_burst: int = Field(default=30, ge=1)
    #: Request bodies above this many bytes are refused with 413 before being read.
    max_body_bytes: int = Field(default=ONE_MIB, ge=1024, le=64 * ONE_MIB)

    @field_validator("secret_key")
    @classmethod
    def _secret_key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        text = value.get_secret_value()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != SECRET_KEY_BYTES:
            raise ValueError(f"must be {SECRET_KEY_BYTES} random bytes in URL-safe base64")
        return value

    @field_validator("api_public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://api.example.com")
        return value.rstrip("/")

    def secret_key_bytes(self) -> bytes | None:
        if self.secret_key is None:
            return None
        text = self.secret_key.get_secret_value()
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    @field_validator("api_token_ttl_days", "client_token_ttl_days")
    @classmethod
    def _ttl_within_max(cls, value: int, info: ValidationInfo) -> int:
        kind = "api" if info.field_name == "api_token_ttl_days" else "client"
        most = info.data.get(f"{kind}_token_max_days")
        if most is not None and value > most:
            raise ValueError(f"{value} days is more than ZG_{kind.upper()}_TOKEN_MAX_DAYS={most}")
        return value
