"""ASGI middleware of the REST API: request id and context, and the body limit.

:class:`RequestContextMiddleware`, outermost of ours, for each HTTP request:

* takes the caller's ``X-Request-ID`` when it is a short token
  (``[A-Za-z0-9._:-]{1,128}``), else makes one, and returns it on the response;
* holds a :class:`~zerogate.api.requestctx.RequestContext` (request id, source
  IP, method, and the audit writer as pre-commit hook) while the request runs;
* refuses a body larger than ``ZG_MAX_BODY_BYTES`` with 413 problem+json: at
  once when ``Content-Length`` says so, else as soon as the streamed bytes pass
  the limit (a chunked upload). The application is then told the client left,
  and whatever it still tries to send is dropped: the body is never read whole.

A pure ASGI middleware (no ``BaseHTTPMiddleware``): it adds no task and no
copy of the body to a request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zerogate.api import problems, requestctx
from zerogate.api.db import Connection
from zerogate.api.requestctx import RequestContext

REQUEST_ID_HEADER: Final = "x-request-id"
_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

AuditWriter = Callable[[Connection, RequestContext], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def request_id_of(scope: Scope) -> str:
    given = _header(scope, REQUEST_ID_HEADER.encode())
    if given is not None and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, audit: AuditWriter | None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        client = scope.get("client")
        ctx = RequestContext(
            request_id=request_id,
            remote_ip=client[0] if client else None,
            method=scope["method"],
            scope=scope,
            before_commit=self.audit,
        )
        rid_header = (REQUEST_ID_HEADER.encode(), request_id.encode())
        state: dict[str, Any] = {"started": False, "refused": False, "received": 0}

        async def send_with_id(message: Message) -> None:
            if state["refused"]:
                return  # we answered 413 already; the app's late answer goes nowhere
            if message["type"] == "http.response.start":
                state["started"] = True
                message = {**message, "headers": [*message.get("headers", ()), rid_header]}
            await send(message)

        async def refuse() -> None:
            state["refused"] = True
            if state["started"]:
                return
            response = problems.problem(
                413,
                f"the request body is larger than {self.max_body_bytes} bytes (ZG_MAX_BODY_BYTES)",
                type_=problems.TYPE_BASE + "payload_too_large",
                instance=scope.get("path"),
                headers={"Connection": "close", REQUEST_ID_HEADER: request_id},
            )
            await response(scope, receive, send)

        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await refuse()
            return

        async def counted_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    await refuse()
                    return {"type": "http.disconnect"}
            return message

        token = requestctx.CURRENT.set(ctx)
        try:
            await self.app(scope, counted_receive, send_with_id)
        except Exception:
            if not state["refused"]:
                raise
            # The app failed on the body we cut short; the client has its 413.
        finally:
            requestctx.CURRENT.reset(token)
