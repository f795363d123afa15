"""Bearer-token authentication of the admin REST API.

* No ``Authorization: Bearer``, or a token that is unknown, wrong, expired,
  revoked, not an API token, or whose actor is disabled → 401 with
  ``WWW-Authenticate: Bearer``. Each such failure also takes one from the
  source IP's rate-limit bucket; an empty bucket answers 429 instead
  (:mod:`zerogate.api.ratelimit.limiter`).
* A valid API token of an actor who is not an admin (``account_user``,
  ``service_account``) → 403. This depends only on the endpoint, never on an
  object, so it confirms nothing about other accounts' ids.
* A valid token takes one from its account's rate-limit bucket (429 when empty).
* Everything else is scoped to the token's account: objects of another account
  are simply not found (404).

API tokens are issued by ``POST /v1/tokens`` or by an admin's sign-in through an
identity provider (an admin session, :mod:`zerogate.api.sign_in`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request

from zerogate.api import requestctx
from zerogate.api.deps import pool_of
from zerogate.api.errors import Forbidden, Unauthorized
from zerogate.api.ratelimit.limiter import RateLimiter
from zerogate.api.tokens.repository import TokenType, VerifiedToken, verify_token

#: Actor types that may use the admin REST API.
ADMIN_ACTOR_TYPES: Final = frozenset({"account_admin_user", "api_client"})


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: uuid.UUID
    actor_id: uuid.UUID
    actor_type: str
    token_id: uuid.UUID


def limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


def remote_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


async def verify_bearer(request: Request, types: frozenset[TokenType]) -> VerifiedToken:
    """The grant of the request's bearer token of one of ``types``, its account
    charged; or 401 (429 once the source IP has failed too often)."""
    limiter = limiter_of(request)
    ip = remote_ip(request)
    limiter.check_ip_not_refused(ip)
    text = _bearer(request)
    async with pool_of(request).acquire() as conn:
        grant = None if text is None else await verify_token(conn, text, types=types)
        if grant is None or grant.actor_id is None or grant.actor_type is None:
            await limiter.charge_ip(conn, ip)
            if text is None:
                raise Unauthorized("a bearer token is required")
            raise Unauthorized("the token is invalid, expired or revoked")
        await limiter.charge_account(conn, grant.account_id)
    ctx = requestctx.current()
    if ctx is not None:
        ctx.caller(grant.account_id, grant.actor_id, grant.token_id)
    return grant


async def authenticate(request: Request) -> Principal:
    grant = await verify_bearer(request, frozenset({"api"}))
    assert grant.actor_id is not None  # verify_bearer's promise
    assert grant.actor_type is not None
    return Principal(grant.account_id, grant.actor_id, grant.actor_type, grant.token_id)


async def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.actor_type not in ADMIN_ACTOR_TYPES:
        raise Forbidden("this actor may not use the admin API")
    return principal


Admin = Annotated[Principal, Depends(require_admin)]
