"""An agent's WebSocket to signaling: connect, reconnect, heartbeat.

:class:`SignalingLink` keeps one session open for a client or a gateway:

* it connects to one of the signaling URLs (rotating through them on each
  retry), with ``Authorization: Bearer <token>`` and the agent's public key,
  id, name and version as query parameters;
* it reconnects with jittered exponential backoff (0.5 s doubling to 30 s),
  honouring ``Retry-After`` when the edge answers 429/503 with one;
* it sends a heartbeat every :data:`HEARTBEAT_INTERVAL` and treats a server
  silent for :data:`HEARTBEAT_TIMEOUT` as gone;
* a close code of :data:`FATAL_CLOSE_CODES` (bad token, wrong kind, version
  mismatch) or a ``disconnect`` frame ends it for good: retrying with the same
  token cannot help.

Frames go to ``on_frame`` as the models of :mod:`zerogate.common.messages.signaling`;
``on_connect`` is awaited right after each connect and may return frames to
send before anything else (a gateway says what it still serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import websockets
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from zerogate.common.messages.signaling import (
    CLIENT_OUTBOUND,
    FATAL_CLOSE_CODES,
    GATEWAY_OUTBOUND,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    MAX_FRAME_BYTES,
    Disconnect,
    Heartbeat,
    Traced,
)

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
#: Largest Retry-After honoured (seconds); longer ones are capped.
RETRY_AFTER_MAX = 300.0
CONNECT_TIMEOUT = 10.0


class LinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class LinkFatal(Exception):
    """The session cannot be (re)established with this token or version."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})" if code else reason)
        self.code = code
        self.reason = reason


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wall = now if now is not None else time.time()
    return max(
        0.0, min((when - datetime.fromtimestamp(wall, UTC)).total_seconds(), RETRY_AFTER_MAX)
    )


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [d/2, d], d = 0.5 s · 2^attempt ≤ 30 s."""
    ceiling = min(BACKOFF_MAX, BACKOFF_INITIAL * (2**attempt))
    return rng.uniform(ceiling / 2, ceiling)


def session_url(base: str, kind: Literal["client", "gateway"], params: dict[str, str]) -> str:
    """``base`` (``ws[s]://host[:port]``) + ``/v1/<kind>`` + the query parameters."""
    parts = urlsplit(base)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"signaling URL {base!r} must start with ws:// or wss://")
    path = parts.path.rstrip("/")
    if not path.endswith(f"/v1/{kind}"):
        path = f"{path}/v1/{kind}"
    return f"{parts.scheme}://{parts.netloc}{path}?{urlencode(params)}"


class SignalingLink:
    """One agent's session with signaling; :meth:`run` keeps it up until :meth:`stop`."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        kind: Literal["client", "gateway"],
        token: str,
        public_key: str,
        agent_id: str,
        name: str,
        version: str,
        on_frame: Callable[[Any], Awaitable[None]],
        on_connect: Callable[[], Awaitable[Sequence[Traced]]] | None = None,
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one signaling URL is needed")
        self._urls = list(urls)
        self._kind = kind
        self._token = token
        self._params = {"public_key": public_key, "id": agent_id, "name": name, "version": version}
        self._on_frame = on_frame
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._rng = rng or random.Random()
        self._adapter: TypeAdapter[Any] = CLIENT_OUTBOUND if kind == "client" else GATEWAY_OUTBOUND
        self._ws: ClientConnection | None = None
        self._stopping = False
        self.state = LinkState.CONNECTING
        self.url: str | None = None
        self.last_error: str | None = None
        self.connects = 0
        self.fatal: LinkFatal | None = None

    # -- sending ---------------------------------------------------------------
    async def send(self, message: Traced) -> bool:
        """Send a frame now; False when there is no session (the caller retries later)."""
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(message.model_dump_json(exclude_none=True))
        except ConnectionClosed:
            return False
        return True

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.state == LinkState.CONNECTED

    def set_token(self, token: str) -> None:
        """Use another token from the next connect on."""
        self._token = token

    async def stop(self) -> None:
        self._stopping = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, "agent stopping")

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        """Connect and reconnect until :meth:`stop`; a fatal refusal raises :class:`LinkFatal`."""
        attempt = 0
        index = 0
        while not self._stopping:
            base = self._urls[index % len(self._urls)]
            index += 1
            wait: float | None = None
            try:
                await self._session(base)
                attempt = 0  # it was up: start the backoff afresh
            except LinkFatal as exc:
                self.fatal = exc
                self.state = LinkState.STOPPED
                self.last_error = str(exc)
                log.error("signaling refused this agent: %s", exc.reason)
                raise
            except InvalidStatus as exc:
                status = exc.response.status_code
                self.last_error = f"HTTP {status} from {_host(base)}"
                wait = retry_after(exc.response.headers.get("Retry-After"))
                if status in (401, 403):
                    self.fatal = LinkFatal(None, f"signaling answered HTTP {status}")
                    self.state = LinkState.STOPPED
                    raise self.fatal from exc
            except InvalidURI as exc:
                self.fatal = LinkFatal(None, f"bad signaling URL: {exc}")
                self.state = LinkState.STOPPED
                raise self.fatal from exc
            except (OSError, TimeoutError, ConnectionClosed, websockets.InvalidHandshake) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if self._stopping:
                break
            self.state = LinkState.RECONNECTING
            delay = wait if wait is not None else backoff_delay(attempt, self._rng)
            attempt += 1
            log.info("signaling unreachable; retrying", extra={"delay_s": round(delay, 2)})
            await asyncio.sleep(delay)
        self.state = LinkState.STOPPED

    async def _session(self, base: str) -> None:
        url = session_url(base, self._kind, self._params)
        async with websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            max_size=MAX_FRAME_BYTES,
            open_timeout=CONNECT_TIMEOUT,
            ping_interval=None,
            close_timeout=2,
            compression=None,  # frames are small; zlib state is not
        ) as ws:
            self._ws = ws
            self.url = base
            try:
                if self._on_connect is not None:
                    for frame in await self._on_connect():
                        await ws.send(frame.model_dump_json(exclude_none=True))
                heartbeat = asyncio.create_task(self._heartbeat(ws))
                try:
                    await self._read(ws)
                finally:
                    heartbeat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await heartbeat
            finally:
                self._ws = None
                if self._on_disconnect is not None and self.state == LinkState.CONNECTED:
                    await self._on_disconnect()
        code = ws.close_code
        if code in FATAL_CLOSE_CODES:
            raise LinkFatal(code, ws.close_reason or "refused")

    async def _read(self, ws: ClientConnection) -> None:
        first = True
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), HEARTBEAT_TIMEOUT)
            except TimeoutError:
                self.last_error = "signaling went silent"
                await ws.close(1000, "no heartbeat")
                return
            except ConnectionClosed:
                return
            text = raw if isinstance(raw, str) else raw.decode(errors="replace")
            try:
                frame = self._adapter.validate_json(text)
            except ValueError:
                log.debug("unknown frame from signaling")
                continue
            if first:
                self.state = LinkState.CONNECTED
                self.connects += 1
                self.last_error = None
                first = False
            if isinstance(frame, Heartbeat):
                continue
            if isinstance(frame, Disconnect):
                await self._on_frame(frame)
                raise LinkFatal(None, f"signaling ended the session: {frame.reason}")
            try:
                await self._on_frame(frame)
            except Exception:
                log.exception("handling a frame from signaling failed")

    async def _heartbeat(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                await ws.send(Heartbeat().model_dump_json(exclude_none=True))
            except ConnectionClosed:
                return


def _host(url: str) -> str:
    return urlsplit(url).netloc or url
