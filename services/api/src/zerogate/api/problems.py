"""RFC 9457 problem details for every error the REST API returns.

One set of exception handlers renders them all, so routers never catch:

* our :mod:`zerogate.api.errors` tree → 400/401/403/404/409/422/429/502/503
  (429 with ``Retry-After``), and an error answer from another service over the
  bus → 502; the ``type`` is ``https://zerogate.dev/problems/<code>``;
* a body over ``ZG_MAX_BODY_BYTES`` → 413 (``payload_too_large``, rendered by
  :mod:`zerogate.api.middleware` with :func:`problem`, before routing);
* request validation (bad JSON, wrong types, unknown cursor) → 422; every 422
  carries ``errors`` (``[{"type", "loc", "msg"}]``, pydantic's shape: ``loc`` names
  where, e.g. ``["body", "name"]`` or ``["query", "ip"]``) and a ``detail`` that
  starts with the field, e.g. ``query.ip: value is not a valid IPv4 or IPv6 address``;
* Postgres unique/exclusion violations → 409, foreign-key violations → 409,
  check violations → 422 (the database is the last line of defence);
* Starlette's HTTP errors (unknown route 404, 405) keep their status;
* anything else → 500 without internals.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Final

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zerogate.api.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ProviderFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
    ZerogateError,
)
from zerogate.common.bus import RemoteError

log = logging.getLogger(__name__)

#: RFC 9457 §3: the media type of a problem details object.
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
#: RFC 9457 §4.2.1: "about:blank" means the type adds nothing beyond the status.
ABOUT_BLANK: Final = "about:blank"
TYPE_BASE: Final = "https://zerogate.dev/problems/"

#: What a unique constraint or index means to the caller (the generic text otherwise).
_UNIQUE_DETAILS: Final = {
    "policies_group_id_resource_id_key": "a policy for this group and resource already exists",
    "actors_account_email": "an actor with this email already exists",
    "groups_account_id_name_key": "a group with this name already exists",
    "sites_account_id_name_key": "a site with this name already exists",
    "resources_one_internet": "the account already has an internet resource",
    "accounts_slug_key": "an account with this slug already exists",
}

_STATUS_BY_ERROR: Final[tuple[tuple[type[ZerogateError], int], ...]] = (
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Conflict, 409),
    (Invalid, 422),
    (BadRequest, 400),
    (RateLimited, 429),
    (ProviderFailed, 502),  # an identity provider answered with an error or garbage
    (Unavailable, 503),  # a dependency (the bus, a registry) is down or silent
    (RemoteError, 502),  # another service answered with an error
)


def problem(
    status: int,
    detail: str | None = None,
    *,
    type_: str = ABOUT_BLANK,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _status_for(exc: ZerogateError) -> int:
    for cls, status in _STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


async def _zerogate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZerogateError)
    status = _status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    if status == 500:
        log.error("unmapped error", extra={"code": exc.code})
        return problem(500, "internal error", instance=request.url.path)
    extensions: dict[str, Any] = {}
    if isinstance(exc, Invalid):
        extensions["errors"] = [_error(exc.code, exc.loc, exc.detail)]
    return problem(
        status,
        exc.detail,
        type_=TYPE_BASE + exc.code,
        instance=request.url.path,
        headers=headers,
        **extensions,
    )


def _error(type_: str, loc: tuple[str | int, ...], msg: str) -> dict[str, Any]:
    """One ``errors[]`` item, in pydantic's shape: where (``loc``) and what (``msg``)."""
    return {"type": type_, "loc": list(loc), "msg": msg}


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    cleaned: list[dict[str, Any]] = []
    for err in errors:
        item = {k: err[k] for k in ("type", "loc", "msg") if k in err}
        ctx = err.get("ctx")
        if isinstance(ctx, dict):
            item["ctx"] = {k: str(v) for k, v in ctx.items()}
        cleaned.append(item)
    return cleaned


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _clean_errors(exc.errors())
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: "
        f"{str(e.get('msg', '')).removeprefix('Value error, ')}"
        for e in errors
    )
    return problem(
        422,
        detail[:1000] or "invalid request",
        type_=TYPE_BASE + "validation",
        instance=request.url.path,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode at all (e.g. not UTF-8):
        # to callers that is the same as malformed JSON.
        return problem(
            422,
            "body: the request body is not valid JSON",
            type_=TYPE_BASE + "validation",
            instance=request.url.path,
            errors=[_error("json_invalid", ("body",), "the request body is not valid JSON")],
        )
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(
        exc.status_code,
        detail,
        instance=request.url.path,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, asyncpg.PostgresError)
    path = request.url.path
    if isinstance(exc, asyncpg.UniqueViolationError | asyncpg.ExclusionViolationError):
        return problem(
            409,
            _UNIQUE_DETAILS.get(
                exc.constraint_name or "", "an object with these values already exists"
            ),
            instance=path,
            type_=TYPE_BASE + "conflict",
        )
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return problem(
            409,
            "the object is still referenced, or references a missing object",
            instance=path,
            type_=TYPE_BASE + "conflict",
        )
    # The last line of defence: the schemas and services should have refused these
    # with the field's name already, so the database's own words are all there is.
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.NotNullViolationError):
        detail = "body: the values are not allowed together"
        return problem(
            422,
            detail,
            instance=path,
            type_=TYPE_BASE + "invalid",
            errors=[_error("invalid", ("body",), detail)],
        )
    if isinstance(exc, asyncpg.DataError):
        detail = "body: a value cannot be stored (out of range, or a character refused)"
        return problem(
            422,
            detail,
            instance=path,
            type_=TYPE_BASE + "invalid",
            errors=[_error("invalid", ("body",), detail)],
        )
    log.error("database error", extra={"sqlstate": exc.sqlstate})
    return problem(500, "internal error", instance=path)


async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem(500, "internal error", instance=request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ZerogateError, _zerogate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(asyncpg.PostgresError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
