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

Split tunnel: the TUN (MTU 1280) routes only the CIDR/IP resources, the DNS
proxy ranges ``100.96.0.0/11`` and ``fd00:2021:1111:8000::/107``, the stub
resolver's two addresses, and the tunnel addresses of the gateways in use
(their DNS servers answer other query types for the resources' names);
everything else keeps the host's own routes. Routes follow the resources as
they change and go with the TUN when the client stops or dies.

DNS resources (:mod:`zerogate.client.stub`): the stub answers a resource's
name with proxy addresses; the first packet to one of them asks for the
resource with that name and its proxy addresses (``domain``/``proxy_ips``),
so the gateway knows what to translate them to; each further name of a
wildcard resource is asked for the same way. The host's DNS points at the
stub while the client runs (:mod:`zerogate.client.dnscontrol`).

The Internet resource, when turned on (``zerogate up --internet``,
``ZG_INTERNET_RESOURCE``): default routes of both families through the TUN
in a table of their own, with wg-quick's firewall-mark rules
(:mod:`zerogate.dataplane.policy`); the agent's UDP socket (ICE, TURN,
WireGuard to gateways and relays) and the stub's upstream queries carry the
mark, and the signaling hosts get rules of their own, so none of them loops
into the tunnel.

What outlives a crash (the rules, a rewritten resolv.conf) is listed in the
state directory and undone by the next start (:mod:`zerogate.client.hoststate`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dns.asyncquery
import dns.exception
import dns.message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span

from zerogate.client import __version__, dnscontrol
from zerogate.client.hoststate import HostState
from zerogate.client.state import Access, NameState, Resources, ResourceState
from zerogate.client.stub import STUB_ADDRESSES, StubResolver, StubServer
from zerogate.client.upstream import Upstream, parse_servers
from zerogate.common.agentlink import LinkFatal, SignalingLink
from zerogate.common.errors import ConfigError
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
from zerogate.dataplane.errors import TunError
from zerogate.dataplane.node import ConnectionLost, NodeEvent, PathSelected, path_kind
from zerogate.dataplane.policy import MARK, PolicyRouting
from zerogate.dataplane.runtime import AgentRuntime
from zerogate.proto.dns.proxy import PROXY_V4, PROXY_V6, slot_of
from zerogate.proto.ip.icmp import unreachable
from zerogate.proto.net import IPNetwork
from zerogate.proto.wireguard import HandshakeCompleted

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("zerogate.client")

#: The gateways' DNS server for other query types of the resources' names (Firezone's port).
GATEWAY_DNS_PORT = 53535
#: How long a forwarded query waits for its resource's tunnel, then for the answer (seconds).
FORWARD_SETUP_TIMEOUT = 5.0
FORWARD_TIMEOUT = 3.0
#: Where the proxy addresses given to names are kept between runs.
PROXIES_FILE = "dns-proxies.json"
#: Names kept in that file at most.
PROXIES_KEPT = 65536
#: Names listed in ``zerogate status`` at most.
STATUS_NAMES = 256
#: Tries at routing while the TUN's addresses settle (50 ms apart).
ROUTE_ATTEMPTS = 40
#: Seconds a host change at stop may take.
COMMAND_TIMEOUT = 10.0
STATIC_ROUTES: tuple[IPNetwork, ...] = (
    PROXY_V4,
    PROXY_V6,
    *(ipaddress.ip_network(a) for a in STUB_ADDRESSES),
)


@dataclass(frozen=True)
class ClientOptions:
    """How the client treats the host (settings of ``zerogate up``)."""

    #: ``ZG_DNS_CONTROL``: auto, systemd-resolved, etc-resolv-conf or disabled.
    dns_control: dnscontrol.DnsControlMode = "auto"
    #: ``ZG_DNS_UPSTREAM``: the resolvers for names that are no resource's (default:
    #: the account's, else the host's as found at start).
    dns_upstream: tuple[str, ...] = ()
    #: ``zerogate up --internet`` / ``ZG_INTERNET_RESOURCE``: use the Internet resource.
    internet: bool = False
    #: Where the crash-recovery record and the names' proxy addresses are kept.
    state_dir: Path = Path("/var/lib/zerogate")
    #: The firewall mark of the agent's own sockets (policy routing).
    fwmark: int = MARK


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
        options: ClientOptions | None = None,
    ) -> None:
        super().__init__(interface_name=interface_name)
        self.options = options or ClientOptions()
        self.resources = Resources(internet=self.options.internet)
        self._urls = list(urls)
        self.host = HostState(self.options.state_dir, interface_name)
        self.dns_control: dnscontrol.DnsControl | None = None
        self.policy = PolicyRouting(interface_name, mark=self.options.fwmark)
        self.upstream = Upstream([], fwmark=self.options.fwmark)
        self._host_upstreams: list[str] = []
        self.stub = StubResolver(
            self.resources, self.upstream, self._forward_dns, on_name=self._name_given
        )
        self.resources.on_forget = lambda _name: self.stub.resources_changed()
        self._stub_server: StubServer | None = None
        self._routes: set[IPNetwork] = set()
        self._routes_lock = asyncio.Lock()
        self._save_proxies: asyncio.TimerHandle | None = None
        self._search: list[str] = []
        #: A host set-up that failed for good (the stub's port taken, ...): ends ``run``.
        self._setup_error: ConfigError | None = None
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
        # What a crashed run left first: its rules, its resolv.conf (then the
        # host's resolvers as they really are).
        await asyncio.to_thread(self.host.recover)
        self._host_upstreams = await asyncio.to_thread(dnscontrol.host_upstreams, STUB_ADDRESSES)
        self._load_proxies()
        try:
            await self.link.run()
        except LinkFatal as exc:
            self.fatal = exc.reason
            self.state = "stopped"
            raise
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            await self._teardown()
        if self._setup_error is not None:
            raise self._setup_error

    async def _teardown(self) -> None:
        """Give the host back: its DNS first (the stub goes), then routing, then the TUN."""
        self._give_host_back()
        if self._save_proxies is not None:
            self._save_proxies.cancel()
        self._write_proxies()
        if self._stub_server is not None:
            with contextlib.suppress(Exception):
                await self._stub_server.close()
            self._stub_server = None
        await self.close_tunnel()
        self._routes.clear()

    def _give_host_back(self) -> None:
        """The host's resolver and routing rules as they were. Synchronous on purpose: a
        stop that cancels the agent's task cannot cut it short."""
        if self.dns_control is not None:
            try:
                self.dns_control.restore()
            except Exception:
                log.exception("cannot restore the host's DNS")
            self.dns_control = None
        if self.policy.active:
            # pyroute2 runs a loop of its own: not on ours, so in a thread, waited for
            worker = threading.Thread(target=self._remove_policy, name="zg-policy", daemon=True)
            worker.start()
            worker.join(COMMAND_TIMEOUT)
        self.host.clear()

    def _remove_policy(self) -> None:
        try:
            self.policy.remove()
        except Exception:
            log.exception("cannot remove the routing rules")

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
        self.resources.replace(init.resources)
        self.stub.resources_changed()
        self._search = [init.dns.search_domain] if init.dns.search_domain else []
        upstreams = self.options.dns_upstream or tuple(init.dns.upstream) or self._host_upstreams
        try:
            self.upstream.servers = parse_servers(upstreams)
        except ValueError:
            log.warning("upstream resolvers that are no addresses: ignored")
            self.upstream.servers = []
        created = await self.ensure_tunnel(
            init.interface, [], addresses=STUB_ADDRESSES, fwmark=self.options.fwmark
        )
        if created:
            assert self.iface is not None
            self.iface.set_unrouted(self._unrouted)
            self.iface.set_event_hook(self._wireguard_event)
        try:
            await self._sync_routes()
            if created:
                await self._start_dns()
        except (ConfigError, TunError) as exc:
            # Nothing to retry with: stop, and say why (``zerogate up`` exits 2).
            detail = exc.detail if isinstance(exc, ConfigError) else str(exc)
            self._setup_error = ConfigError(detail)
            self.fatal = detail
            log.error("cannot set the host up: %s", detail)
            if self.link is not None:
                self.spawn(self.link.stop())
            return
        self.apply_relays(init.relays)
        self.state = "connected"
        await self.flush_outbox()
        log.info(
            "client ready", extra={"client_id": init.client_id, "resources": len(init.resources)}
        )

    async def _resource_changed(self, frame: ResourceCreatedOrUpdated) -> None:
        self.resources.upsert(frame.resource)
        self.stub.resources_changed()
        await self._sync_routes()
        self._sync_gateway_ips()

    async def _resource_deleted(self, resource_id: str) -> None:
        state = self.resources.remove(resource_id)
        if state is None:
            return
        self.stub.resources_changed()
        await self._sync_routes()
        self._sync_gateway_ips()

    # -- routes, DNS and the host ----------------------------------------------------------
    def _wanted_routes(self) -> set[IPNetwork]:
        wanted: set[IPNetwork] = set(STATIC_ROUTES) | self.resources.routes()
        for gateway in self.gateways.values():
            for key, bits in (("ipv4", 32), ("ipv6", 128)):
                with contextlib.suppress(ValueError, KeyError):
                    wanted.add(ipaddress.ip_network(f"{gateway[key]}/{bits}"))
        return wanted

    async def _sync_routes(self) -> None:
        """Make the TUN's routes (and the Internet resource's rules) what the state says."""
        async with self._routes_lock:
            if self.iface is None:
                return
            wanted = self._wanted_routes()
            add = sorted(wanted - self._routes, key=str)
            remove = sorted(self._routes - wanted, key=str)
            if add or remove:
                # The TUN also holds the stub's addresses: packets into the tunnel
                # must leave from the tunnel addresses, which the gateway checks.
                sources = (
                    {4: self.interface.ipv4, 6: self.interface.ipv6} if self.interface else None
                )
                for attempt in range(ROUTE_ATTEMPTS):
                    try:
                        await self.update_routes(add=add, remove=remove, sources=sources)
                        break
                    except TunError:
                        # A fresh IPv6 address stays "tentative" for a moment after the
                        # link comes up; a route cannot name it as its source until then.
                        if attempt == ROUTE_ATTEMPTS - 1:
                            raise
                        await asyncio.sleep(0.05)
                self._routes = wanted
            internet = self.resources.internet_state() is not None
            if internet:
                exclude = await asyncio.to_thread(_signaling_addresses, self._urls)
                rules = await asyncio.to_thread(self.policy.apply, exclude)
                await asyncio.to_thread(self.host.record, rules=rules)
            elif self.policy.active:
                await asyncio.to_thread(self.policy.remove)
                await asyncio.to_thread(self.host.record, rules=None)

    def _schedule_routes(self) -> None:
        self.spawn(self._sync_routes())

    async def _start_dns(self) -> None:
        """The stub on its addresses, then the host's resolver pointed at it."""
        server = StubServer(self.stub)
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot serve DNS on {', '.join(STUB_ADDRESSES)} port 53: {exc.strerror}"
            ) from exc
        self._stub_server = server
        control = dnscontrol.control_for(self.options.dns_control, self.interface_name)
        await asyncio.to_thread(control.apply, list(STUB_ADDRESSES), self._search)
        self.dns_control = control
        await asyncio.to_thread(self.host.record, dns=control.saved())
        log.info(
            "stub resolver up",
            extra={"dns_control": control.mode, "upstreams": len(self.upstream.servers)},
        )

    def _name_given(self, name: str) -> None:
        """A name got proxy addresses: keep them for the next run (soon, in one write)."""
        del name
        if self._save_proxies is None:
            loop = asyncio.get_running_loop()
            self._save_proxies = loop.call_later(1.0, self._write_proxies)

    def _proxies_path(self) -> Path:
        return self.options.state_dir / PROXIES_FILE

    def _load_proxies(self) -> None:
        try:
            saved = json.loads(self._proxies_path().read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, dict):
            self.resources.proxies.load(saved)

    def _write_proxies(self) -> None:
        self._save_proxies = None
        saved = self.resources.proxies.saved()
        if not saved:
            return
        if len(saved) > PROXIES_KEPT:
            saved = dict(list(saved.items())[:PROXIES_KEPT])
        path = self._proxies_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(saved))
            tmp.replace(path)
        except OSError as exc:
            log.debug("cannot keep the proxy addresses: %s", exc.strerror)

    async def _forward_dns(
        self, state: ResourceState, name: str, query: dns.message.Message
    ) -> dns.message.Message | None:
        """Ask the resolver of the gateway serving ``state`` (through the tunnel)."""
        ns = self.resources.name(name)
        deadline = time.monotonic() + FORWARD_SETUP_TIMEOUT
        while True:
            gateway_id = ns.gateway_id if state.access is Access.AUTHORIZED else None
            if gateway_id and self.node is not None and self.node.connected(gateway_id):
                break
            if state.access is Access.REFUSED and not self.resources.due(state, time.monotonic()):
                return None
            if time.monotonic() >= deadline:
                return None
            self._request(state, ns)
            await asyncio.sleep(0.05)
        gateway = self.gateways.get(gateway_id)
        if gateway is None or self.interface is None:
            return None
        try:
            answer, _tcp = await dns.asyncquery.udp_with_fallback(
                query, gateway["ipv4"], timeout=FORWARD_TIMEOUT, port=GATEWAY_DNS_PORT,
                source=self.interface.ipv4,
            )  # fmt: skip
        except (dns.exception.DNSException, OSError, ValueError):
            return None
        return answer

    # -- the first packet -------------------------------------------------------------------
    def _unrouted(self, packet: bytes) -> None:
        state, ns = self.resources.target(packet)
        if state is None:
            if ns is not None:  # a proxy address whose name no resource matches now
                self._prohibit([packet])
            return
        if state.access is Access.REFUSED and not self.resources.due(state, time.monotonic()):
            self._prohibit([packet])
            return
        if ns is not None:
            ns.buffer.append(packet)
        else:
            state.buffer.append(packet)
        self._request(state, ns)

    def _request(self, state: ResourceState, ns: NameState | None = None) -> None:
        """Ask for a resource (for a DNS resource: with the name the packet was for)."""
        now = time.monotonic()
        subject: ResourceState | NameState = state if ns is None else ns
        if not self.resources.due(subject, now):
            return
        subject.requested_at = now
        if ns is not None:
            state.requested_at = now
        if state.access is not Access.AUTHORIZED:
            state.access = Access.REQUESTED
        connected = [gid for gid in self.gateways if self.node and self.node.connected(gid)]
        attributes = {"zerogate.resource_id": state.resource.id}
        span = _tracer.start_span("client.connect", attributes=attributes)
        key = _span_key(state.resource.id, ns.name if ns else None)
        old = self._pending_spans.pop(key, None)
        if old is not None:
            old.end()
        self._pending_spans[key] = span
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        dns_fields: dict[str, Any] = {}
        if ns is not None:
            stack = state.resource.ip_stack
            proxies = [
                *(ns.v4 if stack != "ipv6_only" else ()),
                *(ns.v6 if stack != "ipv4_only" else ()),
            ]
            dns_fields = {"domain": ns.name, "proxy_ips": [str(a) for a in proxies]}
        self.post(
            RequestAuthorization(
                resource_id=state.resource.id,
                connected_gateway_ids=connected,
                **dns_fields,
                **carrier,
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
        if frame.domain is not None:
            ns = self.resources.names.get(frame.domain.strip().rstrip(".").lower())
            if ns is not None and ns.resource_id == frame.resource_id:
                ns.gateway_id = frame.gateway_id
        elif state.resource.type == "dns":  # a signaling that does not echo the name
            for ns in self.resources.names_of(state.resource.id):
                if ns.requested_at is not None:
                    ns.gateway_id = frame.gateway_id
        new_gateway = frame.gateway_id not in self.gateways
        self.gateways[frame.gateway_id] = {
            "id": frame.gateway_id,
            "site_id": frame.site_id,
            "ipv4": frame.gateway_ipv4,
            "ipv6": frame.gateway_ipv6,
            "public_key": frame.gateway_public_key,
        }
        if new_gateway:
            self._schedule_routes()  # its tunnel address (its DNS server)
        span = self._pending_spans.pop(_span_key(frame.resource_id, frame.domain), None)
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
                allowed_ips=self._allowed_ips(frame.gateway_id),
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
                self._flush_gateway(frame.gateway_id)
        self._arm_expiry()

    def _refused(self, frame: AuthorizationFailed) -> None:
        state = self.resources.states.get(frame.resource_id)
        for key in [k for k in self._pending_spans if k.split(" ", 1)[0] == frame.resource_id]:
            span = self._pending_spans.pop(key)
            span.set_attribute("zerogate.authorization", frame.reason)
            span.end()
        if state is None:
            return
        was = state.gateway_id
        names = self.resources.names_of(state.resource.id)
        self.resources.lose(state)
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
        if was is not None or names:
            self._sync_gateway_ips()
        if was is not None and not self.resources.via(was) and self.node is not None:
            # The gateway drops a client it serves nothing: do the same, so
            # the next authorization sets up a new connection.
            self.node.disconnect(was, reason=None)
            self.gateways.pop(was, None)
        self._prohibit(list(state.buffer))
        state.buffer.clear()
        for ns in names:
            self._prohibit(list(ns.buffer))
            ns.buffer.clear()

    def _prohibit(self, packets: list[bytes]) -> None:
        if self.iface is None:
            return
        answers = [a for p in packets if (a := unreachable(p, prohibited=True)) is not None]
        if answers:
            self.iface.write_tun(answers)

    def _flush(self, state: ResourceState | NameState) -> None:
        if self.iface is None or not state.buffer:
            return
        packets = list(state.buffer)
        state.buffer.clear()
        self.iface.send_packets(packets)

    def _flush_gateway(self, gateway_id: str) -> None:
        """Send what waited for access through this gateway (resources and names)."""
        for state in self.resources.via(gateway_id):
            self._flush(state)
        for ns in self.resources.names_via(gateway_id):
            self._flush(ns)

    def _sync_gateway_ips(self) -> None:
        if self.node is None:
            return
        for gateway_id in list(self.node.connections):
            self.node.set_allowed_ips(gateway_id, self._allowed_ips(gateway_id))

    def _allowed_ips(self, gateway_id: str) -> list[IPNetwork]:
        """The gateway's resources, and its own tunnel addresses (its DNS server)."""
        nets = self.resources.allowed_ips(gateway_id)
        gateway = self.gateways.get(gateway_id)
        if gateway is not None and nets:
            for key, bits in (("ipv4", 32), ("ipv6", 128)):
                with contextlib.suppress(ValueError, KeyError):
                    nets.append(ipaddress.ip_network(f"{gateway[key]}/{bits}"))
        return nets

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
                self.resources.lose(state)
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
            self._flush_gateway(event.peer_id)
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
            lost_names = [ns for ns in self.resources.names.values()
                          if ns.gateway_id == event.peer_id]  # fmt: skip
            for state in lost:
                self.resources.lose(state)
            for ns in lost_names:
                ns.gateway_id = None
                ns.requested_at = None
            self.gateways.pop(event.peer_id, None)
            self._schedule_routes()
            # Flows through that gateway were live: set up access again now rather
            # than when the client next sends (a download only ever receives).
            for state in lost:
                if state.resource.type != "dns":
                    self._request(state)
            for ns in lost_names:
                state_of = self.resources.states.get(ns.resource_id or "")
                if state_of is not None:
                    self._request(state_of, ns)
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
            "dns": {
                "stub": list(STUB_ADDRESSES) if self._stub_server else [],
                "control": self.dns_control.mode if self.dns_control else None,
                "upstreams": [f"{h}:{p}" for h, p in self.upstream.servers],
                "names": [_name_view(ns) for ns in self.resources.names.values()][:STATUS_NAMES],
                "stats": dict(self.stub.stats),
            },
            "internet": {
                "enabled": self.options.internet,
                "routing": self.policy.active,
            },
        }

    def gateway_for(self, address: str) -> str | None:
        """The gateway a packet to ``address`` would go through now, if any."""
        ip = ipaddress.ip_address(address)
        if slot_of(ip) is not None:
            ns = self.resources.name_at(ip)
            return ns.gateway_id if ns else None
        state = self.resources.match_address(ip) or self.resources.internet_state()
        return state.gateway_id if state else None


def _name_view(ns: NameState) -> dict[str, Any]:
    return {"name": ns.name, "resource_id": ns.resource_id, "gateway_id": ns.gateway_id,
            "proxy_ips": ns.proxy_ips()}  # fmt: skip


def _span_key(resource_id: str, domain: str | None) -> str:
    return resource_id if domain is None else f"{resource_id} {domain.strip().rstrip('.').lower()}"


def _signaling_addresses(urls: list[str]) -> list[str]:
    """The addresses of the signaling hosts (kept outside the tunnel). Blocking."""
    out: set[str] = set()
    for url in urls:
        host = urlsplit(url).hostname
        if not host:
            continue
        try:
            out.add(str(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        with contextlib.suppress(OSError):
            for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM):
                out.add(str(info[4][0]).split("%", 1)[0])
    return sorted(out)


def _fmt(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
