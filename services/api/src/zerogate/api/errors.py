"""Errors of the api service.

::

    ZerogateError (zerogate.common.errors)
    ├── NotFound       404: the object does not exist for this caller's account
    ├── Unauthorized   401: missing, malformed, expired or revoked token
    ├── Forbidden      403: valid token, but this actor may not use the endpoint
    ├── Conflict       409: the change clashes with existing state
    ├── Invalid        422: the request is well-formed JSON but semantically wrong
    ├── BadRequest     400: a protocol step is wrong (sign-in state, code, verifier)
    ├── RateLimited    429: a rate limit is exhausted; ``retry_after`` seconds
    ├── ProviderFailed 502: an identity provider answered, but not as it should
    └── Unavailable    503: a dependency (the bus, the relay registry, an identity
                       provider) does not answer

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


class BadRequest(ZerogateError):
    """400: the request breaks a protocol step (its ``code`` names which)."""

    default_code = "bad_request"


class RateLimited(ZerogateError):
    """429 with ``Retry-After: retry_after`` (whole seconds, at least 1)."""

    default_code = "rate_limited"

    def __init__(self, detail: str = "", *, retry_after: int) -> None:
        super().__init__(detail or "too many requests")
        self.retry_after = max(1, retry_after)


class ProviderFailed(ZerogateError):
    """502: an identity provider answered with an error or with garbage."""

    default_code = "provider_error"


def not_found(kind: str) -> NotFound:
    return NotFound(f"{kind} not found")


__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Invalid",
    "Loc",
    "NotFound",
    "ProviderFailed",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "ZerogateError",
]
