"""Change events: ``zg.v1.events.<entity>.<action>``, published by the api after commit.

Any change that can end someone's access is announced so signaling can revoke
live authorizations (DESIGN.md, "Revocation"): on any event it re-decides the
live authorizations of the event's account. Every event carries
``account_id``, ``occurred_at`` and the ids below; the payload of every one is
:class:`ChangeEvent`. Subscribe to all of them with
:data:`zerogate.common.subjects.EVENTS_ALL`.

Published (entity.action → ids besides ``account_id``):

=====================  ==========================================
policy.created          policy_id, group_id, resource_id
policy.updated          policy_id, group_id, resource_id (a change of group or
                        resource announces the old pair first, then the new)
policy.disabled         policy_id, group_id, resource_id
policy.enabled          policy_id, group_id, resource_id
policy.deleted          policy_id, group_id, resource_id (also for each policy a
                        group or resource deletion takes with it)
resource.created        resource_id, site_id
resource.updated        resource_id, site_id (any change: address, filters,
                        name, site; a move announces the old site first)
resource.deleted        resource_id, site_id
group.deleted           group_id (after membership.removed for its members)
membership.removed      group_id, actor_ids
membership.added        group_id, actor_ids
token.revoked           token_id, actor_id or site_id (also for each token an
                        actor disable revokes, before actor.disabled)
client.verified         client_id, actor_id
client.unverified       client_id, actor_id
client.deleted          client_id, actor_id
actor.disabled          actor_id
actor.enabled           actor_id (its earlier tokens stay revoked)
actor.deleted           actor_id (its clients, tokens and memberships go with it)
site.deleted            site_id (its gateways and gateway tokens go with it)
=====================  ==========================================
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import Field

from zerogate.common import subjects
from zerogate.common.messages import Message

__all__ = ["ChangeEvent"]


class ChangeEvent(Message):
    """Payload of every ``zg.v1.events.*`` message the api publishes."""

    entity: str
    action: str
    account_id: uuid.UUID
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor_id: uuid.UUID | None = None
    actor_ids: tuple[uuid.UUID, ...] = ()
    client_id: uuid.UUID | None = None
    group_id: uuid.UUID | None = None
    policy_id: uuid.UUID | None = None
    resource_id: uuid.UUID | None = None
    site_id: uuid.UUID | None = None
    token_id: uuid.UUID | None = None

    @property
    def subject(self) -> str:
        return subjects.event(self.entity, self.action)
