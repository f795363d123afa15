"""Bearer-token authentication of the admin REST API.

* No ``Authorization: Bearer``, or a token that is unknown, wrong, expired,
  revoked, not an API token, or whose actor is disabled → 401 with
  ``WWW-Authenticate: Bearer``.
* A valid API token of an actor who is not an admin (``account_user``,
  ``service_account``) → 403. This depends only on the endpoint, never on an
  object, so it confirms nothing about other accounts' ids.
* Everything else is scoped to the token's account: objects of another account
  are simply not found (404).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request

from zerogate.api.deps import pool_of
from zerogate.api.errors import Forbidden, Unauthorized
from zerogate.api.tokens.repository import verify_token

#: Actor types that may use the admin REST API.
ADMIN_ACTOR_TYPES: Final = frozenset({"account_admin_user", "api_client"})


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: uuid.UUID
    actor_id: uuid.UUID
    actor_type: str
    token_id: uuid.UUID


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized("a bearer token is required")
    return credentials.strip()


async def authenticate(request: Request) -> Principal:
    text = _bearer(request)
    async with pool_of(request).acquire() as conn:
        grant = await verify_token(conn, text, types=frozenset({"api"}))
    if grant is None or grant.actor_id is None or grant.actor_type is None:
        raise Unauthorized("the token is invalid, expired or revoked")
    return Principal(grant.account_id, grant.actor_id, grant.actor_type, grant.token_id)


async def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.actor_type not in ADMIN_ACTOR_TYPES:
        raise Forbidden("this actor may not use the admin API")
    return principal


Admin = Annotated[Principal, Depends(require_admin)]
