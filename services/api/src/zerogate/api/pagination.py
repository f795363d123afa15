"""Keyset pagination: ``?limit=&page_cursor=`` → ``{"data", "metadata"}``.

The cursor is opaque to callers: URL-safe base64 of ``<created_at>|<id>`` of
the last row of the page. Lists are ordered by ``(created_at, id)``, which every
list query serves from an index, so a page costs the same wherever it starts and
rows created meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Generic, Protocol, TypeVar

from fastapi import Query
from pydantic import BaseModel

from zerogate.api.errors import Invalid

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500

T = TypeVar("T")


class Keyed(Protocol):
    """A row that lists page by: every typed row of a list query is one."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


K = TypeVar("K", bound=Keyed)


@dataclass(frozen=True, slots=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    after: Cursor | None


def encode_cursor(cursor: Cursor) -> str:
    raw = f"{cursor.created_at.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        created, ident = raw.split("|", 1)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return Cursor(when, uuid.UUID(ident))
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise Invalid(
            "page_cursor: not a cursor this API returned", loc=("query", "page_cursor")
        ) from exc


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    page_cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageParams:
    """FastAPI dependency for list endpoints (async: no thread-pool hop)."""
    return PageParams(limit, decode_cursor(page_cursor) if page_cursor else None)


class PageMetadata(BaseModel):
    count: int
    limit: int
    next_page_cursor: str | None


class Page(BaseModel, Generic[T]):
    data: list[T]
    metadata: PageMetadata


def build_page(rows: Sequence[K], params: PageParams, convert: Callable[[K], T]) -> Page[T]:
    """``rows`` is what the repository fetched with ``limit + 1``."""
    more = len(rows) > params.limit
    shown = rows[: params.limit]
    next_cursor = None
    if more and shown:
        last = shown[-1]
        next_cursor = encode_cursor(Cursor(last.created_at, last.id))
    data = [convert(r) for r in shown]
    return Page[T](
        data=data,
        metadata=PageMetadata(count=len(data), limit=params.limit, next_page_cursor=next_cursor),
    )


def keyset_clause(params: PageParams, first_arg: int, prefix: str = "") -> tuple[str, list[Any]]:
    """SQL fragment ``AND (created_at, id) > ($n, $n+1)`` and its arguments."""
    if params.after is None:
        return "", []
    return (
        f" AND ({prefix}created_at, {prefix}id) > (${first_arg}, ${first_arg + 1})",
        [params.after.created_at, params.after.id],
    )


def ordered(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``item`` with ``keys`` first, in that order (JSON objects read better so)."""
    if tuple(item)[: len(keys)] == keys:
        return item
    first = {k: item[k] for k in keys if k in item}
    return first | {k: v for k, v in item.items() if k not in first}
