"""Settings: environment variables with the ``ZG_`` prefix, via pydantic-settings.

Each service subclasses :class:`ZGSettings`. Secrets are ``SecretStr`` so they
never print. :func:`load_settings` turns a validation error into one line
naming the variable and stops the process with exit code 2.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from zerogate.common.errors import ConfigError

ENV_PREFIX = "ZG_"

S = TypeVar("S", bound=BaseSettings)


class ZGSettings(BaseSettings):
    """Base of every service's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, populate_by_name=True
    )

    nats_url: str | None = None
    log_level: str = "INFO"


def describe_validation_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line per problem, naming the environment variable."""
    prefix = str(cls.model_config.get("env_prefix", ENV_PREFIX))
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "?"
        env = f"{prefix}{field}".upper()
        lines.append(f"invalid setting {env}: {err['msg']}")
    return "; ".join(lines)


def build_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings or raise :class:`ConfigError` naming the bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(cls, exc)) from exc


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings for a process entry point; on error print one line and exit 2."""
    try:
        return build_settings(cls, **overrides)
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
