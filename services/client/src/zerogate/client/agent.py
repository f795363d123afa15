"""The client agent: routes for the resources it may see, access asked on the first packet.

::

    app ─▶ TUN ─▶ WireGuard core ── has a session ──▶ gateway (direct or relayed)
                        │ no session (unrouted hook)
                        ▼
                  Resources.match ─ buffer (≤128 per resource)
                        │ request_authorization (≤ once per 2 s per resource)
                        ▼
                  signaling ─▶ authorization_created ─▶ Node.connect (ICE, controlling)
                                                        PathSelected ─▶ flush the buffer

A refused resource answers buffered and later packets with ICMP
"administratively prohibited" at once, so applications fail fast; the
refusal (``forbidden`` with the violated properties, ``not_found``,
``offline``) shows in ``zerogate status``.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import time
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span

from zerogate.client import __version__
from zerogate.client.state import Access, Resources, ResourceState
from zerogate.common.agentlink import LinkFatal, SignalingLink
from zerogate.common.messages.signaling import (
    AuthorizationCreated,
    AuthorizationFailed,
    ClientInit,
    Disconnect,
    IceCandidates,
    InvalidateIceCandidates,
    RelaysPresence,
    RequestAuthorization,
    ResourceCreatedOrUpdated,
    ResourceDeleted,
)
from zerogate.dataplane.node import ConnectionLost, NodeEvent, PathSelected, path_kind
from zerogate.dataplane.runtime import AgentRuntime
from zerogate.proto.ip.icmp import unreachable
from zerogate.proto.wireguard import HandshakeCompleted

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("zerogate.client")


class _Setup:
    """One connection set-up to a gateway, traced from the first packet to the handshake.

    ``span`` (``client.connect``) covers it all; ``ice`` runs from the
    authorization to the nominated pair, ``handshake`` from there to the first
    WireGuard handshake, both its children.
    """

    def __init__(self, span: Span, started: float) -> None:
        self.span = span
        self.started = started
        context = trace.set_span_in_context(span)
        self.ice: Span | None = _tracer.start_span("ice.connect", context=context)
        self.handshake: Span | None = None

    def nominated(self, attributes: dict[str, str]) -> None:
        context = trace.set_span_in_context(self.span)
        if self.ice is not None:
            self.ice.set_attributes(attributes)
            self.ice.end()
            self.ice = None
        if self.handshake is None:
            self.handshake = _tracer.start_span("wireguard.handshake", context=context)

    def done(self, **attributes: Any) -> None:
        for child in (self.ice, self.handshake):
            if child is not None:
                child.end()
        self.ice = self.handshake = None
        self.span.set_attributes(attributes)
        self.span.end()


class ClientAgent(AgentRuntime):
    kind = "client"
    controlling = True

    def __init__(
        self,
        *,
        urls: list[str],
        token: str,
        agent_id: str,
        name: str,
        interface_name: str = "zg0",
    ) -> None:
        super().__init__(interface_name=interface_name)
        self.resources = Resources()
        self.client_id: str | None = None
        self.state = "connecting"
        self.fatal: str | None = None
        self.gateways: dict[str, dict[str, Any]] = {}
        self._setups: dict[str, _Setup] = {}
        self._pending_spans: dict[str, Span] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self.link = SignalingLink(
            urls,
            kind="client",
            token=token,
            public_key=self.public_key_b64,
            agent_id=agent_id,
            name=name,
            version=__version__,
            on_frame=self.on_frame,
            on_disconnect=self._link_down,
        )

    async def run(self) -> None:
        assert self.link is not None
        try:
            await self.link.run()
        except LinkFatal as exc:
            self.fatal = exc.reason
            self.state = "stopped"
            raise
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            await self.close_tunnel()

    async def _link_down(self) -> None:
        self.state = "reconnecting"

    # -- frames from signaling -----------------------------------------------------------
    async def on_frame(self, frame: object) -> None:
        if isinstance(frame, ClientInit):
            await self._init(frame)
        elif isinstance(frame, AuthorizationCreated):
            self._authorized(frame)
        elif isinstance(frame, AuthorizationFailed):
            self._refused(frame)
        elif isinstance(frame, IceCandidates):
            if self.node is not None:
                self.node.add_remote_candidates(frame.peer_id, frame.candidates)
        elif isinstance(frame, InvalidateIceCandidates):
            if self.node is not None:
                self.node.remove_remote_candidates(frame.peer_id, frame.candidates)
        elif isinstance(frame, ResourceCreatedOrUpdated):
            await self._resource_changed(frame)
        elif isinstance(frame, ResourceDeleted):
            await self._resource_deleted(frame.resource_id)
        elif isinstance(frame, RelaysPresence):
            self.apply_relays(frame)
        elif isinstance(frame, Disconnect):
            self.fatal = frame.reason

    async def _init(self, init: ClientInit) -> None:
        self.client_id = init.client_id
        add, remove = self.resources.replace(init.resources)
        created = await self.ensure_tunnel(init.interface, add)
        if created:
            assert self.iface is not None
            self.iface.set_unrouted(self._unrouted)
            self.iface.set_event_hook(self._wireguard_event)
        else:
            await self.update_routes(add=add, remove=remove)
        self.apply_relays(init.relays)
        self.state = "connected"
        await self.flush_outbox()
        log.info(
            "client ready", extra={"client_id": init.client_id, "resources": len(init.resources)}
        )

    async def _resource_changed(self, frame: ResourceCreatedOrUpdated) -> None:
        before = self.resources.states.get(frame.resource.id)
        old = before.network if before else None
        state = self.resources.upsert(frame.resource)
        if old != state.network:
            await self.update_routes(
                add=[state.network] if state.network else [],
                remove=[old] if old and old not in self.resources.routes() else [],
            )
            self._sync_gateway_ips()

    async def _resource_deleted(self, resource_id: str) -> None:
        state = self.resources.remove(resource_id)
        if state is None:
            return
        if state.network is not None and state.network not in self.resources.routes():
            await self.update_routes(remove=[state.network])
        self._sync_gateway_ips()

    # -- the first packet -------------------------------------------------------------------
    def _unrouted(self, packet: bytes) -> None:
        state = self.resources.match(packet)
        if state is None:
            return
        if state.access is Access.REFUSED and not self.resources.due(state, time.monotonic()):
            self._prohibit([packet])
            return
        state.buffer.append(packet)
        self._request(state)

    def _request(self, state: ResourceState) -> None:
        now = time.monotonic()
        if not self.resources.due(state, now):
            return
        state.requested_at = now
        if state.access is not Access.AUTHORIZED:
            state.access = Access.REQUESTED
        connected = [gid for gid in self.gateways if self.node and self.node.connected(gid)]
        span = _tracer.start_span(
            "client.connect", attributes={"zerogate.resource_id": state.resource.id}
        )
        old = self._pending_spans.pop(state.resource.id, None)
        if old is not None:
            old.end()
        self._pending_spans[state.resource.id] = span
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        self.post(
            RequestAuthorization(
                resource_id=state.resource.id, connected_gateway_ids=connected, **carrier
            )
        )

    def _authorized(self, frame: AuthorizationCreated) -> None:
        state = self.resources.states.get(frame.resource_id)
        if state is None or self.node is None:
            return
        state.access = Access.AUTHORIZED
        state.gateway_id = frame.gateway_id
        state.expires_at = frame.expires_at
        state.reason = None
        state.violated_properties = []
        self.gateways[frame.gateway_id] = {
            "id": frame.gateway_id,
            "site_id": frame.site_id,
            "ipv4": frame.gateway_ipv4,
            "ipv6": frame.gateway_ipv6,
            "public_key": frame.gateway_public_key,
        }
        span = self._pending_spans.pop(frame.resource_id, None)
        if frame.connection is not None:
            conn = frame.connection
            if span is not None:
                span.add_event("authorization_created", {"zerogate.gateway_id": frame.gateway_id})
                started = state.requested_at or time.monotonic()
                self._setups[frame.gateway_id] = _Setup(span, started)
            self.node.connect(
                frame.gateway_id,
                public_key=base64.b64decode(frame.gateway_public_key),
                preshared_key=base64.b64decode(conn.preshared_key.get_secret_value()),
                allowed_ips=self.resources.allowed_ips(frame.gateway_id),
                local_ufrag=conn.client_ice.ufrag,
                local_pwd=conn.client_ice.pwd.get_secret_value(),
                remote_ufrag=conn.gateway_ice.ufrag,
                remote_pwd=conn.gateway_ice.pwd.get_secret_value(),
                context=otel_context.get_current(),
            )
        else:
            if span is not None:
                span.set_attribute("zerogate.reused_connection", True)
                span.end()
            self._sync_gateway_ips()
            if self.node.connected(frame.gateway_id):
                self._flush(state)
        self._arm_expiry()

    def _refused(self, frame: AuthorizationFailed) -> None:
        state = self.resources.states.get(frame.resource_id)
        span = self._pending_spans.pop(frame.resource_id, None)
        if span is not None:
            span.set_attribute("zerogate.authorization", frame.reason)
            span.end()
        if state is None:
            return
        was = state.gateway_id
        state.access = Access.REFUSED
        state.reason = frame.reason
        state.violated_properties = list(frame.violated_properties)
        state.gateway_id = None
        state.expires_at = None
        log.info(
            "access refused",
            extra={"resource_id": frame.resource_id, "reason": frame.reason,
                   "violated": ",".join(frame.violated_properties)},
        )  # fmt: skip
        if was is not None:
            self._sync_gateway_ips()
            if not self.resources.via(was) and self.node is not None:
                # The gateway drops a client it serves nothing: do the same, so
                # the next authorization sets up a new connection.
                self.node.disconnect(was, reason=None)
                self.gateways.pop(was, None)
        self._prohibit(list(state.buffer))
        state.buffer.clear()

    def _prohibit(self, packets: list[bytes]) -> None:
        if self.iface is None:
            return
        answers = [a for p in packets if (a := unreachable(p, prohibited=True)) is not None]
        if answers:
            self.iface.write_tun(answers)

    def _flush(self, state: ResourceState) -> None:
        if self.iface is None or not state.buffer:
            return
        packets = list(state.buffer)
        state.buffer.clear()
        self.iface.send_packets(packets)

    def _sync_gateway_ips(self) -> None:
        if self.node is None:
            return
        for gateway_id in list(self.node.connections):
            self.node.set_allowed_ips(gateway_id, self.resources.allowed_ips(gateway_id))

    # -- expiry -----------------------------------------------------------------------------
    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        times = [
            s.expires_at
            for s in self.resources.states.values()
            if s.access is Access.AUTHORIZED and s.expires_at is not None
        ]
        if not times:
            return
        delay = max(0.0, (min(times) - datetime.now(UTC)).total_seconds())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        now = datetime.now(UTC)
        for state in self.resources.states.values():
            if state.access is Access.AUTHORIZED and state.expires_at and state.expires_at <= now:
                state.access = Access.NONE
                state.gateway_id = None
                state.requested_at = None
        self._sync_gateway_ips()
        self._arm_expiry()

    # -- the node -----------------------------------------------------------------------------
    def on_node_event(self, event: NodeEvent) -> None:
        if isinstance(event, PathSelected):
            setup = self._setups.get(event.peer_id)
            if setup is not None:
                pair = event.pair
                attributes = {
                    "zerogate.path": path_kind(pair),
                    "zerogate.pair": f"{_fmt(pair.local.address)} -> {_fmt(pair.destination)}",
                }
                if event.relay_id:
                    attributes["zerogate.relay_id"] = event.relay_id
                setup.span.set_attributes(attributes)
                setup.nominated(attributes)
            for state in self.resources.via(event.peer_id):
                self._flush(state)
            log.info(
                "gateway connected" if event.first else "gateway path changed",
                extra={"gateway_id": event.peer_id,
                       "path": path_kind(event.pair),
                       "relay_id": event.relay_id},
            )  # fmt: skip
        elif isinstance(event, ConnectionLost):
            setup = self._setups.pop(event.peer_id, None)
            if setup is not None:
                setup.done(**{"zerogate.failed": event.reason})
            lost = list(self.resources.via(event.peer_id))
            for state in lost:
                state.access = Access.NONE
                state.gateway_id = None
                state.requested_at = None
            self.gateways.pop(event.peer_id, None)
            # Flows through that gateway were live: set up access again now rather
            # than when the client next sends (a download only ever receives).
            for state in lost:
                self._request(state)
            log.info(
                "gateway connection lost", extra={"gateway_id": event.peer_id, "why": event.reason}
            )

    def _wireguard_event(self, event: object) -> None:
        if not isinstance(event, HandshakeCompleted) or self.node is None:
            return
        for gateway_id, conn in self.node.connections.items():
            if conn.public_key == event.peer:
                setup = self._setups.pop(gateway_id, None)
                if setup is not None:
                    elapsed = round((time.monotonic() - setup.started) * 1000, 1)
                    setup.done(**{"zerogate.setup_ms": elapsed})
                return

    # -- status ----------------------------------------------------------------------------------
    def status(self, *, verbose: bool = False) -> dict[str, Any]:
        gateways = []
        for gateway_id, info in self.gateways.items():
            entry = dict(info)
            if self.node is not None:
                entry.update(self.node.status(gateway_id, verbose=verbose))
            gateways.append(entry)
        return {
            "state": self.state if self.fatal is None else "stopped",
            "last_error": self.fatal or (self.link.last_error if self.link else None),
            "client_id": self.client_id,
            "signaling": self.link.url if self.link else None,
            "interface": {
                "name": self.interface_name,
                "ipv4": self.interface.ipv4 if self.interface else None,
                "ipv6": self.interface.ipv6 if self.interface else None,
                "listen_port": self.node.port if self.node else None,
            },
            "resources": [s.view() for s in self.resources.states.values()],
            "gateways": gateways,
            "relays": sorted(self.node.relays) if self.node else [],
        }

    def gateway_for(self, address: str) -> str | None:
        """The gateway a packet to ``address`` would go through now, if any."""
        state = self.resources.match_address(ipaddress.ip_address(address))
        return state.gateway_id if state else None


def _fmt(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
