"""Settings of the api service (environment variables ``ZG_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from zerogate.common.settings import ZGSettings


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

    @field_validator("api_token_ttl_days", "client_token_ttl_days")
    @classmethod
    def _ttl_within_max(cls, value: int, info: ValidationInfo) -> int:
        kind = "api" if info.field_name == "api_token_ttl_days" else "client"
        most = info.data.get(f"{kind}_token_max_days")
        if most is not None and value > most:
            raise ValueError(f"{value} days is more than ZG_{kind.upper()}_TOKEN_MAX_DAYS={most}")
        return value
