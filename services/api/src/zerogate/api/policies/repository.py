"""Policy SQL, and the inputs of a policy decision.

:func:`load_decision_inputs` is the hot path of ``flow.authorize``: one indexed
lookup of the actor and resource, and one query for the policies of that
resource whose group is Everyone or has the actor as a member (served by
``policies_by_resource`` and the membership primary key).
"""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from zerogate.api.db import Connection
from zerogate.api.engine.conditions import parse_conditions
from zerogate.api.engine.decision import PolicyInput
from zerogate.api.pagination import PageParams, keyset_clause

_COLUMNS = (
    "id, account_id, group_id, resource_id, description, conditions, disabled_at,"
    " created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class ResourceRef:
    id: uuid.UUID
    site_id: uuid.UUID
    type: str
    address: str | None
    name: str
    filters: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """Everything :func:`zerogate.api.engine.decision.decide` needs besides the context."""

    account_id: uuid.UUID
    actor_id: uuid.UUID
    actor_disabled: bool
    resource: ResourceRef
    policies: tuple[PolicyInput, ...]


async def load_decision_inputs(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID, resource_id: uuid.UUID
) -> DecisionInputs | None:
    """None when the actor or the resource is not in the account."""
    head = await conn.fetchrow(
        """SELECT a.disabled_at IS NOT NULL AS actor_disabled,
                  r.id, r.site_id, r.type, r.address, r.name, r.filters
             FROM actors a JOIN resources r ON r.account_id = a.account_id AND r.id = $3
            WHERE a.account_id = $1 AND a.id = $2""",
        account_id,
        actor_id,
        resource_id,
    )
    if head is None:
        return None
    rows = await conn.fetch(
        """SELECT p.id, p.conditions, p.disabled_at IS NOT NULL AS disabled
             FROM policies p JOIN groups g ON g.id = p.group_id
            WHERE p.resource_id = $2 AND p.account_id = $1
              AND (g.kind = 'everyone' OR EXISTS (
                   SELECT 1 FROM memberships m WHERE m.group_id = p.group_id AND m.actor_id = $3))
            ORDER BY p.id""",
        account_id,
        resource_id,
        actor_id,
    )
    policies = tuple(
        PolicyInput(str(r["id"]), parse_conditions(r["conditions"]), r["disabled"]) for r in rows
    )
    resource = ResourceRef(
        id=head["id"],
        site_id=head["site_id"],
        type=head["type"],
        address=head["address"],
        name=head["name"],
        filters=head["filters"],
    )
    return DecisionInputs(account_id, actor_id, head["actor_disabled"], resource, policies)


async def create_policy(conn: Connection, account_id: uuid.UUID, values: dict[str, Any]) -> Any:
    return await conn.fetchrow(
        f"""INSERT INTO policies (account_id, group_id, resource_id, description, conditions)
            VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}""",
        account_id,
        values["group_id"],
        values["resource_id"],
        values["description"],
        values["conditions"],
    )


async def get_policy(conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM policies WHERE account_id = $1 AND id = $2",
        account_id,
        policy_id,
    )


async def list_policies(
    conn: Connection,
    account_id: uuid.UUID,
    params: PageParams,
    *,
    resource_id: uuid.UUID | None = None,
    group_id: uuid.UUID | None = None,
) -> list[Any]:
    clause, args = keyset_clause(params, 5)
    return list(
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM policies
                 WHERE account_id = $1 AND ($2::uuid IS NULL OR resource_id = $2)
                   AND ($3::uuid IS NULL OR group_id = $3){clause}
                 ORDER BY created_at, id LIMIT $4""",
            account_id,
            resource_id,
            group_id,
            params.limit + 1,
            *args,
        )
    )


async def update_policy(
    conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID, changes: dict[str, Any]
) -> Any:
    allowed = {
        k: v
        for k, v in changes.items()
        if k in {"group_id", "resource_id", "description", "conditions"}
    }
    if not allowed:
        return await get_policy(conn, account_id, policy_id)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(allowed, start=3))
    return await conn.fetchrow(
        f"UPDATE policies SET {sets}, updated_at = now() WHERE account_id = $1 AND id = $2"
        f" RETURNING {_COLUMNS}",
        account_id,
        policy_id,
        *allowed.values(),
    )


async def set_disabled(
    conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID, *, disabled: bool
) -> Any:
    return await conn.fetchrow(
        f"""UPDATE policies
               SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) ELSE NULL END,
                   updated_at = now()
             WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
        account_id,
        policy_id,
        disabled,
    )


async def delete_policy(conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"DELETE FROM policies WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}",
        account_id,
        policy_id,
    )


async def policies_of(
    conn: Connection,
    account_id: uuid.UUID,
    *,
    group_id: uuid.UUID | None = None,
    resource_id: uuid.UUID | None = None,
) -> list[Any]:
    """Every policy of a group or of a resource (what a cascade will delete)."""
    return list(
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM policies
                 WHERE account_id = $1 AND ($2::uuid IS NULL OR group_id = $2)
                   AND ($3::uuid IS NULL OR resource_id = $3)
                 ORDER BY id""",
            account_id,
            group_id,
            resource_id,
        )
    )
