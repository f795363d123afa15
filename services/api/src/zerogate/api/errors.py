"""Errors of the api service.

::

    ZerogateError (zerogate.common.errors)
    ├── NotFound       404: the object does not exist for this caller's account
    ├── Unauthorized   401: missing, malformed, expired or revoked token
    ├── Forbidden      403: valid token, but this actor may not use the endpoint
    ├── Conflict       409: the change clashes with existing state
    ├── Invalid        422: the request is well-formed JSON but semantically wrong
    └── Unavailable    503: a dependency (the bus, the relay registry) does not answer

Services raise these; :mod:`zerogate.api.problems` renders every one of them
(and every other error) as RFC 9457 ``application/problem+json``. The bus
handlers raise the same errors, so their ``code`` crosses NATS unchanged.
"""

from __future__ import annotations

from zerogate.common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
    ZerogateError,
)

#: Where in a request a problem lies, as pydantic writes it: ``("body", "address")``.
Loc = tuple[str | int, ...]


class Invalid(ZerogateError):
    """422: ``detail`` says what is wrong, ``loc`` where (rendered as ``errors[]``)."""

    default_code = "invalid"

    def __init__(self, detail: str = "", *, loc: Loc = ("body",), code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.loc = loc


def not_found(kind: str) -> NotFound:
    return NotFound(f"{kind} not found")


__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "Loc",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "ZerogateError",
]
