"""A thin layer over nats-py: pydantic messages, traces across the bus.

::

    Unavailable (zerogate.common.errors)
    └── BusError           the bus could not carry the message
        └── BusTimeout     no reply within the request's timeout
    RemoteError            the responder answered with an error (``code``, ``detail``)

Every publish carries the W3C ``traceparent`` (and ``tracestate``) in NATS
headers, inside a ``publish <subject>`` span; every handler runs inside a
``process <subject>`` span that continues the sender's trace. Handlers run
concurrently (one task per message, bounded), so one slow request does not
hold up the others on its subscription. After a reconnect nats-py restores the
subscriptions by itself; ``on_reconnect`` lets a service re-sync state it
published (presence, heartbeats).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError

from zerogate.common.errors import Unavailable, ZerogateError
from zerogate.common.messages import ErrorReply

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("zerogate.bus")

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

ERROR_HEADER = "Zg-Error"
#: At most this many handler tasks run at once per subscription.
MAX_CONCURRENT_HANDLERS = 256


class BusError(Unavailable):
    default_code = "bus"


class BusTimeout(BusError):
    default_code = "timeout"


class RemoteError(ZerogateError):
    """The responder answered with an error: not a bus fault, so not :class:`BusError`."""

    default_code = "remote"


Handler = Callable[[M], Awaitable[BaseModel | None]]


def redact_url(url: str) -> str:
    """The URL without user and password, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _headers_with_context() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


class Subscription:
    """A live subscription; ``unsubscribe()`` stops it and waits for running handlers."""

    def __init__(self, sub: NatsSubscription, tasks: set[asyncio.Task[None]]) -> None:
        self._sub = sub
        self._tasks = tasks

    async def unsubscribe(self) -> None:
        await self._sub.unsubscribe()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class Bus:
    """Connected bus; build it with :meth:`connect`."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._subs: list[Subscription] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        connect_timeout: float = 5.0,
        timeout: float | None = None,
    ) -> Bus:
        """Connect, retrying until NATS answers, or for at most ``timeout`` seconds.

        Once connected, the client reconnects by itself forever.
        """

        async def reconnected() -> None:
            log.info("bus reconnected", extra={"client": name})
            if on_reconnect is not None:
                try:
                    await on_reconnect()
                except Exception:
                    log.exception("re-sync after reconnect failed")

        async def disconnected() -> None:
            log.warning("bus disconnected", extra={"client": name})

        async def error_cb(exc: Exception) -> None:
            log.debug("bus error: %s", exc)

        try:
            connecting = nats.connect(
                servers=[url],
                name=name,
                connect_timeout=connect_timeout,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                reconnected_cb=reconnected,
                disconnected_cb=disconnected,
                error_cb=error_cb,
            )
            nc = await asyncio.wait_for(connecting, timeout)
        except Exception as exc:
            raise BusError(f"cannot connect to NATS at {redact_url(url)}: {exc}") from exc
        return cls(nc)

    @property
    def nats(self) -> NatsClient:
        """The underlying client, for JetStream and KV."""
        return self._nc

    @property
    def is_connected(self) -> bool:
        return bool(self._nc.is_connected)

    async def publish(self, subject: str, message: BaseModel) -> None:
        with _tracer.start_as_current_span(
            f"publish {subject}",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject},
        ):
            await self._nc.publish(
                subject, message.model_dump_json().encode(), headers=_headers_with_context()
            )

    async def request(
        self, subject: str, message: BaseModel, reply_model: type[R], *, timeout: float
    ) -> R:
        with _tracer.start_as_current_span(
            f"publish {subject}",
            kind=SpanKind.CLIENT,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject},
        ) as span:
            try:
                msg = await self._nc.request(
                    subject,
                    message.model_dump_json().encode(),
                    timeout=timeout,
                    headers=_headers_with_context(),
                )
            except NoRespondersError as exc:
                span.set_status(Status(StatusCode.ERROR, "no responders"))
                raise BusError(f"no responder on {subject}", code="no_responders") from exc
            except (TimeoutError, NatsTimeoutError) as exc:
                span.set_status(Status(StatusCode.ERROR, "timeout"))
                raise BusTimeout(f"no reply on {subject} within {timeout}s") from exc
            if msg.headers and msg.headers.get(ERROR_HEADER):
                err = ErrorReply.model_validate_json(msg.data)
                span.set_status(Status(StatusCode.ERROR, err.error))
                raise RemoteError(err.detail, code=err.error)
            try:
                return reply_model.model_validate_json(msg.data)
            except ValidationError as exc:
                raise BusError(f"malformed reply on {subject}: {exc}") from exc

    async def subscribe(
        self,
        subject: str,
        model: type[M],
        handler: Handler[M],
        *,
        queue: str | None = None,
    ) -> Subscription:
        tasks: set[asyncio.Task[None]] = set()
        limit = asyncio.Semaphore(MAX_CONCURRENT_HANDLERS)
        nc = self._nc

        async def run(msg: Msg) -> None:
            async with limit:
                ctx = propagate.extract(msg.headers or {})
                token = otel_context.attach(ctx)
                try:
                    with _tracer.start_as_current_span(
                        f"process {msg.subject}",
                        kind=SpanKind.CONSUMER if not msg.reply else SpanKind.SERVER,
                        attributes={
                            "messaging.system": "nats",
                            "messaging.destination.name": msg.subject,
                        },
                    ) as span:
                        reply: BaseModel | None
                        error: ErrorReply | None = None
                        try:
                            request = model.model_validate_json(msg.data)
                            reply = await handler(request)
                        except ValidationError as exc:
                            error = ErrorReply(error="bad_request", detail=str(exc)[:500])
                        except ZerogateError as exc:
                            error = ErrorReply(error=exc.code, detail=exc.detail)
                        except Exception:
                            log.exception("handler failed", extra={"subject": msg.subject})
                            error = ErrorReply(error="internal", detail="internal error")
                        if error is not None:
                            span.set_status(Status(StatusCode.ERROR, error.error))
                        if msg.reply:
                            if error is not None:
                                await nc.publish(
                                    msg.reply,
                                    error.model_dump_json().encode(),
                                    headers={ERROR_HEADER: "1"},
                                )
                            elif reply is not None:
                                await nc.publish(msg.reply, reply.model_dump_json().encode())
                finally:
                    otel_context.detach(token)

        async def callback(msg: Msg) -> None:
            task = asyncio.create_task(run(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        sub = await nc.subscribe(subject, queue=queue or "", cb=callback)
        wrapped = Subscription(sub, tasks)
        self._subs.append(wrapped)
        return wrapped

    async def flush(self, timeout: int = 2) -> None:
        await self._nc.flush(timeout=timeout)

    async def close(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: S112 - closing anyway
                continue
        self._subs.clear()
        if not self._nc.is_closed:
            await self._nc.drain()


def traced_headers() -> dict[str, Any]:
    """Headers that carry the current trace context (for raw nats-py use)."""
    return dict(_headers_with_context())
