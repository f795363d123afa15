"""The context of the REST request being served: its id, source IP, caller.

:class:`zerogate.api.middleware.RequestContextMiddleware` makes one per HTTP
request and holds it in :data:`CURRENT` while the request runs (and resets it
after, so nothing leaks into whoever called the app in-process, e.g. a test).
Dependencies fill it in as they learn more (``authenticate`` the caller, the
sign-in service the signed-in actor). :func:`zerogate.api.db.transaction` and
:func:`zerogate.api.events.unit_of_work` call :func:`before_commit` inside every
transaction they commit, which is how the audit log is written in the same
transaction as the change (:mod:`zerogate.api.audit.service`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from zerogate.api.db import Connection

#: Methods whose requests change something (and so are audited when they commit).
CHANGING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(slots=True)
class RequestContext:
    request_id: str
    remote_ip: str | None
    method: str
    #: The ASGI scope: the router adds ``route`` and ``path_params`` to it in place.
    scope: MutableMapping[str, Any]
    account_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    token_id: uuid.UUID | None = None
    #: Ids of what the request created, by name (``{"site_id": ...}``).
    created: dict[str, str] = field(default_factory=dict)
    #: Audit even though the method is GET (the sign-in callback creating a user).
    audit_anyway: bool = False
    #: The audit row is written once per request, by the first commit.
    audited: bool = False
    before_commit: Callable[[Connection, RequestContext], Awaitable[None]] | None = None

    def caller(
        self, account_id: uuid.UUID, actor_id: uuid.UUID | None, token_id: uuid.UUID | None
    ) -> None:
        self.account_id, self.actor_id, self.token_id = account_id, actor_id, token_id


CURRENT: ContextVar[RequestContext | None] = ContextVar("zerogate_api_request", default=None)


def current() -> RequestContext | None:
    return CURRENT.get()


def note_created(name: str, ident: uuid.UUID | str) -> None:
    """Record the id of an object this request created (for the audit log)."""
    ctx = CURRENT.get()
    if ctx is not None:
        ctx.created[name] = str(ident)


async def before_commit(conn: Connection) -> None:
    """Run the request's pre-commit hook (the audit row) inside this transaction."""
    ctx = CURRENT.get()
    if ctx is not None and ctx.before_commit is not None:
        await ctx.before_commit(conn, ctx)
