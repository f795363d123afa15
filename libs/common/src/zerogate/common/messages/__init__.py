"""Bus message models.

Every message on the bus is a pydantic model deriving from :class:`Message`.
Models are frozen and ignore unknown fields, so a newer publisher can add a
field without breaking an older subscriber. Domain models live in submodules
(``api``, ``events``, ``relay``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """Base of every bus message."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ErrorReply(Message):
    """What a responder sends back when its handler failed."""

    error: str
    detail: str = ""


__all__ = ["ErrorReply", "Message"]
