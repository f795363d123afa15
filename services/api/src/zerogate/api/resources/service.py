"""Resources: CRUD with the engine's address and filter validation."""

from __future__ import annotations

import uuid
from typing import Any

from zerogate.api.auth import Principal
from zerogate.api.db import Connection, Pool
from zerogate.api.engine.addresses import Filter, normalize_address, validate_filters
from zerogate.api.errors import Conflict, Invalid, not_found
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.pagination import Page, PageParams, build_page
from zerogate.api.policies import repository as policies
from zerogate.api.requestctx import note_created
from zerogate.api.resources import repository
from zerogate.api.resources.repository import ResourceRow
from zerogate.api.resources.schemas import ResourceCreate, ResourcePublic, ResourceUpdate
from zerogate.api.sites import repository as sites


def public(row: ResourceRow) -> ResourcePublic:
    return ResourcePublic.model_validate(row, from_attributes=True)


def _address(type_: str, address: str | None) -> str | None:
    try:
        return normalize_address(type_, address)
    except ValueError as exc:
        raise Invalid(f"address: {exc}", loc=("body", "address")) from exc


def _filters(raw: list[dict[str, Any]]) -> list[Filter]:
    try:
        return validate_filters(raw)
    except ValueError as exc:
        raise Invalid(f"filters: {exc}", loc=("body", "filters")) from exc


def _ip_stack(type_: str, ip_stack: str) -> str:
    if type_ != "dns" and ip_stack != "dual":
        raise Invalid(
            "ip_stack: only a dns resource has address families to choose",
            loc=("body", "ip_stack"),
        )
    return ip_stack


async def _require_site(conn: Connection, principal: Principal, site_id: uuid.UUID) -> None:
    if await sites.get_site(conn, principal.account_id, site_id) is None:
        raise not_found("site")


async def create_resource(
    pool: Pool, publisher: Publisher | None, principal: Principal, body: ResourceCreate
) -> ResourcePublic:
    values = {
        "type": body.type,
        "address": _address(body.type, body.address),
        "name": body.name,
        "address_description": body.address_description,
        "site_id": body.site_id,
        "filters": _filters(body.filters),
        "ip_stack": _ip_stack(body.type, body.ip_stack),
    }
    async with unit_of_work(pool, publisher) as uow:
        await _require_site(uow.conn, principal, body.site_id)
        if body.type == "internet" and await repository.internet_resource_exists(
            uow.conn, principal.account_id
        ):
            raise Conflict("the account already has an internet resource")
        row = await repository.create_resource(uow.conn, principal.account_id, values)
        note_created("resource_id", row.id)
        uow.emit(
            "resource",
            "created",
            principal.account_id,
            resource_id=row.id,
            site_id=row.site_id,
        )
    return public(row)


async def get_resource(pool: Pool, principal: Principal, resource_id: uuid.UUID) -> ResourcePublic:
    async with pool.acquire() as conn:
        row = await repository.get_resource(conn, principal.account_id, resource_id)
    if row is None:
        raise not_found("resource")
    return public(row)


async def list_resources(
    pool: Pool, principal: Principal, params: PageParams, site_id: uuid.UUID | None
) -> Page[ResourcePublic]:
    async with pool.acquire() as conn:
        rows = await repository.list_resources(conn, principal.account_id, params, site_id=site_id)
    return build_page(rows, params, public)


async def update_resource(
    pool: Pool,
    publisher: Publisher | None,
    principal: Principal,
    resource_id: uuid.UUID,
    body: ResourceUpdate,
) -> ResourcePublic:
    changes = body.model_dump(exclude_unset=True)
    for key in ("name", "site_id", "filters", "ip_stack"):
        if key in changes and changes[key] is None:
            raise Invalid(f"{key}: can't be null", loc=("body", key))
    async with unit_of_work(pool, publisher) as uow:
        current = await repository.get_resource(uow.conn, principal.account_id, resource_id)
        if current is None:
            raise not_found("resource")
        if "address" in changes:
            changes["address"] = _address(current.type, changes["address"])
        if "filters" in changes:
            changes["filters"] = _filters(changes["filters"])
        if "ip_stack" in changes:
            changes["ip_stack"] = _ip_stack(current.type, changes["ip_stack"])
        if "site_id" in changes:
            await _require_site(uow.conn, principal, changes["site_id"])
        row = await repository.update_resource(uow.conn, principal.account_id, resource_id, changes)
        if row is None:  # deleted meanwhile
            raise not_found("resource")
        # A move to another site ends what the old site's gateways serve: announce the
        # old site too, then the new one (the last event is the current state).
        sites_touched = [current.site_id, row.site_id]
        for site_id in dict.fromkeys(sites_touched):
            uow.emit(
                "resource",
                "updated",
                principal.account_id,
                resource_id=resource_id,
                site_id=site_id,
            )
    return public(row)


async def delete_resource(
    pool: Pool, publisher: Publisher | None, principal: Principal, resource_id: uuid.UUID
) -> None:
    async with unit_of_work(pool, publisher) as uow:
        cascaded = await policies.policies_of(
            uow.conn, principal.account_id, resource_id=resource_id
        )
        row = await repository.delete_resource(uow.conn, principal.account_id, resource_id)
        if row is None:
            raise not_found("resource")
        for policy in cascaded:
            uow.emit(
                "policy",
                "deleted",
                principal.account_id,
                policy_id=policy.id,
                group_id=policy.group_id,
                resource_id=resource_id,
            )
        uow.emit(
            "resource",
            "deleted",
            principal.account_id,
            resource_id=resource_id,
            site_id=row.site_id,
        )
