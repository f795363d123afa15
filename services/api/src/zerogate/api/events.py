"""Change events: ``zg.v1.events.<entity>.<action>``, published after commit.

Any change that can end someone's access is announced so signaling can revoke
live authorizations (DESIGN.md, "Revocation"). A service collects events in a
:class:`UnitOfWork` while its transaction runs; they are published only once
the transaction has committed, so nobody reacts to a change that rolled back.

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
resource.updated        resource_id, site_id (a move announces the old site first)
resource.deleted        resource_id, site_id
group.deleted           group_id (after membership.removed for its members)
membership.removed      group_id, actor_ids
membership.added        group_id, actor_ids
token.revoked           token_id, actor_id or site_id
client.verified         client_id, actor_id
client.unverified       client_id, actor_id
client.deleted          client_id, actor_id
actor.disabled          actor_id
actor.deleted           actor_id
site.deleted            site_id
=====================  ==========================================
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, Field

from zerogate.api.db import Connection, Pool
from zerogate.common import subjects
from zerogate.common.messages import Message

log = logging.getLogger(__name__)


class ChangeEvent(Message):
    """Payload of every ``zg.v1.events.*`` message published by the api."""

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


class Publisher(Protocol):
    async def publish(self, subject: str, message: BaseModel) -> None: ...


async def publish_all(publisher: Publisher | None, events: list[ChangeEvent]) -> None:
    """Publish after commit; a bus failure is logged, the change stands."""
    for event in events:
        if publisher is None:
            log.warning("no bus; event not published", extra={"subject": event.subject})
            continue
        try:
            await publisher.publish(event.subject, event)
        except Exception:
            log.exception("event not published", extra={"subject": event.subject})


class UnitOfWork:
    """One transaction plus the events it will publish once committed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.events: list[ChangeEvent] = []

    def emit(self, entity: str, action: str, account_id: uuid.UUID, **ids: object) -> None:
        self.events.append(
            ChangeEvent.model_validate(
                {"entity": entity, "action": action, "account_id": account_id, **ids}
            )
        )


@asynccontextmanager
async def unit_of_work(pool: Pool, publisher: Publisher | None) -> AsyncIterator[UnitOfWork]:
    async with pool.acquire() as conn:
        uow = UnitOfWork(conn)
        async with conn.transaction():
            yield uow
    await publish_all(publisher, uow.events)
