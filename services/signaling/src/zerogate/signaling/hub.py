"""One signaling instance: the agent sessions it holds and what it knows of them.

::

    agent ──WSS──▶ Hub.serve ─▶ ClientSession / GatewaySession (one per WebSocket)
                       │
                       ├─ bus requests: token.verify, client/gateway.init,
                       │                flow.authorize, relay.select
                       ├─ subscribes zg.v1.agent.<kind>.<id> for each session it holds
                       ├─ gateway presence in the JetStream KV bucket ``zg_presence``
                       └─ zg.v1.events.*  → re-decide the account's live authorizations
                          relay online/offline → relays_presence (debounced 1 s)

A message for an agent is published on its subject and reaches whichever
instance holds its WebSocket, so any instance serves any agent. The instance
holding a gateway keeps the authorizations it delivered to that gateway; a
gateway that reconnects elsewhere hands them back (``held_authorizations``)
and the new instance re-decides each before trusting it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Literal

from nats.js.errors import BadRequestError, KeyNotFoundError
from nats.js.kv import KeyValue
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from zerogate.common import subjects
from zerogate.common.bus import Bus, BusError, RemoteError, Subscription
from zerogate.common.messages.api import (
    ClientInitReply,
    ClientInitRequest,
    FlowAuthorizeReply,
    FlowAuthorizeRequest,
    FlowContext,
    GatewayInitReply,
    GatewayInitRequest,
    ResourceView,
    TokenVerifyReply,
    TokenVerifyRequest,
)
from zerogate.common.messages.events import ChangeEvent
from zerogate.common.messages.relay import (
    RelayOffline,
    RelayOnline,
    RelaySelectReply,
    RelaySelectRequest,
)
from zerogate.common.messages.signaling import (
    CLIENT_INBOUND,
    GATEWAY_INBOUND,
    HEARTBEAT_INTERVAL,
    NO_CONNECTION,
    PROTOCOL_VERSION,
    AgentDelivery,
    AuthorizationConfirmed,
    AuthorizationCreated,
    AuthorizationFailed,
    AuthorizationRef,
    BroadcastIceCandidates,
    BroadcastInvalidatedIceCandidates,
    ClientInfo,
    ClientInit,
    CloseCode,
    CreateAuthorization,
    Disconnect,
    ErrorMessage,
    GatewayConfirmation,
    GatewayInit,
    GatewayPresence,
    Heartbeat,
    HeldAuthorizations,
    IceCandidates,
    InterfaceConfig,
    InvalidateIceCandidates,
    RejectAccess,
    RelayInfo,
    RelaysPresence,
    RequestAuthorization,
    ResourceCreatedOrUpdated,
    ResourceDeleted,
    ResourceUpdated,
    Traced,
)
from zerogate.signaling import metrics
from zerogate.signaling.settings import SignalingSettings
from zerogate.signaling.state import (
    GatewayCandidate,
    choose_gateway,
    client_address,
    new_connection,
    refresh_due,
    relay_infos,
)

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("zerogate.signaling")

AgentKind = Literal["client", "gateway"]
PRESENCE_BUCKET = "zg_presence"
#: A heartbeat as agents send it and as signaling answers it (compared as text).
HEARTBEAT_FRAME = Heartbeat().model_dump_json(exclude_none=True)
#: Relay changes are gathered this long before agents hear of them (as Firezone does).
RELAY_DEBOUNCE = 1.0
#: How often sessions are checked for TURN credentials that need refreshing.
CREDENTIAL_SWEEP = 10.0
#: Authorizations re-decided at once per event (bounded fan-out to the api).
REDECIDE_CONCURRENCY = 32
#: Seconds a gateway has to say what it holds before it gets its init.
HELD_TIMEOUT = 5.0
#: Entities whose change can end someone's access, or change what a client sees.
EVENT_ENTITIES = (
    "policy",
    "resource",
    "group",
    "membership",
    "token",
    "client",
    "actor",
    "site",
)
#: Entities whose change may change which resources a client sees.
VISIBILITY_ENTITIES = frozenset({"policy", "resource", "group", "membership", "actor"})


class Refused(Exception):
    """The connection is closed with ``code`` before it becomes a session."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(message: Traced) -> Traced:
    """``message`` carrying the current trace context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return message
    return message.model_copy(
        update={"traceparent": carrier.get("traceparent"), "tracestate": carrier.get("tracestate")}
    )


@contextlib.contextmanager
def _continue(message: Traced, name: str, **attributes: Any) -> Any:
    """A span for handling ``message``, in the trace the message carries."""
    carrier = {k: v for k in ("traceparent", "tracestate") if (v := getattr(message, k))}
    token = otel_context.attach(propagate.extract(carrier)) if carrier else None
    try:
        with _tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


def compatible(version: str) -> bool:
    """Whether an agent of ``version`` speaks this protocol (same major; for 0.x, same minor)."""
    from zerogate.signaling import __version__

    try:
        theirs = [int(p) for p in version.split(".")[:2]]
        ours = [int(p) for p in __version__.split(".")[:2]]
    except ValueError:
        return False
    if len(theirs) < 2:
        return False
    if theirs[0] != ours[0]:
        return False
    return ours[0] != 0 or theirs[1] == ours[1]


class AgentSession(abc.ABC):
    """One agent's WebSocket, held by this instance."""

    kind: AgentKind

    def __init__(
        self,
        hub: Hub,
        ws: WebSocket,
        *,
        agent_id: str,
        token: TokenVerifyReply,
        public_key: str,
        external_id: str,
        name: str,
        version: str,
        remote_ip: str | None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.id = agent_id
        self.token = token
        self.account_id = token.account_id
        self.public_key = public_key
        self.external_id = external_id
        self.name = name
        self.version = version
        self.remote_ip = remote_ip
        self.relays: dict[str, RelayInfo] = {}
        self.relays_refresh_at: datetime | None = None
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
        self._expiry: asyncio.TimerHandle | None = None

    # -- sending ---------------------------------------------------------------
    async def send(self, message: Traced) -> None:
        await self.send_text(message.model_dump_json(exclude_none=True))

    async def send_text(self, text: str) -> None:
        if self._closed:
            return
        async with self._send_lock:
            try:
                await self.ws.send_text(text)
                metrics.frames_sent.add(1, {"kind": self.kind})
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._closed = True

    async def close(self, code: int, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            if self.ws.application_state != WebSocketState.DISCONNECTED:
                await self.ws.close(code, reason)

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle ---------------------------------------------------------------
    def set_relays(self, relays: list[RelayInfo]) -> None:
        self.relays = {relay.id: relay for relay in relays}
        self.relays_refresh_at = refresh_due(relays, _now())

    def arm_token_expiry(self) -> None:
        expires = self.token.expires_at
        if expires is None:
            return
        delay = max(0.0, (expires - _now()).total_seconds())
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(
            delay, lambda: self.spawn(self.end("token_expired", CloseCode.UNAUTHORIZED))
        )

    async def end(self, reason: str, code: int) -> None:
        """End the session for good: say why, then close."""
        await self.send(Disconnect(reason=reason))
        await self.close(code, reason)

    async def run(self) -> None:
        """Read frames until the agent leaves, goes silent, or the session is closed."""
        ws = self.ws
        adapter = CLIENT_INBOUND if self.kind == "client" else GATEWAY_INBOUND
        try:
            while not self._closed:
                try:
                    text = await asyncio.wait_for(
                        ws.receive_text(), self.hub.settings.signaling_heartbeat_timeout
                    )
                except TimeoutError:
                    log.info("agent silent", extra={"kind": self.kind, "agent_id": self.id})
                    await self.close(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat")
                    break
                metrics.frames_received.add(1, {"kind": self.kind})
                if text == HEARTBEAT_FRAME:  # most frames: answer without parsing
                    await self.send_text(HEARTBEAT_FRAME)
                    continue
                try:
                    message = adapter.validate_json(text)
                except ValueError as exc:
                    await self.send(ErrorMessage(code="bad_request", detail=_brief(exc)))
                    continue
                try:
                    await self.handle(message)
                except Exception:
                    log.exception("frame handling failed", extra={"kind": self.kind})
                    await self.send(ErrorMessage(code="internal", detail="internal error"))
        except (WebSocketDisconnect, RuntimeError, KeyError):
            pass
        finally:
            self._closed = True
            if self._expiry is not None:
                self._expiry.cancel()
            for task in list(self._tasks):
                task.cancel()

    @abc.abstractmethod
    async def handle(self, message: Any) -> None:
        """Act on one frame from the agent."""

    async def heartbeat(self, message: Heartbeat) -> None:
        del message
        await self.send(Heartbeat())

    async def deliver(self, delivery: AgentDelivery) -> GatewayConfirmation | None:
        """A frame for this agent arrived on its bus subject."""
        await self.send_text(delivery.frame)
        return None


def _brief(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'frame'}: {err.get('msg', '')}"
            for err in errors()[:3]
        ]
        return "; ".join(parts)[:500]
    return str(exc)[:500]


class ClientSession(AgentSession):
    kind: AgentKind = "client"

    def __init__(self, *args: Any, init: ClientInitReply, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.init = init
        self.resources: dict[str, ResourceView] = {r.id: r for r in init.resources}
        #: Gateways this client was given an authorization for (it may trickle to them).
        self.gateways: set[str] = set()

    async def handle(self, message: Any) -> None:
        if isinstance(message, RequestAuthorization):
            self.spawn(self.hub.authorize(self, message))
        elif isinstance(message, BroadcastIceCandidates | BroadcastInvalidatedIceCandidates):
            await self.hub.trickle(self, message, allowed=self.gateways)
        elif isinstance(message, Heartbeat):
            await self.heartbeat(message)


class GatewaySession(AgentSession):
    kind: AgentKind = "gateway"

    def __init__(self, *args: Any, init: GatewayInitReply, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.init = init
        self.site_id = init.site_id
        #: (client id, resource id) → what the authorization rests on
        self.authorizations: dict[tuple[str, str], AuthorizationRef] = {}
        #: The resources as the gateway last heard of them (a change is sent on).
        self.resources: dict[str, ResourceView] = {}
        self._confirmations: dict[str, asyncio.Future[AuthorizationConfirmed]] = {}

    def clients(self) -> set[str]:
        return {client_id for client_id, _ in self.authorizations}

    async def handle(self, message: Any) -> None:
        if isinstance(message, AuthorizationConfirmed):
            waiter = self._confirmations.pop(message.ref_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        elif isinstance(message, BroadcastIceCandidates | BroadcastInvalidatedIceCandidates):
            await self.hub.trickle(self, message, allowed=self.clients())
        elif isinstance(message, Heartbeat):
            await self.heartbeat(message)
        elif isinstance(message, HeldAuthorizations):
            pass  # only meaningful as the first frame

    async def deliver(self, delivery: AgentDelivery) -> GatewayConfirmation | None:
        kind = _frame_type(delivery.frame)
        if kind == "create_authorization":
            return await self._create(CreateAuthorization.model_validate_json(delivery.frame))
        if kind == "reject_access":
            reject = RejectAccess.model_validate_json(delivery.frame)
            self.authorizations.pop((reject.client_id, reject.resource_id), None)
        await self.send_text(delivery.frame)
        return None

    async def _create(self, create: CreateAuthorization) -> GatewayConfirmation:
        ref = create.ref
        if ref.account_id != self.account_id or create.resource.site_id != self.site_id:
            return GatewayConfirmation(ok=False, detail="not this gateway's account or site")
        waiter: asyncio.Future[AuthorizationConfirmed] = asyncio.get_running_loop().create_future()
        self._confirmations[ref.id] = waiter
        self.authorizations[(ref.client_id, ref.resource_id)] = ref
        self.resources[create.resource.id] = create.resource
        await self.send(create)
        try:
            confirmed = await asyncio.wait_for(waiter, self.hub.settings.signaling_gateway_timeout)
        except TimeoutError:
            self._confirmations.pop(ref.id, None)
            self.authorizations.pop((ref.client_id, ref.resource_id), None)
            return GatewayConfirmation(ok=False, detail="the gateway did not confirm in time")
        if not confirmed.ok:
            self.authorizations.pop((ref.client_id, ref.resource_id), None)
        return GatewayConfirmation(ok=confirmed.ok, detail=confirmed.detail)


def _frame_type(frame: str) -> str | None:
    # Cheap look at the type without validating the whole frame.
    head = frame[:64]
    marker = '"type":"'
    at = head.find(marker)
    if at < 0:
        try:
            value = json.loads(frame).get("type")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    end = head.find('"', at + len(marker))
    return head[at + len(marker) : end] if end > 0 else None


class Hub:
    """Everything one signaling instance holds. Start with :meth:`start`."""

    def __init__(self, settings: SignalingSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.instance = settings.signaling_instance_id
        self.sessions: dict[tuple[AgentKind, str], AgentSession] = {}
        self.kv: KeyValue | None = None
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._relay_dirty: set[str] = set()
        self._relay_flush: asyncio.TimerHandle | None = None
        self._rng = random.Random()
        self._redecide = asyncio.Semaphore(REDECIDE_CONCURRENCY)
        self.closing = False

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        js = self.bus.nats.jetstream()
        ttl = self.settings.signaling_presence_ttl
        try:
            self.kv = await js.create_key_value(bucket=PRESENCE_BUCKET, ttl=ttl, history=1)
        except BadRequestError:
            # Another instance made it (perhaps with another TTL): use it as it is.
            self.kv = await js.key_value(PRESENCE_BUCKET)
        for entity in EVENT_ENTITIES:
            self._subs.append(
                await self.bus.subscribe(subjects.events_of(entity), ChangeEvent, self.on_event)
            )
        self._subs.append(
            await self.bus.subscribe(
                subjects.event("relay", "online"), RelayOnline, self._on_relay_online
            )
        )
        self._subs.append(
            await self.bus.subscribe(
                subjects.event("relay", "offline"), RelayOffline, self._on_relay_offline
            )
        )
        self._spawn(self._presence_loop())
        self._spawn(self._credential_loop())

    async def close(self) -> None:
        """Tell every agent to reconnect elsewhere, forget presence, stop."""
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        sessions = list(self.sessions.values())
        await asyncio.gather(
            *(s.close(CloseCode.SERVICE_RESTART, "signaling restarting") for s in sessions),
            return_exceptions=True,
        )
        for session in sessions:
            if isinstance(session, GatewaySession):
                await self._forget_presence(session)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- accepting agents -----------------------------------------------------------
    async def serve(self, ws: WebSocket, kind: AgentKind) -> None:
        """Run one agent's connection from accept to close."""
        await ws.accept()
        started = time.monotonic()
        try:
            session = await self._open(ws, kind)
        except Refused as exc:
            log.info("agent refused", extra={"kind": kind, "code": exc.code, "reason": exc.reason})
            metrics.refused.add(1, {"kind": kind, "code": str(exc.code)})
            with contextlib.suppress(Exception):
                await ws.close(exc.code, exc.reason[:120])
            return
        key = (kind, session.id)
        old = self.sessions.get(key)
        if old is not None:
            await old.close(CloseCode.REPLACED, "replaced by a newer session")
        self.sessions[key] = session
        metrics.sessions.add(1, {"kind": kind})
        try:
            session._subscription = await self.bus.subscribe(
                subjects.agent(kind, session.id), AgentDelivery, session.deliver
            )
            if isinstance(session, GatewaySession):
                await self._announce(session)
            session.arm_token_expiry()
            log.info(
                "agent connected",
                extra={
                    "kind": kind,
                    "agent_id": session.id,
                    "setup_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            await session.run()
        finally:
            metrics.sessions.add(-1, {"kind": kind})
            if self.sessions.get(key) is session:
                del self.sessions[key]
                if isinstance(session, GatewaySession):
                    await self._forget_presence(session)
            if session._subscription is not None:
                with contextlib.suppress(Exception):
                    await session._subscription.unsubscribe()
            await session.close(CloseCode.GOING_AWAY)
            log.info("agent disconnected", extra={"kind": kind, "agent_id": session.id})

    async def _open(self, ws: WebSocket, kind: AgentKind) -> AgentSession:
        if self.closing:
            raise Refused(CloseCode.SERVICE_RESTART, "signaling restarting")
        query = ws.query_params
        public_key = query.get("public_key", "")
        external_id = query.get("id", "")
        name = query.get("name", "")[:255]
        version = query.get("version", "")
        if len(public_key) != 44 or not external_id or len(external_id) > 255:
            raise Refused(CloseCode.PROTOCOL_ERROR, "public_key (44 chars) and id are required")
        if not compatible(version):
            raise Refused(CloseCode.VERSION_MISMATCH, f"version {version!r} is not supported")
        auth = ws.headers.get("authorization", "")
        scheme, _, bearer = auth.partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            raise Refused(CloseCode.UNAUTHORIZED, "missing bearer token")
        remote_ip = client_address(
            ws.client.host if ws.client else None,
            ws.headers.get("x-forwarded-for"),
            self.settings.signaling_trusted_proxies,
        )
        timeout = self.settings.signaling_bus_timeout
        with _tracer.start_as_current_span(f"{kind}.connect") as span:
            span.set_attribute("zerogate.agent.kind", kind)
            try:
                token = await self.bus.request(
                    subjects.TOKEN_VERIFY,
                    TokenVerifyRequest(token=bearer.strip()),  # type: ignore[arg-type]
                    TokenVerifyReply,
                    timeout=timeout,
                )
            except RemoteError as exc:
                raise Refused(CloseCode.UNAUTHORIZED, "invalid, expired or revoked token") from exc
            except BusError as exc:
                raise Refused(1013, "try again later") from exc
            if token.kind != kind:
                raise Refused(CloseCode.FORBIDDEN, f"a {token.kind} token cannot connect as {kind}")
            common = {
                "token": token,
                "public_key": public_key,
                "external_id": external_id,
                "name": name,
                "version": version,
                "remote_ip": remote_ip,
            }
            try:
                if kind == "client":
                    return await self._open_client(ws, common)
                return await self._open_gateway(ws, common)
            except RemoteError as exc:
                if exc.code == "unauthorized":
                    raise Refused(CloseCode.UNAUTHORIZED, exc.detail) from exc
                raise Refused(CloseCode.PROTOCOL_ERROR, exc.detail) from exc
            except BusError as exc:
                raise Refused(1013, "try again later") from exc

    async def _open_client(self, ws: WebSocket, common: dict[str, Any]) -> ClientSession:
        token: TokenVerifyReply = common["token"]
        assert token.actor_id is not None
        init = await self.bus.request(
            subjects.CLIENT_INIT,
            ClientInitRequest(
                token_id=token.token_id,
                account_id=token.account_id,
                actor_id=token.actor_id,
                external_id=common["external_id"],
                public_key=common["public_key"],
                name=common["name"],
                remote_ip=common["remote_ip"],
            ),
            ClientInitReply,
            timeout=self.settings.signaling_bus_timeout,
        )
        session = ClientSession(self, ws, agent_id=init.client_id, init=init, **common)
        session.set_relays(await self.select_relays(session))
        await session.send(
            ClientInit(
                client_id=init.client_id,
                interface=InterfaceConfig(ipv4=init.ipv4, ipv6=init.ipv6),
                resources=init.resources,
                relays=list(session.relays.values()),
            )
        )
        return session

    async def _open_gateway(self, ws: WebSocket, common: dict[str, Any]) -> GatewaySession:
        token: TokenVerifyReply = common["token"]
        assert token.site_id is not None
        # A gateway says first what it still serves (empty on a fresh start).
        held: list[AuthorizationRef] = []
        try:
            first = GATEWAY_INBOUND.validate_json(
                await asyncio.wait_for(ws.receive_text(), HELD_TIMEOUT)
            )
            if isinstance(first, HeldAuthorizations):
                held = first.authorizations
        except (TimeoutError, ValueError):
            pass
        except WebSocketDisconnect as exc:
            raise Refused(CloseCode.GOING_AWAY, "left during set-up") from exc
        init = await self.bus.request(
            subjects.GATEWAY_INIT,
            GatewayInitRequest(
                token_id=token.token_id,
                account_id=token.account_id,
                site_id=token.site_id,
                external_id=common["external_id"],
                public_key=common["public_key"],
                name=common["name"],
                remote_ip=common["remote_ip"],
            ),
            GatewayInitReply,
            timeout=self.settings.signaling_bus_timeout,
        )
        session = GatewaySession(self, ws, agent_id=init.gateway_id, init=init, **common)
        session.set_relays(await self.select_relays(session))
        kept = await self._still_allowed(session, held)
        session.authorizations = {(r.client_id, r.resource_id): r for r in kept}
        await session.send(
            GatewayInit(
                gateway_id=init.gateway_id,
                site_id=init.site_id,
                interface=InterfaceConfig(ipv4=init.ipv4, ipv6=init.ipv6),
                relays=list(session.relays.values()),
                authorizations=kept,
            )
        )
        return session

    async def _still_allowed(
        self, session: GatewaySession, held: list[AuthorizationRef]
    ) -> list[AuthorizationRef]:
        mine = [r for r in held if r.account_id == session.account_id]
        decisions = await asyncio.gather(*(self._decide(r) for r in mine))
        kept = []
        for ref, reply in zip(mine, decisions, strict=True):
            if reply is None or reply.decision != "allow" or reply.resource is None:
                continue
            if reply.resource.site_id != session.site_id:
                continue
            kept.append(ref.model_copy(update={"expires_at": reply.expires_at}))
        return kept

    # -- relays -------------------------------------------------------------------
    async def select_relays(self, session: AgentSession) -> list[RelayInfo]:
        count = self.settings.signaling_relay_count
        if count == 0:
            return []
        expires = session.token.expires_at
        try:
            reply = await self.bus.request(
                subjects.RELAY_SELECT,
                RelaySelectRequest(
                    ip=session.remote_ip, count=count, for_id=session.id, expires_at=expires
                ),
                RelaySelectReply,
                timeout=self.settings.signaling_bus_timeout,
            )
        except (BusError, RemoteError) as exc:
            log.warning("no relays for the agent", extra={"error": exc.code})
            return []
        return relay_infos(reply.offers)

    async def _on_relay_online(self, event: RelayOnline) -> None:
        self._relays_changed(event.relay_id)

    async def _on_relay_offline(self, event: RelayOffline) -> None:
        self._relays_changed(event.relay_id)

    def _relays_changed(self, relay_id: str) -> None:
        self._relay_dirty.add(relay_id)
        if self._relay_flush is None:
            loop = asyncio.get_running_loop()
            self._relay_flush = loop.call_later(
                RELAY_DEBOUNCE, lambda: self._spawn(self._push_relays())
            )

    async def _push_relays(self) -> None:
        self._relay_flush = None
        self._relay_dirty.clear()
        for session in list(self.sessions.values()):
            await self._refresh_relays(session)

    async def _refresh_relays(self, session: AgentSession) -> None:
        fresh = await self.select_relays(session)
        gone = [rid for rid in session.relays if rid not in {r.id for r in fresh}]
        unchanged = {r.id for r in fresh} == set(session.relays) and not _credentials_due(session)
        if unchanged:
            return
        session.set_relays(fresh)
        await session.send(RelaysPresence(disconnected_ids=gone, connected=fresh))

    async def _credential_loop(self) -> None:
        while True:
            await asyncio.sleep(CREDENTIAL_SWEEP)
            for session in list(self.sessions.values()):
                if _credentials_due(session):
                    await self._refresh_relays(session)

    # -- presence -------------------------------------------------------------------
    async def _announce(self, session: GatewaySession) -> None:
        if self.kv is None:
            return
        presence = GatewayPresence(
            gateway_id=session.id,
            site_id=session.site_id,
            account_id=session.account_id,
            instance=self.instance,
            public_key=session.public_key,
            version=session.version,
            last_seen=_now(),
        )
        with contextlib.suppress(Exception):
            await self.kv.put(f"gateway.{session.id}", presence.model_dump_json().encode())

    async def _forget_presence(self, session: GatewaySession) -> None:
        if self.kv is None:
            return
        with contextlib.suppress(Exception):
            entry = await self.kv.get(f"gateway.{session.id}")
            if (
                entry.value
                and GatewayPresence.model_validate_json(entry.value).instance == self.instance
            ):
                await self.kv.delete(f"gateway.{session.id}")

    async def _presence_loop(self) -> None:
        interval = self.settings.signaling_presence_ttl / 3
        while True:
            await asyncio.sleep(interval)
            for session in list(self.sessions.values()):
                if isinstance(session, GatewaySession):
                    await self._announce(session)

    async def presence(self, gateway_id: str) -> GatewayPresence | None:
        if self.kv is None:
            return None
        try:
            entry = await self.kv.get(f"gateway.{gateway_id}")
        except KeyNotFoundError:
            return None
        except Exception:
            return None
        if not entry.value:
            return None
        return GatewayPresence.model_validate_json(entry.value)

    # -- connection set-up ------------------------------------------------------------
    async def authorize(self, session: ClientSession, request: RequestAuthorization) -> None:
        with _continue(
            request, "signaling.authorize", **{"zerogate.resource_id": request.resource_id}
        ) as span:
            failed = await self._authorize(session, request)
            if failed is not None:
                span.set_attribute("zerogate.authorization", failed.reason)
                await session.send(_stamp(failed))

    async def _authorize(
        self, session: ClientSession, request: RequestAuthorization
    ) -> AuthorizationFailed | None:
        resource_id = request.resource_id
        context = FlowContext(remote_ip=session.remote_ip, time=_now())
        # The nearest relays may have changed since the session began: ask again
        # while the api decides (in parallel, so it costs no time).
        relays = asyncio.ensure_future(self._refresh_relays(session))
        try:
            reply = await self.bus.request(
                subjects.FLOW_AUTHORIZE,
                FlowAuthorizeRequest(
                    account_id=session.account_id,
                    client_id=session.id,
                    resource_id=resource_id,
                    token_id=session.token.token_id,
                    context=context,
                ),
                FlowAuthorizeReply,
                timeout=self.settings.signaling_bus_timeout,
            )
        except RemoteError as exc:
            reason = "not_found" if exc.code in ("not_found", "bad_request") else "unavailable"
            return AuthorizationFailed(resource_id=resource_id, reason=reason, detail=exc.detail)
        except BusError:
            return AuthorizationFailed(resource_id=resource_id, reason="unavailable")
        finally:
            await relays
        if reply.decision != "allow" or reply.resource is None:
            return AuthorizationFailed(
                resource_id=resource_id,
                reason="forbidden",
                violated_properties=reply.violated_properties,
            )
        online: list[GatewayCandidate] = []
        keys: dict[str, str] = {}
        for gateway in reply.gateways:
            present = await self.presence(gateway.id)
            if present is not None and present.site_id == reply.resource.site_id:
                online.append(
                    GatewayCandidate(gateway.id, present.lat, present.lon, present.version)
                )
                keys[gateway.id] = gateway.public_key
        views = {g.id: g for g in reply.gateways}
        # Gateways that said they lost the client's tunnel: they get a new connection.
        stale: set[str] = set()
        while online:
            pick = choose_gateway(online, connected=request.connected_gateway_ids, rng=self._rng)
            assert pick is not None
            online.remove(pick)
            gateway = views[pick.id]
            reuse = pick.id in request.connected_gateway_ids and pick.id not in stale
            connection = None if reuse else new_connection()
            ref = AuthorizationRef(
                id=uuid.uuid4().hex,
                account_id=session.account_id,
                client_id=session.id,
                resource_id=resource_id,
                token_id=session.token.token_id,
                client_remote_ip=session.remote_ip,
                expires_at=reply.expires_at,
            )
            create = CreateAuthorization(
                ref=ref,
                client=ClientInfo(
                    id=session.id,
                    public_key=session.public_key,
                    ipv4=session.init.ipv4,
                    ipv6=session.init.ipv6,
                    version=session.version,
                    name=session.name,
                ),
                resource=reply.resource,
                expires_at=reply.expires_at,
                connection=connection,
                domain=request.domain,
                proxy_ips=request.proxy_ips,
            )
            try:
                confirmation = await self.bus.request(
                    subjects.agent("gateway", pick.id),
                    AgentDelivery(frame=_stamp(create).model_dump_json(exclude_none=True)),
                    GatewayConfirmation,
                    timeout=self.settings.signaling_gateway_timeout + 1.0,
                )
            except (BusError, RemoteError):
                continue  # it left meanwhile: try the next
            if not confirmation.ok:
                if connection is None and confirmation.detail == NO_CONNECTION:
                    stale.add(pick.id)  # the same gateway again, with a new connection
                    online.insert(0, pick)
                continue
            session.gateways.add(pick.id)
            await session.send(
                _stamp(
                    AuthorizationCreated(
                        resource_id=resource_id,
                        site_id=reply.resource.site_id,
                        gateway_id=pick.id,
                        gateway_public_key=keys[pick.id],
                        gateway_ipv4=gateway.ipv4,
                        gateway_ipv6=gateway.ipv6,
                        expires_at=reply.expires_at,
                        connection=connection,
                        domain=request.domain,
                    )
                )
            )
            return None
        return AuthorizationFailed(resource_id=resource_id, reason="offline")

    async def trickle(
        self,
        session: AgentSession,
        message: BroadcastIceCandidates | BroadcastInvalidatedIceCandidates,
        *,
        allowed: set[str],
    ) -> None:
        """Pass candidates on to the peers this agent has an authorization with."""
        other: AgentKind = "gateway" if session.kind == "client" else "client"
        frame_type = (
            IceCandidates
            if isinstance(message, BroadcastIceCandidates)
            else InvalidateIceCandidates
        )
        with _continue(message, "signaling.trickle"):
            frame = _stamp(frame_type(peer_id=session.id, candidates=message.candidates))
            text = frame.model_dump_json(exclude_none=True)
            for peer in message.peer_ids:
                if peer not in allowed:
                    continue
                local = self.sessions.get((other, peer))
                if local is not None:
                    await local.send_text(text)
                    continue
                with contextlib.suppress(BusError):
                    await self.bus.publish(subjects.agent(other, peer), AgentDelivery(frame=text))

    # -- revocation -------------------------------------------------------------------
    async def on_event(self, event: ChangeEvent) -> None:
        account = str(event.account_id)
        held = [s for s in self.sessions.values() if s.account_id == account]
        if not held:
            return
        with _tracer.start_as_current_span(f"signaling.revoke {event.entity}.{event.action}"):
            await self._end_sessions(event, held)
            work = []
            for session in held:
                if isinstance(session, GatewaySession) and session.authorizations:
                    work.append(self._redecide_gateway(session))
                elif isinstance(session, ClientSession) and event.entity in VISIBILITY_ENTITIES:
                    work.append(self._refresh_resources(session))
            await asyncio.gather(*work, return_exceptions=True)

    async def _end_sessions(self, event: ChangeEvent, held: list[AgentSession]) -> None:
        token = str(event.token_id) if event.token_id else None
        for session in held:
            if token is not None and event.entity == "token" and session.token.token_id == token:
                await session.end("token_revoked", CloseCode.UNAUTHORIZED)
            elif (
                event.entity == "client"
                and event.action == "deleted"
                and isinstance(session, ClientSession)
                and session.id == str(event.client_id)
            ) or (
                event.entity == "site"
                and event.action == "deleted"
                and isinstance(session, GatewaySession)
                and session.site_id == str(event.site_id)
            ):
                await session.end("deleted", CloseCode.UNAUTHORIZED)

    async def _decide(self, ref: AuthorizationRef) -> FlowAuthorizeReply | None:
        async with self._redecide:
            try:
                return await self.bus.request(
                    subjects.FLOW_AUTHORIZE,
                    FlowAuthorizeRequest(
                        account_id=ref.account_id,
                        client_id=ref.client_id,
                        resource_id=ref.resource_id,
                        token_id=ref.token_id,
                        context=FlowContext(
                            remote_ip=ref.client_remote_ip, country=ref.client_country, time=_now()
                        ),
                    ),
                    FlowAuthorizeReply,
                    timeout=self.settings.signaling_bus_timeout,
                )
            except RemoteError:
                # The client or resource is gone (not_found): access ends.
                return FlowAuthorizeReply(decision="deny", violated_properties=["not_found"])
            except BusError:
                return None  # cannot tell now; keep it (the gateway still expires it)

    async def _redecide_gateway(self, session: GatewaySession) -> None:
        refs = list(session.authorizations.values())
        decisions = await asyncio.gather(*(self._decide(ref) for ref in refs))
        changed: dict[str, ResourceView] = {}
        for ref, reply in zip(refs, decisions, strict=True):
            if reply is None:
                continue
            still = (
                reply.decision == "allow"
                and reply.resource is not None
                and reply.resource.site_id == session.site_id
            )
            if still:
                # Still allowed, but the resource itself may have changed (its
                # filters): the gateway applies that to the flows it carries.
                assert reply.resource is not None
                if session.resources.get(ref.resource_id) != reply.resource:
                    changed[ref.resource_id] = reply.resource
                continue
            session.authorizations.pop((ref.client_id, ref.resource_id), None)
            await session.send(
                _stamp(RejectAccess(client_id=ref.client_id, resource_id=ref.resource_id))
            )
            metrics.revocations.add(1)
            notice = _stamp(
                AuthorizationFailed(
                    resource_id=ref.resource_id,
                    reason="forbidden",
                    violated_properties=reply.violated_properties,
                    detail="access was revoked",
                )
            )
            await self._to_agent("client", ref.client_id, notice)
        for resource in changed.values():
            session.resources[resource.id] = resource
            await session.send(_stamp(ResourceUpdated(resource=resource)))

    async def _refresh_resources(self, session: ClientSession) -> None:
        try:
            init = await self.bus.request(
                subjects.CLIENT_INIT,
                ClientInitRequest(
                    token_id=session.token.token_id,
                    account_id=session.account_id,
                    actor_id=session.token.actor_id or "",
                    external_id=session.external_id,
                    public_key=session.public_key,
                    name=session.name,
                    remote_ip=session.remote_ip,
                ),
                ClientInitReply,
                timeout=self.settings.signaling_bus_timeout,
            )
        except (BusError, RemoteError):
            return
        fresh = {r.id: r for r in init.resources}
        for rid in [rid for rid in session.resources if rid not in fresh]:
            await session.send(_stamp(ResourceDeleted(resource_id=rid)))
        for rid, resource in fresh.items():
            if session.resources.get(rid) != resource:
                await session.send(_stamp(ResourceCreatedOrUpdated(resource=resource)))
        session.resources = fresh

    async def _to_agent(self, kind: AgentKind, agent_id: str, message: Traced) -> None:
        text = message.model_dump_json(exclude_none=True)
        local = self.sessions.get((kind, agent_id))
        if local is not None:
            await local.send_text(text)
            return
        with contextlib.suppress(BusError):
            await self.bus.publish(subjects.agent(kind, agent_id), AgentDelivery(frame=text))

    # -- health -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        clients = sum(1 for kind, _ in self.sessions if kind == "client")
        return {
            "instance": self.instance,
            "bus": self.bus.is_connected,
            "clients": clients,
            "gateways": len(self.sessions) - clients,
            "protocol": PROTOCOL_VERSION,
        }


def _credentials_due(session: AgentSession) -> bool:
    due = session.relays_refresh_at
    return due is not None and _now() >= due


__all__ = [
    "HEARTBEAT_INTERVAL",
    "AgentSession",
    "ClientSession",
    "GatewaySession",
    "Hub",
    "Refused",
    "compatible",
]
