"""Policy SQL, and the one loader of everything a policy decision needs.

:func:`load_decision_inputs` serves both ``zg.v1.api.flow.authorize`` (by
client, with the session's token and the site's gateways) and ``POST
/v1/policies/evaluate`` (by actor or by client). One round trip gathers the
subject (client and its actor, or the actor), the resource, the token row if
one was named, the policies of the actor's groups (Everyone included) for that
resource and, on request, the gateways of the resource's site. It is served by
the primary keys, ``policies_by_resource``, the membership primary key and
``devices_page``. The loader judges nothing: a token that is missing comes
back as ``None`` and :mod:`zerogate.api.policies.service` refuses it.
"""

# ruff: noqa: S608 - SQL text is built only from this module's constants and
# placeholder numbers; every value travels as a bind parameter.

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from zerogate.api.db import Connection, row, row_or_none, rows
from zerogate.api.devices import SiteGateway
from zerogate.api.engine.conditions import Condition, parse_conditions
from zerogate.api.engine.decision import PolicyInput
from zerogate.api.pagination import PageParams, keyset_clause
from zerogate.api.resources.repository import ResourceRow

_COLUMNS: Final = (
    "id, account_id, group_id, resource_id, description, conditions, disabled_at,"
    " created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class PolicyRow:
    id: uuid.UUID
    account_id: uuid.UUID
    group_id: uuid.UUID
    resource_id: uuid.UUID
    description: str | None
    conditions: list[dict[str, Any]]
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TokenRef:
    """The token row a decision was asked to rest on, as stored (unjudged)."""

    id: uuid.UUID
    type: str
    actor_id: uuid.UUID | None
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """Everything a decision needs besides the client's context.

    ``client_id``/``client_verified`` are ``None``/``False`` when the subject
    is an actor; ``token`` is ``None`` when none was named or none was found;
    ``gateways`` is empty unless asked for.
    """

    account_id: uuid.UUID
    actor_id: uuid.UUID
    actor_disabled: bool
    client_id: uuid.UUID | None
    client_verified: bool
    resource: ResourceRow
    policies: tuple[PolicyInput, ...]
    token: TokenRef | None
    gateways: tuple[SiteGateway, ...]


_DECISION_SELECT: Final = """
SELECT a.id AS actor_id, a.disabled_at IS NOT NULL AS actor_disabled,
       {client},
       r.id, r.account_id, r.type, r.address, r.name, r.address_description, r.site_id,
       r.filters, r.ip_stack, r.created_at, r.updated_at,
       t.id AS token_id, t.type AS token_type, t.actor_id AS token_actor_id,
       t.expires_at AS token_expires_at, t.revoked_at AS token_revoked_at,
       (SELECT coalesce(json_agg(json_build_array(p.id, p.updated_at, p.conditions,
                                                  p.disabled_at IS NOT NULL)
                                 ORDER BY p.id), '[]')
          FROM policies p JOIN groups g ON g.id = p.group_id
         WHERE p.resource_id = r.id AND p.account_id = $1
           AND (g.kind = 'everyone' OR EXISTS (
                SELECT 1 FROM memberships m WHERE m.group_id = p.group_id
                   AND m.actor_id = a.id))) AS policies,
       CASE WHEN $5 THEN
       (SELECT coalesce(json_agg(json_build_array(d.id, d.public_key, host(d.ipv4),
                                                  host(d.ipv6), d.name,
                                                  host(d.last_seen_remote_ip))
                                 ORDER BY d.created_at, d.id), '[]')
          FROM devices d
         WHERE d.account_id = $1 AND d.site_id = r.site_id AND d.type = 'gateway')
       END AS gateways
"""
# $2 is the client (by client) or the actor (by actor); $3 the resource; $4 the token.
_BY_CLIENT: Final = (
    _DECISION_SELECT.format(
        client="c.id AS client_id, c.verified_at IS NOT NULL AS client_verified"
    )
    + """
  FROM devices c
  JOIN actors a ON a.account_id = c.account_id AND a.id = c.actor_id
  JOIN resources r ON r.account_id = c.account_id AND r.id = $3
  LEFT JOIN tokens t ON t.account_id = c.account_id AND t.id = $4
 WHERE c.account_id = $1 AND c.id = $2 AND c.type = 'client'
"""
)
_BY_ACTOR: Final = (
    _DECISION_SELECT.format(client="NULL::uuid AS client_id, false AS client_verified")
    + """
  FROM actors a
  JOIN resources r ON r.account_id = a.account_id AND r.id = $3
  LEFT JOIN tokens t ON t.account_id = a.account_id AND t.id = $4
 WHERE a.account_id = $1 AND a.id = $2
"""
)

#: Parsed conditions by (policy id, updated_at): a policy's conditions change
#: only with its updated_at, so parsing happens once per version.
_CONDITIONS_CACHE: dict[tuple[str, str], tuple[Condition, ...]] = {}
_CONDITIONS_CACHE_MAX: Final = 50_000


def _conditions(policy_id: str, version: str, raw: list[dict[str, Any]]) -> tuple[Condition, ...]:
    key = (policy_id, version)
    parsed = _CONDITIONS_CACHE.get(key)
    if parsed is None:
        parsed = parse_conditions(raw)
        if len(_CONDITIONS_CACHE) >= _CONDITIONS_CACHE_MAX:
            _CONDITIONS_CACHE.clear()
        _CONDITIONS_CACHE[key] = parsed
    return parsed


async def load_decision_inputs(
    conn: Connection,
    account_id: uuid.UUID,
    resource_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
    token_id: uuid.UUID | None = None,
    gateways: bool = False,
) -> DecisionInputs | None:
    """The inputs for exactly one of ``actor_id`` and ``client_id``; None when the
    subject or the resource is not in the account."""
    if (actor_id is None) == (client_id is None):
        raise ValueError("name exactly one of actor_id and client_id")
    sql, subject = (_BY_CLIENT, client_id) if client_id is not None else (_BY_ACTOR, actor_id)
    record = await conn.fetchrow(sql, account_id, subject, resource_id, token_id, gateways)
    if record is None:
        return None
    policies = tuple(
        PolicyInput(pid, _conditions(pid, version, conditions), disabled)
        for pid, version, conditions, disabled in json.loads(record["policies"])
    )
    token = None
    if record["token_id"] is not None:
        token = TokenRef(
            id=record["token_id"],
            type=record["token_type"],
            actor_id=record["token_actor_id"],
            expires_at=record["token_expires_at"],
            revoked_at=record["token_revoked_at"],
        )
    return DecisionInputs(
        account_id=account_id,
        actor_id=record["actor_id"],
        actor_disabled=record["actor_disabled"],
        client_id=record["client_id"],
        client_verified=record["client_verified"],
        resource=ResourceRow(
            id=record["id"],
            account_id=record["account_id"],
            type=record["type"],
            address=record["address"],
            name=record["name"],
            address_description=record["address_description"],
            site_id=record["site_id"],
            filters=record["filters"],
            ip_stack=record["ip_stack"],
            created_at=record["created_at"],
            updated_at=record["updated_at"],
        ),
        policies=policies,
        token=token,
        gateways=tuple(SiteGateway(*g) for g in json.loads(record["gateways"] or "[]")),
    )


async def create_policy(
    conn: Connection, account_id: uuid.UUID, values: dict[str, Any]
) -> PolicyRow:
    return row(
        PolicyRow,
        await conn.fetchrow(
            f"""INSERT INTO policies (account_id, group_id, resource_id, description, conditions)
                VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}""",
            account_id,
            values["group_id"],
            values["resource_id"],
            values["description"],
            values["conditions"],
        ),
    )


async def get_policy(
    conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID
) -> PolicyRow | None:
    return row_or_none(
        PolicyRow,
        await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM policies WHERE account_id = $1 AND id = $2",
            account_id,
            policy_id,
        ),
    )


