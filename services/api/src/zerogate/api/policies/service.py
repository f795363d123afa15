"""Policies: CRUD, disable/enable, and evaluation through the engine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from zerogate.api.auth import Principal
from zerogate.api.clients import repository as clients
from zerogate.api.db import Connection, Pool
from zerogate.api.engine.conditions import parse_conditions
from zerogate.api.engine.decision import Allow, DecisionContext, Deny, decide
from zerogate.api.errors import Invalid, not_found
from zerogate.api.events import Publisher, UnitOfWork, unit_of_work
from zerogate.api.groups import repository as groups
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.policies import repository
from zerogate.api.policies.repository import DecisionInputs
from zerogate.api.policies.schemas import (
    EvaluateAllow,
    EvaluateDeny,
    EvaluateRequest,
    PolicyCreate,
    PolicyPublic,
    PolicyUpdate,
)
from zerogate.api.resources import repository as resources

#: The violated property reported when the actor itself is disabled.
ACTOR_DISABLED: Final = "actor_disabled"


def public(row: Any) -> PolicyPublic:
    return PolicyPublic.model_validate(dict(row))


def normalize_conditions(raw: list[dict[str, Any]]) -> list[dict[str, object]]:
    try:
        return [c.as_dict() for c in parse_conditions(raw)]
    except ValueError as exc:
        raise Invalid(f"conditions: {exc}") from exc


def decide_for(
    inputs: DecisionInputs, context: DecisionContext, token_expires_at: datetime | None
) -> Allow | Deny:
    """The decision for loaded inputs; a disabled actor is always denied."""
    if inputs.actor_disabled:
        return Deny((ACTOR_DISABLED,))
    return decide(inputs.policies, context, token_expires_at)


async def _check_refs(
    conn: Connection,
    principal: Principal,
    group_id: uuid.UUID | None,
    resource_id: uuid.UUID | None,
) -> None:
    if (
        group_id is not None
        and await groups.get_group(conn, principal.account_id, group_id) is None
    ):
        raise not_found("group")
    if resource_id is not None and (
        await resources.get_resource(conn, principal.account_id, resource_id) is None
    ):
        raise not_found("resource")


def _emit(uow: UnitOfWork, action: str, row: Any) -> None:
    uow.emit(
        "policy",
        action,
        row["account_id"],
        policy_id=row["id"],
        group_id=row["group_id"],
        resource_id=row["resource_id"],
    )


async def create_policy(
    pool: Pool, publisher: Publisher | None, principal: Principal, body: PolicyCreate
) -> PolicyPublic:
    values = {
        "group_id": body.group_id,
        "resource_id": body.resource_id,
        "description": body.description,
        "conditions": normalize_conditions(body.conditions),
    }
    async with unit_of_work(pool, publisher) as uow:
        await _check_refs(uow.conn, principal, body.group_id, body.resource_id)
        row = await repository.create_policy(uow.conn, principal.account_id, values)
        _emit(uow, "created", row)
    return public(row)


async def get_policy(pool: Pool, principal: Principal, policy_id: uuid.UUID) -> PolicyPublic:
    async with pool.acquire() as conn:
        row = await repository.get_policy(conn, principal.account_id, policy_id)
    if row is None:
        raise not_found("policy")
    return public(row)


async def list_policies(
    pool: Pool,
    principal: Principal,
    params: PageParams,
    *,
    resource_id: uuid.UUID | None,
    group_id: uuid.UUID | None,
) -> Page[PolicyPublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_policies(
            conn, principal.account_id, params, resource_id=resource_id, group_id=group_id
        )
    return build_page(rows, params, public)


async def update_policy(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    policy_id: uuid.UUID,
    body: PolicyUpdate,
) -> PolicyPublic:
    changes = body.model_dump(exclude_unset=True)
    for key in ("group_id", "resource_id", "conditions"):
        if key in changes and changes[key] is None:
            raise Invalid(f"{key} can't be null")
    if "conditions" in changes:
        changes["conditions"] = normalize_conditions(changes["conditions"])
    async with unit_of_work(pool, publisher) as uow:
        before = await repository.get_policy(uow.conn, principal.account_id, policy_id)
        if before is None:
            raise not_found("policy")
        await _check_refs(uow.conn, principal, changes.get("group_id"), changes.get("resource_id"))
        row = await repository.update_policy(uow.conn, principal.account_id, policy_id, changes)
        if (before["group_id"], before["resource_id"]) != (row["group_id"], row["resource_id"]):
            # The policy no longer grants its old group the old resource: announce the
            # old pair too, so subscribers keyed by group or resource see the loss.
            _emit(uow, "updated", before)
        _emit(uow, "updated", row)
    return public(row)


async def set_disabled(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    policy_id: uuid.UUID,
    *,
    disabled: bool,
) -> PolicyPublic:
    async with unit_of_work(pool, publisher) as uow:
        row = await repository.set_disabled(
            uow.conn, principal.account_id, policy_id, disabled=disabled
        )
        if row is None:
            raise not_found("policy")
        _emit(uow, "disabled" if disabled else "enabled", row)
    return public(row)


async def delete_policy(
    pool: Pool, publisher: Publisher | None, principal: Principal, policy_id: uuid.UUID
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        row = await repository.delete_policy(uow.conn, principal.account_id, policy_id)
        if row is None:
            raise not_found("policy")
        _emit(uow, "deleted", row)


async def evaluate(
    pool: Pool, principal: Principal, body: EvaluateRequest
) -> EvaluateAllow | EvaluateDeny:
    verified = body.context.client_verified
    async with pool.acquire() as conn:
        actor_id = body.actor_id
        if body.client_id is not None:
            client = await clients.get_client(conn, principal.account_id, body.client_id)
            if client is None:
                raise not_found("client")
            actor_id = client["actor_id"]
            if verified is None:
                verified = client["verified_at"] is not None
        assert actor_id is not None  # the schema demands actor_id or client_id
        inputs = await repository.load_decision_inputs(
            conn, principal.account_id, actor_id, body.resource_id
        )
    if inputs is None:
        raise not_found("actor or resource")
    try:
        context = DecisionContext(
            remote_ip=body.context.remote_ip,
            country=body.context.country.upper() if body.context.country else None,
            time=body.context.time or datetime.now(UTC),
            client_verified=bool(verified),
        )
    except ValueError as exc:
        raise Invalid(f"context: {exc}") from exc
    result = decide_for(inputs, context, None)
    if isinstance(result, Allow):
        return EvaluateAllow(expires_at=result.expires_at, policy_id=uuid.UUID(result.policy_id))
    return EvaluateDeny(violated_properties=list(result.violated_properties))
