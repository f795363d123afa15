"""Errors shared by Zerogate services.

::

    ZerogateError            base of every error a service raises on purpose
    ├── ConfigError          a setting is missing or malformed (start-up stops)
    ├── NotFound             the object does not exist *for this caller*
    ├── Unauthorized         no valid credential
    ├── Forbidden            valid credential, operation not allowed
    ├── Conflict             the change clashes with existing state
    └── Unavailable          a service this one needs is not answering (retry later)

Each error has a stable ``code`` that crosses the bus (a bus handler raising
one makes the requester's :class:`~zerogate.common.bus.RemoteError` carry the
same code) and that the REST edge maps to an HTTP status.
"""

from __future__ import annotations

from typing import ClassVar


class ZerogateError(Exception):
    """Base error; ``code`` is machine-readable, ``detail`` is for people."""

    default_code: ClassVar[str] = "error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.default_code)
        self.code = code or self.default_code
        self.detail = detail or self.default_code


class ConfigError(ZerogateError):
    default_code = "config"


class NotFound(ZerogateError):
    default_code = "not_found"


class Unauthorized(ZerogateError):
    default_code = "unauthorized"


class Forbidden(ZerogateError):
    default_code = "forbidden"


class Conflict(ZerogateError):
    default_code = "conflict"


class Unavailable(ZerogateError):
    default_code = "unavailable"
