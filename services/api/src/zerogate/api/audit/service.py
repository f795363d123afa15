"""The audit log: written in the transaction of each change, read by admins.

Every REST request that changes something (POST, PUT, PATCH, DELETE under
``/v1``, and the sign-in callback when it creates a user) and commits a
transaction through :func:`zerogate.api.db.transaction` or
:func:`zerogate.api.events.unit_of_work` gets exactly one row, inserted by
:func:`write` just before that transaction commits: the change and its record
commit together or not at all. A request that fails before committing leaves no
row; a read-only POST (``/v1/policies/evaluate``) commits nothing and so leaves
none.

A row says who (actor and token ids), what (the operation's name, the method,
the route template, the ids in the path and the ids the request created), when,
from which address, and the request id. It holds no values from the request
or the response, so no token, code, verifier or client secret can reach it.
"""

from __future__ import annotations

import uuid
from typing import Any

from zerogate.api.audit import repository
from zerogate.api.audit.repository import AuditRow
from zerogate.api.audit.schemas import AuditEntryPublic
from zerogate.api.auth import Principal
from zerogate.api.db import Connection, Pool
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.requestctx import CHANGING_METHODS, RequestContext


def _targets(ctx: RequestContext) -> dict[str, str]:
    params: dict[str, Any] = ctx.scope.get("path_params") or {}
    found = {k: str(v) for k, v in params.items() if k.endswith("_id")}
    return found | ctx.created


async def write(conn: Connection, ctx: RequestContext) -> None:
    """The request's audit row, once, inside the transaction about to commit."""
    if ctx.audited or ctx.account_id is None:
        return
    if ctx.method not in CHANGING_METHODS and not ctx.audit_anyway:
        return
    route = ctx.scope.get("route")
    await repository.insert(
        conn,
        account_id=ctx.account_id,
        actor_id=ctx.actor_id,
        token_id=ctx.token_id,
        action=str(getattr(route, "name", None) or "unknown"),
        method=ctx.method,
        route=str(getattr(route, "path", None) or ctx.scope.get("path", "")),
        target_ids=_targets(ctx),
        remote_ip=ctx.remote_ip,
        request_id=ctx.request_id,
    )
    ctx.audited = True


def public(row: AuditRow) -> AuditEntryPublic:
    return AuditEntryPublic.model_validate(row, from_attributes=True)


async def list_entries(
    pool: Pool,
    principal: Principal,
    params: PageParams,
    *,
    actor_id: uuid.UUID | None,
    request_id: str | None,
) -> Page[AuditEntryPublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_entries(
            conn, principal.account_id, params, actor_id=actor_id, request_id=request_id
        )
    return build_page(rows, params, public)
