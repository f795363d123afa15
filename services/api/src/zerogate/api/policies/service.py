"""Policies: CRUD, disable/enable, and the one decision service.

:func:`authorize_flow` (the bus's ``flow.authorize``) and :func:`evaluate`
(``POST /v1/policies/evaluate``) load their inputs with the one loader,
:func:`~zerogate.api.policies.repository.load_decision_inputs`, and decide with
the one function, :func:`decide_for`; they differ only in the subject (always a
client on the bus; an actor or a client over REST) and in the session token,
which a flow must rest on and an evaluation has not got.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from zerogate.api.auth import Principal
from zerogate.api.db import Connection, Pool
from zerogate.api.devices import SiteGateway
from zerogate.api.engine.conditions import parse_conditions
from zerogate.api.engine.decision import Allow, DecisionContext, Deny, decide
from zerogate.api.errors import Invalid, not_found
from zerogate.api.events import Publisher, UnitOfWork, unit_of_work
from zerogate.api.groups import repository as groups
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.policies import repository
from zerogate.api.policies.repository import DecisionInputs, PolicyRow, TokenRef
from zerogate.api.policies.schemas import (
    EvaluateAllow,
    EvaluateDeny,
    EvaluateRequest,
    PolicyCreate,
    PolicyPublic,
    PolicyUpdate,
)
from zerogate.api.requestctx import note_created
from zerogate.api.resources import repository as resources
from zerogate.api.resources.repository import ResourceRow
from zerogate.proto.net import IPAddress

#: The violated property reported when the actor itself is disabled.
ACTOR_DISABLED: Final = "actor_disabled"
#: The violated property reported when the session's token does not hold.
TOKEN_INVALID: Final = "token"  # noqa: S105 - a property name, not a secret


def public(row: PolicyRow) -> PolicyPublic:
    return PolicyPublic.model_validate(row, from_attributes=True)


def normalize_conditions(raw: list[dict[str, Any]]) -> list[dict[str, object]]:
    try:
        return [c.as_dict() for c in parse_conditions(raw)]
    except ValueError as exc:
        raise Invalid(f"conditions: {exc}", loc=("body", "conditions")) from exc


def token_holds(token: TokenRef | None, actor_id: uuid.UUID, at: datetime) -> bool:
    """Whether a flow may rest on ``token`` at ``at``: it was found in the account
    (the loader looks nowhere else), is a client token of this very actor, is not
    revoked and expires after ``at``. A token without an expiry does not hold:
    every client token is issued with one, and an allow must carry one."""
    return (
        token is not None
        and token.type == "client"
        and token.actor_id == actor_id
        and token.revoked_at is None
        and token.expires_at is not None
        and token.expires_at > at
    )


def decide_for(
    inputs: DecisionInputs,
    context: DecisionContext,
    *,
    now: datetime,
    session_token: bool = True,
) -> Allow | Deny:
    """The decision for loaded inputs. A disabled actor is denied
    (``actor_disabled``); with ``session_token`` (the default, and always so for
    a flow) the token must hold at both ``now`` and the context's time, else
    ``token`` (both are named when both fail), and it caps the expiry, so an
    allow always carries one no later than the token's. ``session_token=False``
    is for ``/v1/policies/evaluate``, which asks about an actor, not a session."""
    failed = [ACTOR_DISABLED] if inputs.actor_disabled else []
    token = inputs.token
    if session_token and (
        token is None or not token_holds(token, inputs.actor_id, max(now, context.time))
    ):
        failed.append(TOKEN_INVALID)
    if failed:
        return Deny(tuple(sorted(failed)))
    return decide(inputs.policies, context, token.expires_at if session_token and token else None)


@dataclass(frozen=True, slots=True)
class FlowDecision:
    """A flow's decision with what signaling needs to set it up."""

    result: Allow | Deny
    resource: ResourceRow
    gateways: tuple[SiteGateway, ...]


async def authorize_flow(
    pool: Pool,
    *,
    account_id: uuid.UUID,
    client_id: uuid.UUID,
    resource_id: uuid.UUID,
    token_id: uuid.UUID | None,
    remote_ip: IPAddress | None,
    country: str | None,
    time: datetime | None,
) -> FlowDecision:
    """``flow.authorize``: may this client use this resource now, resting on this
    token? Raises NotFound when the client or the resource is not in the account."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        inputs = await repository.load_decision_inputs(
            conn, account_id, resource_id, client_id=client_id, token_id=token_id, gateways=True
        )
    if inputs is None:
        raise not_found("client or resource")
    context = DecisionContext(
        remote_ip=remote_ip,
        country=country.upper() if country else None,
        time=time or now,
        client_verified=inputs.client_verified,
    )
    return FlowDecision(decide_for(inputs, context, now=now), inputs.resource, inputs.gateways)


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


def _emit(uow: UnitOfWork, action: str, row: PolicyRow) -> None:
    uow.emit(
        "policy",
        action,
        row.account_id,
        policy_id=row.id,
        group_id=row.group_id,
        resource_id=row.resource_id,
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
        note_created("policy_id", row.id)
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
            raise Invalid(f"{key} can't be null", loc=("body", key))
    if "conditions" in changes:
        changes["conditions"] = normalize_conditions(changes["conditions"])
    async with unit_of_work(pool, publisher) as uow:
        before = await repository.get_policy(uow.conn, principal.account_id, policy_id)
        if before is None:
            raise not_found("policy")
        await _check_refs(uow.conn, principal, changes.get("group_id"), changes.get("resource_id"))
        row = await repository.update_policy(uow.conn, principal.account_id, policy_id, changes)
        if row is None:  # deleted meanwhile
            raise not_found("policy")
        if (before.group_id, before.resource_id) != (row.group_id, row.resource_id):
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
    """``POST /v1/policies/evaluate``: the decision a flow would get, without a session
    token to cap the expiry; a client brings its actor and (unless the context says
    otherwise) its verification."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        inputs = await repository.load_decision_inputs(
            conn,
            principal.account_id,
            body.resource_id,
            actor_id=body.actor_id,
            client_id=body.client_id,
        )
    if inputs is None:
        raise not_found("client or resource" if body.client_id else "actor or resource")
    verified = body.context.client_verified
    context = DecisionContext(
        remote_ip=body.context.remote_ip,
        country=body.context.country.upper() if body.context.country else None,
        time=body.context.time or now,
        client_verified=inputs.client_verified if verified is None else verified,
    )
    result = decide_for(inputs, context, now=now, session_token=False)
    if isinstance(result, Allow):
        return EvaluateAllow(expires_at=result.expires_at, policy_id=uuid.UUID(result.policy_id))
    return EvaluateDeny(violated_properties=list(result.violated_properties))
