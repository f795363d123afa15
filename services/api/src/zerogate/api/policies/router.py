"""``/v1/policies`` and ``POST /v1/policies/evaluate``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from zerogate.api.auth import Admin
from zerogate.api.deps import PoolDep, PublisherDep
from zerogate.api.pagination import Page, PageParams, page_params
from zerogate.api.policies import service
from zerogate.api.policies.schemas import (
    EvaluateRequest,
    EvaluateResponse,
    PolicyCreate,
    PolicyPublic,
    PolicyUpdate,
)

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.get("")
async def list_policies(
    principal: Admin,
    pool: PoolDep,
    params: Annotated[PageParams, Depends(page_params)],
    resource_id: Annotated[uuid.UUID | None, Query()] = None,
    group_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[PolicyPublic]:
    return await service.list_policies(
        pool, principal, params, resource_id=resource_id, group_id=group_id
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_policy(
    body: PolicyCreate, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> PolicyPublic:
    return await service.create_policy(pool, publisher, principal, body)


@router.post("/evaluate")
async def evaluate(body: EvaluateRequest, principal: Admin, pool: PoolDep) -> EvaluateResponse:
    return await service.evaluate(pool, principal, body)


@router.get("/{policy_id}")
async def get_policy(policy_id: uuid.UUID, principal: Admin, pool: PoolDep) -> PolicyPublic:
    return await service.get_policy(pool, principal, policy_id)


@router.patch("/{policy_id}")
async def update_policy(
    policy_id: uuid.UUID,
    body: PolicyUpdate,
    principal: Admin,
    pool: PoolDep,
    publisher: PublisherDep,
) -> PolicyPublic:
    return await service.update_policy(pool, publisher, principal, policy_id, body)


@router.delete("/{policy_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_policy(
    policy_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> Response:
    await service.delete_policy(pool, publisher, principal, policy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{policy_id}/disable")
async def disable_policy(
    policy_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> PolicyPublic:
    return await service.set_disabled(pool, publisher, principal, policy_id, disabled=True)


@router.post("/{policy_id}/enable")
async def enable_policy(
    policy_id: uuid.UUID, principal: Admin, pool: PoolDep, publisher: PublisherDep
) -> PolicyPublic:
    return await service.set_disabled(pool, publisher, principal, policy_id, disabled=False)
