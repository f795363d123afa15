"""Settings: environment variables with the ``ZG_`` prefix, via pydantic-settings.

Each service subclasses :class:`ZGSettings`. Secrets are ``SecretStr`` so they
never print. :func:`load_settings` turns a validation error into one line
naming the variable and stops the process with exit code 2.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

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


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` (an alias, if it has one, is used as is)."""
    info = cls.model_fields.get(field)
    if info is not None:
        alias = info.validation_alias or info.alias
        if isinstance(alias, str):
            return alias.upper()
    return f"{cls.model_config.get('env_prefix', ENV_PREFIX)}{field}".upper()


def describe_validation_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line per problem, naming the environment variable."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        lines.append(f"invalid setting {env_name(cls, field)}: {err['msg']}")
    return "; ".join(lines)


def build_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings or raise :class:`ConfigError` naming the bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(cls, exc)) from exc
    except SettingsError as exc:
        # e.g. a list-valued variable holding something that is not JSON
        raise ConfigError(f"invalid setting: {exc}") from exc


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings for a process entry point; on error print one line and exit 2."""
    try:
        return build_settings(cls, **overrides)
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
