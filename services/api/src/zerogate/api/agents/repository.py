"""SQL behind the bus requests of agents: init and flow authorization.

:func:`load_flow` is the hot path of ``zg.v1.api.flow.authorize``: one round
trip gathers the client, its actor, the token its session rests on, the
resource, the policies of the actor's groups (Everyone included) for that
resource and the gateways of the resource's site. It is served by the primary
keys, ``policies_by_resource``, the membership primary key and
``devices_page``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from zerogate.api.db import Connection
from zerogate.api.engine.conditions import Condition, parse_conditions
from zerogate.api.engine.decision import PolicyInput

_FLOW_SQL: Final = """
SELECT c.actor_id,
       c.verified_at IS NOT NULL AS client_verified,
       a.disabled_at IS NOT NULL AS actor_disabled,
       t.expires_at AS token_expires_at,
       (t.id IS NOT NULL AND (t.revoked_at IS NOT NULL OR t.actor_id IS DISTINCT FROM c.actor_id))
           AS token_invalid,
       r.id AS resource_id, r.site_id, r.type, r.address, r.name, r.address_description,
       r.filters,
       (SELECT coalesce(json_agg(json_build_array(p.id, p.updated_at, p.conditions,
                                                  p.disabled_at IS NOT NULL)
                                 ORDER BY p.id), '[]')
          FROM policies p JOIN groups g ON g.id = p.group_id
         WHERE p.resource_id = r.id AND p.account_id = $1
           AND (g.kind = 'everyone' OR EXISTS (
                SELECT 1 FROM memberships m WHERE m.group_id = p.group_id
                   AND m.actor_id = c.actor_id))) AS policies,
       (SELECT coalesce(json_agg(json_build_array(d.id, d.public_key, host(d.ipv4),
                                                  host(d.ipv6), d.name,
                                                  host(d.last_seen_remote_ip))
                                 ORDER BY d.created_at, d.id), '[]')
          FROM devices d
         WHERE d.account_id = $1 AND d.site_id = r.site_id AND d.type = 'gateway') AS gateways
  FROM devices c
  JOIN actors a ON a.account_id = c.account_id AND a.id = c.actor_id
  JOIN resources r ON r.account_id = c.account_id AND r.id = $3
  LEFT JOIN tokens t ON t.account_id = c.account_id AND t.id = $4
 WHERE c.account_id = $1 AND c.id = $2 AND c.type = 'client'
"""

_VISIBLE_RESOURCES_SQL: Final = """
SELECT r.id, r.site_id, r.type, r.address, r.name, r.address_description, r.filters
  FROM resources r
 WHERE r.account_id = $1
   AND EXISTS (
       SELECT 1 FROM policies p JOIN groups g ON g.id = p.group_id
        WHERE p.resource_id = r.id AND p.disabled_at IS NULL
          AND (g.kind = 'everyone' OR EXISTS (
               SELECT 1 FROM memberships m WHERE m.group_id = p.group_id AND m.actor_id = $2)))
 ORDER BY r.name, r.id
"""

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


@dataclass(frozen=True, slots=True)
class ResourceRow:
    id: str
    site_id: str
    type: str
    address: str | None
    name: str
    address_description: str | None
    filters: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class GatewayRow:
    id: str
    public_key: str
    ipv4: str
    ipv6: str
    name: str
    last_seen_remote_ip: str | None


@dataclass(frozen=True, slots=True)
class FlowInputs:
    actor_id: str
    client_verified: bool
    actor_disabled: bool
    token_expires_at: datetime | None
    token_invalid: bool
    resource: ResourceRow
    policies: tuple[PolicyInput, ...]
    gateways: tuple[GatewayRow, ...]


def _resource(row: Any, id_column: str = "id") -> ResourceRow:
    return ResourceRow(
        id=str(row[id_column]),
        site_id=str(row["site_id"]),
        type=row["type"],
        address=row["address"],
        name=row["name"],
        address_description=row["address_description"],
        filters=row["filters"],
    )


async def load_flow(
    conn: Connection,
    account_id: uuid.UUID,
    client_id: uuid.UUID,
    resource_id: uuid.UUID,
    token_id: uuid.UUID | None,
) -> FlowInputs | None:
    """None when the client or the resource is not in the account."""
    row = await conn.fetchrow(_FLOW_SQL, account_id, client_id, resource_id, token_id)
    if row is None:
        return None
    policies = tuple(
        PolicyInput(pid, _conditions(pid, version, conditions), disabled)
        for pid, version, conditions, disabled in json.loads(row["policies"])
    )
    gateways = tuple(GatewayRow(*g) for g in json.loads(row["gateways"]))
    return FlowInputs(
        actor_id=str(row["actor_id"]),
        client_verified=row["client_verified"],
        actor_disabled=row["actor_disabled"],
        token_expires_at=row["token_expires_at"],
        token_invalid=row["token_invalid"],
        resource=_resource(row, "resource_id"),
        policies=policies,
        gateways=gateways,
    )


async def visible_resources(
    conn: Connection, account_id: uuid.UUID, actor_id: uuid.UUID
) -> list[ResourceRow]:
    """Resources an enabled policy of one of the actor's groups names (conditions aside)."""
    return [_resource(r) for r in await conn.fetch(_VISIBLE_RESOURCES_SQL, account_id, actor_id)]


async def token_is_live(
    conn: Connection,
    token_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None = None,
    site_id: uuid.UUID | None = None,
) -> bool:
    """The token exists in the account, is neither revoked nor expired, belongs to
    the given actor (client tokens) or site (gateway tokens), and its actor is enabled."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (
                 SELECT 1 FROM tokens t LEFT JOIN actors a ON a.id = t.actor_id
                  WHERE t.id = $1 AND t.account_id = $2 AND t.revoked_at IS NULL
                    AND (t.expires_at IS NULL OR t.expires_at > now())
                    AND a.disabled_at IS NULL
                    AND ($3::uuid IS NULL OR (t.type = 'client' AND t.actor_id = $3))
                    AND ($4::uuid IS NULL OR (t.type = 'gateway' AND t.site_id = $4)))""",
            token_id,
            account_id,
            actor_id,
            site_id,
        )
    )