async def list_policies(
    conn: Connection,
    account_id: uuid.UUID,
    params: PageParams,
    *,
    resource_id: uuid.UUID | None = None,
    group_id: uuid.UUID | None = None,
) -> list[PolicyRow]:
    clause, args = keyset_clause(params, 5)
    return rows(
        PolicyRow,
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
        ),
    )


async def update_policy(
    conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID, changes: dict[str, Any]
) -> PolicyRow | None:
    allowed = {
        k: v
        for k, v in changes.items()
        if k in {"group_id", "resource_id", "description", "conditions"}
    }
    if not allowed:
        return await get_policy(conn, account_id, policy_id)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(allowed, start=3))
    return row_or_none(
        PolicyRow,
        await conn.fetchrow(
            f"UPDATE policies SET {sets}, updated_at = now() WHERE account_id = $1 AND id = $2"
            f" RETURNING {_COLUMNS}",
            account_id,
            policy_id,
            *allowed.values(),
        ),
    )


async def set_disabled(
    conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID, *, disabled: bool
) -> PolicyRow | None:
    return row_or_none(
        PolicyRow,
        await conn.fetchrow(
            f"""UPDATE policies
                   SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) ELSE NULL END,
                       updated_at = now()
                 WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
            account_id,
            policy_id,
            disabled,
        ),
    )


async def delete_policy(
    conn: Connection, account_id: uuid.UUID, policy_id: uuid.UUID
) -> PolicyRow | None:
    return row_or_none(
        PolicyRow,
        await conn.fetchrow(
            f"DELETE FROM policies WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}",
            account_id,
            policy_id,
        ),
    )


async def policies_of(
    conn: Connection,
    account_id: uuid.UUID,
    *,
    group_id: uuid.UUID | None = None,
    resource_id: uuid.UUID | None = None,
) -> list[PolicyRow]:
    """Every policy of a group or of a resource (what a cascade will delete)."""
    return rows(
        PolicyRow,
        await conn.fetch(
            f"""SELECT {_COLUMNS} FROM policies
                 WHERE account_id = $1 AND ($2::uuid IS NULL OR group_id = $2)
                   AND ($3::uuid IS NULL OR resource_id = $3)
                 ORDER BY id""",
            account_id,
            group_id,
            resource_id,
        ),
    )
