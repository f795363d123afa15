"""The gateway agent: serves a site's resources to the clients signaling authorizes.

::

    signaling ──WSS── GatewayAgent ── AccessTable (who may reach what, until when)
                          │
                          └─ AgentRuntime: TUN + WireGuard + Node (ICE, TURN) on one socket
                                  │ decrypted packet ─▶ AccessTable.accept ─▶ TUN ─▶ kernel
                                  │                     (forwarding + masquerade, firewall.py)
                                  └ replies from the site ◀─ TUN ◀─ kernel

The gateway is ICE *controlled*. ``create_authorization`` grants a resource
to a client (and, with ``connection``, starts a new WireGuard/ICE connection
to it); ``reject_access`` and ``expires_at`` end a grant — the gateway ends
access at ``expires_at`` by itself, without the control plane. A client with
no grant left loses its connection.

Per packet (:mod:`zerogate.gateway.state`): filters of the resource, the
translation of a DNS resource's proxy addresses to the name's real addresses
both ways (the names are resolved by :class:`~zerogate.gateway.resolver.NameResolver`;
packets wait for a name being resolved), and an ICMP answer sent back at once
for what is refused. ``resource_updated`` (filters changed) applies at once,
to flows already running too. The gateway's DNS server on its tunnel
addresses, port 53535, answers the other query types of the resources'
names for the clients that hold them. The Internet resource's packets go
anywhere, masqueraded like the rest (:mod:`zerogate.gateway.firewall`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import time
from datetime import UTC, datetime

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from zerogate.common.agentlink import LinkFatal, SignalingLink
from zerogate.common.messages.signaling import (
    NO_CONNECTION,
    AuthorizationConfirmed,
    CreateAuthorization,
    Disconnect,
    GatewayInit,
    HeldAuthorizations,
    IceCandidates,
    InvalidateIceCandidates,
    RejectAccess,
    RelaysPresence,
    ResourceUpdated,
    Traced,
)
from zerogate.dataplane.node import ConnectionLost, NodeEvent, PathSelected, path_kind
from zerogate.dataplane.runtime import AgentRuntime
from zerogate.gateway import __version__
from zerogate.gateway.firewall import HostSetup
from zerogate.gateway.resolver import DnsServer, NameResolver
from zerogate.gateway.state import AccessTable

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("zerogate.gateway")

#: Tunnel ranges routed back into the TUN (replies for clients).
TUNNEL_ROUTES = (
    ipaddress.ip_network("100.64.0.0/11"),
    ipaddress.ip_network("fd00:2021:1111::/107"),
)


def _context_of(frame: Traced) -> otel_context.Context:
    carrier = {k: v for k in ("traceparent", "tracestate") if (v := getattr(frame, k))}
    return propagate.extract(carrier)


class GatewayAgent(AgentRuntime):
    kind = "gateway"
    controlling = False

    def __init__(
        self,
        *,
        urls: list[str],
        token: str,
        agent_id: str,
        name: str,
        interface_name: str = "zg-gateway",
        host_setup: bool = True,
        dns_upstream: list[str] | None = None,
    ) -> None:
        super().__init__(interface_name=interface_name)
        self.access = AccessTable()
        self.resolver = NameResolver(self._resolved, nameservers=dns_upstream or ())
        self.access.on_resolve = self.resolver.want
        self.access.on_answer = self._queue_answer
        self._answers: list[bytes] = []
        self._answers_due = False
        self._dns_server: DnsServer | None = None
        self._tick: asyncio.TimerHandle | None = None
        self.host = HostSetup(interface_name) if host_setup else None
        self.gateway_id: str | None = None
        self.site_id: str | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._ice_spans: dict[str, trace.Span] = {}
        self.fatal: str | None = None
        self.link = SignalingLink(
            urls,
            kind="gateway",
            token=token,
            public_key=self.public_key_b64,
            agent_id=agent_id,
            name=name,
            version=__version__,
            on_frame=self.on_frame,
            on_connect=self._held,
        )

    async def run(self) -> None:
        """Until :meth:`stop` (or a fatal refusal from signaling)."""
        assert self.link is not None
        try:
            await self.link.run()
        except LinkFatal as exc:
            self.fatal = exc.reason
            raise
        finally:
            await self._teardown()

    async def _teardown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._tick is not None:
            self._tick.cancel()
        if self._dns_server is not None:
            with contextlib.suppress(Exception):
                await self._dns_server.close()
            self._dns_server = None
        await self.close_tunnel()
        if self.host is not None:
            await asyncio.to_thread(self.host.remove, quiet=True)

    async def _held(self) -> list[Traced]:
        return [HeldAuthorizations(authorizations=self.access.refs())]

    # -- frames from signaling ---------------------------------------------------------
    async def on_frame(self, frame: object) -> None:
        if isinstance(frame, GatewayInit):
            await self._init(frame)
        elif isinstance(frame, CreateAuthorization):
            await self._create(frame)
        elif isinstance(frame, RejectAccess):
            self._reject(frame.client_id, frame.resource_id, "revoked")
        elif isinstance(frame, IceCandidates):
            if self.node is not None:
                self.node.add_remote_candidates(frame.peer_id, frame.candidates)
        elif isinstance(frame, InvalidateIceCandidates):
            if self.node is not None:
                self.node.remove_remote_candidates(frame.peer_id, frame.candidates)
        elif isinstance(frame, RelaysPresence):
            self.apply_relays(frame)
        elif isinstance(frame, ResourceUpdated):
            self.access.update_resource(frame.resource)
            self._sync_outbound()
        elif isinstance(frame, Disconnect):
            self.fatal = frame.reason

    async def _init(self, init: GatewayInit) -> None:
        self.gateway_id, self.site_id = init.gateway_id, init.site_id
        created = await self.ensure_tunnel(init.interface, TUNNEL_ROUTES)
        if created:
            assert self.iface is not None
            self.iface.set_inbound_rewrite(self.access.inbound)
            if self.host is not None:
                await asyncio.to_thread(self.host.apply)
            self.access.set_own([init.interface.ipv4, init.interface.ipv6])
            await self._start_dns_server([init.interface.ipv4, init.interface.ipv6])
            self._on_tick()
        self.apply_relays(init.relays)
        for client_id in self.access.keep_only(init.authorizations):
            self._drop_client(client_id, "no longer authorized")
        self._arm_expiry()
        await self.flush_outbox()
        log.info(
            "gateway ready",
            extra={
                "gateway_id": init.gateway_id,
                "site_id": init.site_id,
                "held": len(init.authorizations),
            },
        )

    async def _create(self, create: CreateAuthorization) -> None:
        token = otel_context.attach(_context_of(create))
        try:
            with _tracer.start_as_current_span("gateway.create_authorization") as span:
                span.set_attribute("zerogate.client_id", create.client.id)
                span.set_attribute("zerogate.resource_id", create.resource.id)
                ok, detail = self._apply_create(create)
                span.set_attribute("zerogate.confirmed", ok)
                confirm = AuthorizationConfirmed(ref_id=create.ref.id, ok=ok, detail=detail)
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                confirm = confirm.model_copy(update=carrier)
        finally:
            otel_context.detach(token)
        self.post(confirm)

    def _apply_create(self, create: CreateAuthorization) -> tuple[bool, str]:
        if self.node is None or self.iface is None:
            return False, "the gateway is not ready"
        client = create.client
        if create.connection is None and client.id not in self.node.connections:
            return False, NO_CONNECTION
        try:
            self.access.grant(
                client, create.resource, create.ref, create.expires_at,
                domain=create.domain, proxy_ips=create.proxy_ips,
            )  # fmt: skip
        except ValueError as exc:
            return False, f"bad name for this resource: {exc}"
        self._sync_outbound()
        if create.connection is not None:
            conn = create.connection
            old = self._ice_spans.pop(client.id, None)
            if old is not None:
                old.end()
            self._ice_spans[client.id] = _tracer.start_span("ice.connect")
            self.node.connect(
                client.id,
                public_key=base64.b64decode(client.public_key),
                preshared_key=base64.b64decode(conn.preshared_key.get_secret_value()),
                allowed_ips=[
                    ipaddress.ip_network(f"{client.ipv4}/32"),
                    ipaddress.ip_network(f"{client.ipv6}/128"),
                ],
                local_ufrag=conn.gateway_ice.ufrag,
                local_pwd=conn.gateway_ice.pwd.get_secret_value(),
                remote_ufrag=conn.client_ice.ufrag,
                remote_pwd=conn.client_ice.pwd.get_secret_value(),
                context=otel_context.get_current(),
            )
        self._arm_expiry()
        log.info(
            "access granted",
            extra={"client_id": client.id, "resource_id": create.resource.id,
                   "new_connection": create.connection is not None},
        )  # fmt: skip
        return True, ""

    def _reject(self, client_id: str, resource_id: str, why: str) -> None:
        if self.access.revoke(client_id, resource_id):
            self._drop_client(client_id, why)
        self._sync_outbound()
        log.info(
            "access ended", extra={"client_id": client_id, "resource_id": resource_id, "why": why}
        )

    def _drop_client(self, client_id: str, why: str) -> None:
        self.access.forget(client_id)
        self._sync_outbound()
        if self.node is not None:
            self.node.disconnect(client_id, reason=None)
        log.info("client dropped", extra={"client_id": client_id, "why": why})

    # -- translation, answers, names ----------------------------------------------------
    def _sync_outbound(self) -> None:
        """Look at packets to clients only while some client has proxy addresses."""
        if self.iface is not None:
            self.iface.set_outbound_rewrite(self.access.outbound if self.access.has_nat else None)

    def _queue_answer(self, packet: bytes) -> None:
        """An ICMP answer for a client: sent right after the batch being handled."""
        self._answers.append(packet)
        if not self._answers_due:
            self._answers_due = True
            asyncio.get_running_loop().call_soon(self._send_answers)

    def _send_answers(self) -> None:
        self._answers_due = False
        answers, self._answers = self._answers, []
        if self.iface is not None and answers:
            self.iface.send_packets(answers)

    def _resolved(self, name: str, v4: list[str], v6: list[str]) -> None:
        """A name's addresses: the packets that waited for them go on, translated."""
        waiting = self.access.set_addresses(name, v4, v6)
        if not waiting or self.iface is None:
            return
        out = [p for packet in waiting if (p := self.access.inbound(packet)) is not None]
        if out:
            self.iface.write_tun(out)

    def _on_tick(self) -> None:
        self.access.tick(time.monotonic())
        self._tick = asyncio.get_running_loop().call_later(1.0, self._on_tick)

    async def _start_dns_server(self, addresses: list[str]) -> None:
        server = DnsServer(addresses, self.access.dns_allowed, lambda: self.resolver.nameservers)
        try:
            await server.start()
        except OSError as exc:
            await server.close()
            log.warning("no DNS server for clients: %s", exc.strerror)
            return
        self._dns_server = server

    # -- expiry, without the control plane -------------------------------------------------
    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        when = self.access.next_expiry()
        if when is None:
            return
        delay = max(0.0, (when - datetime.now(UTC)).total_seconds())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        for client_id, resource_id in self.access.expired(datetime.now(UTC)):
            self._reject(client_id, resource_id, "expired")
        self._arm_expiry()

    # -- the node -------------------------------------------------------------------------
    def on_node_event(self, event: NodeEvent) -> None:
        span = self._ice_spans.pop(event.peer_id, None)
        if span is not None:
            if isinstance(event, PathSelected):
                span.set_attribute("zerogate.path", path_kind(event.pair))
            else:
                span.set_attribute("zerogate.failed", event.reason)
            span.end()
        if isinstance(event, PathSelected):
            pair = event.pair
            log.info(
                "client connected" if event.first else "client path changed",
                extra={
                    "client_id": event.peer_id,
                    "path": path_kind(pair),
                    "relay_id": event.relay_id,
                },
            )
        elif isinstance(event, ConnectionLost):
            log.info(
                "client connection lost", extra={"client_id": event.peer_id, "why": event.reason}
            )

    def status(self) -> dict[str, object]:
        clients = []
        for cid, access in self.access.clients.items():
            entry: dict[str, object] = {"id": cid, "resources": sorted(access.grants)}
            if self.node is not None:
                entry.update(self.node.status(cid))
            clients.append(entry)
        return {
            "gateway_id": self.gateway_id,
            "site_id": self.site_id,
            "signaling": self.link.state if self.link else None,
            "clients": clients,
        }
