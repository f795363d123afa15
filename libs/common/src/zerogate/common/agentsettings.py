"""Settings every agent (client, gateway) shares, and how it finds its token and id.

``ZG_TOKEN`` or ``ZG_TOKEN_PATH`` (a file holding the token, mode 0600 or
stricter is expected) give the token; the variable is removed from the
process environment once read, so child processes never inherit it.
``ZG_SIGNALING_URL`` is one or more ``ws[s]://`` URLs (comma-separated): the
agent rotates through them when it reconnects. ``ZG_ID`` is the stable device
id (default: the machine id, else one generated and kept under the state
directory); ``ZG_NAME`` defaults to the host name.
"""

from __future__ import annotations

import os
import socket
import stat
import uuid
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from zerogate.common.errors import ConfigError
from zerogate.common.settings import ZGSettings

MACHINE_ID = Path("/etc/machine-id")


class AgentSettings(ZGSettings):
    token: SecretStr | None = None
    token_path: Path | None = None
    signaling_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    id: str | None = Field(default=None, min_length=1, max_length=255)
    name: str = Field(default_factory=socket.gethostname, max_length=255)
    #: Where the agent keeps its generated id (and, for the client, its state).
    state_dir: Path = Path("/var/lib/zerogate")

    @field_validator("signaling_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for url in value:
            if not str(url).startswith(("ws://", "wss://")):
                raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
        return value

    def read_token(self) -> str:
        """The token, from ``ZG_TOKEN`` or the file ``ZG_TOKEN_PATH`` names; then forgotten.

        Raises :class:`ConfigError` naming the setting when neither gives one.
        """
        os.environ.pop("ZG_TOKEN", None)
        if self.token is not None and self.token.get_secret_value().strip():
            return self.token.get_secret_value().strip()
        if self.token_path is not None:
            try:
                info = self.token_path.stat()
                text = self.token_path.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"invalid setting ZG_TOKEN_PATH: cannot read {self.token_path}: {exc.strerror}"
                ) from exc
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"invalid setting ZG_TOKEN_PATH: {self.token_path} is readable by others; "
                    "chmod 600 it"
                )
            if not text:
                raise ConfigError(f"invalid setting ZG_TOKEN_PATH: {self.token_path} is empty")
            return text
        raise ConfigError("no token: set ZG_TOKEN, or ZG_TOKEN_PATH to a file holding one")

    def require_urls(self) -> list[str]:
        if not self.signaling_url:
            raise ConfigError("invalid setting ZG_SIGNALING_URL: required (ws[s]://host:port)")
        return list(self.signaling_url)

    def device_id(self, kind: str) -> str:
        """``ZG_ID``, else the machine id, else an id generated once and kept."""
        if self.id:
            return self.id
        try:
            machine = MACHINE_ID.read_text().strip()
        except OSError:
            machine = ""
        if machine:
            return machine
        path = self.state_dir / f"{kind}-id"
        try:
            return path.read_text().strip()
        except OSError:
            pass
        generated = str(uuid.uuid4())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(generated + "\n")
        except OSError:
            pass  # not kept: a new id next time
        return generated
