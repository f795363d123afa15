"""Publishing change events after commit.

The events and their payload, :class:`~zerogate.common.messages.events.ChangeEvent`,
are defined (with the table of every event published) in
:mod:`zerogate.common.messages.events`, so other services parse them without
importing the api. A service collects events in a :class:`UnitOfWork` while
its transaction runs; they are published only once the transaction has
committed, so nobody reacts to a change that rolled back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from pydantic import BaseModel

from zerogate.api.db import Connection, Pool
from zerogate.common.messages.events import ChangeEvent

__all__ = ["ChangeEvent", "Publisher", "UnitOfWork", "publish_all", "unit_of_work"]

log = logging.getLogger(__name__)


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
    from zerogate.api.requestctx import before_commit

    async with pool.acquire() as conn:
        uow = UnitOfWork(conn)
        async with conn.transaction():
            yield uow
            await before_commit(conn)
    await publish_all(publisher, uow.events)
