"""What agents and signaling say to each other over the WebSocket, and on the bus.

An agent connects to ``/v1/client`` or ``/v1/gateway`` with ``Authorization:
Bearer <token>`` and the query parameters ``public_key`` (WireGuard, base64),
``id`` (stable device id), ``name`` and ``version``. Every frame is one JSON
object with a ``type``; :data:`ClientInbound`, :data:`GatewayInbound`,
:data:`ClientOutbound` and :data:`GatewayOutbound` are the discriminated
unions of what each side may send. A frame that is not one of them gets an
:class:`ErrorMessage` and the session stays; a frame over
:data:`MAX_FRAME_BYTES` closes it (1009).

Flow of a connection (DESIGN.md, "Connection setup")::

    client                       signaling                       gateway
      │ request_authorization ─────▶ │ flow.authorize (api)          │
      │                              │ create_authorization ────────▶│
      │                              │◀──────── authorization_created │
      │◀──────── authorization_created                               │
      │ ice_candidates ─────────────▶│ ice_candidates ──────────────▶│
      │◀───────────── ice_candidates │◀──────────────── ice_candidates│

DNS resources: the client answers a name that matches a DNS resource with
proxy addresses of its own (DESIGN.md, "Addresses"). The first packet to one
makes it ask for the resource with ``domain`` (the name) and ``proxy_ips``
(the addresses it gave that name) in ``request_authorization``; signaling
passes both on in ``create_authorization``, so the gateway learns which name
each proxy address stands for (it translates them to the name's real
addresses), and echoes ``domain`` in ``authorization_created``. Each name of a
wildcard resource is asked for on its own. Agents that do not know these
fields ignore them.

A message for an agent travels on the bus on that agent's subject
(``zg.v1.agent.<kind>.<id>``) as the very model the agent receives, so any
signaling instance can reach any agent. ``create_authorization`` is a bus
*request*: the instance holding the gateway answers with
:class:`GatewayConfirmation` once the gateway confirmed (or refused).

Every message may carry ``traceparent``/``tracestate`` (W3C): a connection
set-up is one trace across client, signaling, the api, the relay registry and
the gateway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, TypeAdapter, field_serializer

from zerogate.common.messages import Message
from zerogate.common.messages.api import ResourceView

#: Major version of this protocol; agents of another major version are refused (4006).
PROTOCOL_VERSION: Final = 1
#: Frames larger than this close the session (WebSocket close code 1009).
MAX_FRAME_BYTES: Final = 64 * 1024
#: Proxy addresses a client gives one name: 4 per address family (DESIGN.md).
MAX_PROXY_IPS: Final = 8
#: Seconds between heartbeats, each way.
HEARTBEAT_INTERVAL: Final = 10.0
#: A peer silent for this long is gone.
HEARTBEAT_TIMEOUT: Final = 30.0
#: A gateway's refusal of an authorization that reuses a tunnel it no longer has;
#: signaling then asks again with a new connection.
NO_CONNECTION: Final = "no connection to this client"


class CloseCode:
    """WebSocket close codes of the signaling edge (4000–4999 are ours, RFC 6455 §7.4.2)."""

    #: The server is going away (restart, shutdown): reconnect, to another instance.
    GOING_AWAY: Final = 1001
    #: A frame over :data:`MAX_FRAME_BYTES`.
    TOO_BIG: Final = 1009
    #: Restarting: reconnect elsewhere at once.
    SERVICE_RESTART: Final = 1012
    #: No, bad, revoked or expired token: do not retry with the same token.
    UNAUTHORIZED: Final = 4001
    #: The connection broke the protocol (bad query parameters, ...).
    PROTOCOL_ERROR: Final = 4002
    #: A token of the wrong kind for this endpoint (a client token on /v1/gateway).
    FORBIDDEN: Final = 4003
    #: The agent speaks another major version of this protocol.
    VERSION_MISMATCH: Final = 4006
    #: Silent for longer than :data:`HEARTBEAT_TIMEOUT`.
    HEARTBEAT_TIMEOUT: Final = 4008
    #: Another session with the same id replaced this one.
    REPLACED: Final = 4009


#: Reconnecting is pointless after these (the agent needs a new token or version).
FATAL_CLOSE_CODES: Final = frozenset(
    {CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.VERSION_MISMATCH}
)


class Traced(Message):
    """Base of every frame: the W3C trace context of the operation it belongs to."""

    traceparent: str | None = Field(default=None, max_length=128)
    tracestate: str | None = Field(default=None, max_length=512)


# --------------------------------------------------------------------------- pieces


class IceCredentials(Message):
    """ICE username fragment and password of one side (RFC 8445 §5.3)."""

    ufrag: str = Field(min_length=4, max_length=256)
    pwd: SecretStr

    @field_serializer("pwd", when_used="json")
    def _reveal(self, value: SecretStr) -> str:
        return value.get_secret_value()


class RelayInfo(Message):
    """A TURN relay an agent may allocate on, with its credentials."""

    id: str
    #: ``host:port`` of each address (IPv6 in brackets).
    addresses: list[str]
    username: str
    password: SecretStr
    realm: str
    expires_at: datetime

    @field_serializer("password", when_used="json")
    def _reveal(self, value: SecretStr) -> str:
        return value.get_secret_value()


class InterfaceConfig(Message):
    """The agent's tunnel addresses."""

    ipv4: str
    ipv6: str


class DnsSettings(Message):
    """DNS settings of the account for clients (upstreams empty: the host's own)."""

    upstream: list[str] = Field(default_factory=list)
    search_domain: str | None = None


class ClientInfo(Message):
    """What a gateway knows of a client it is asked to serve."""

    id: str
    public_key: str
    ipv4: str
    ipv6: str
    version: str = ""
    name: str = ""


class Connection(Message):
    """What a new WireGuard/ICE connection between a client and a gateway needs."""

    preshared_key: SecretStr
    client_ice: IceCredentials
    gateway_ice: IceCredentials

    @field_serializer("preshared_key", when_used="json")
    def _reveal(self, value: SecretStr) -> str:
        return value.get_secret_value()


class AuthorizationRef(Message):
    """What an authorization rests on; the gateway hands it back when it reconnects.

    Signaling re-decides each with ``flow.authorize`` (at reconnect and when
    anything changes), so a ref proves nothing by itself.
    """

    id: str
    account_id: str
    client_id: str
    resource_id: str
    token_id: str
    client_remote_ip: str | None = None
    client_country: str | None = None
    expires_at: datetime | None = None


# --------------------------------------------------------------------------- both directions


class Heartbeat(Traced):
    type: Literal["heartbeat"] = "heartbeat"


class ErrorMessage(Traced):
    """A frame was refused; ``ref`` names the request it answers, when it had one."""

    type: Literal["error"] = "error"
    code: str
    detail: str = ""
    ref: str | None = None


# --------------------------------------------------------------------------- signaling → client


class ClientInit(Traced):
    type: Literal["init"] = "init"
    client_id: str
    interface: InterfaceConfig
    resources: list[ResourceView]
    relays: list[RelayInfo]
    dns: DnsSettings = Field(default_factory=DnsSettings)


class AuthorizationCreated(Traced):
    """The gateway serves ``resource_id`` to this client until ``expires_at``.

    ``connection`` is absent when the client said it is already connected to
    that gateway: the existing tunnel carries the resource too.
    """

    type: Literal["authorization_created"] = "authorization_created"
    resource_id: str
    site_id: str
    gateway_id: str
    gateway_public_key: str
    gateway_ipv4: str
    gateway_ipv6: str
    expires_at: datetime | None = None
    connection: Connection | None = None
    #: For a DNS resource: the name this authorization was asked for (echoed).
    domain: str | None = Field(default=None, max_length=253)


class AuthorizationFailed(Traced):
    type: Literal["authorization_failed"] = "authorization_failed"
    resource_id: str
    reason: Literal["forbidden", "not_found", "offline", "unavailable"]
    violated_properties: list[str] = Field(default_factory=list)
    detail: str = ""


class IceCandidates(Traced):
    """Candidates (SDP ``candidate:`` lines) from the named peer agent."""

    type: Literal["ice_candidates"] = "ice_candidates"
    peer_id: str
    candidates: list[str] = Field(max_length=64)


class InvalidateIceCandidates(Traced):
    type: Literal["invalidate_ice_candidates"] = "invalidate_ice_candidates"
    peer_id: str
    candidates: list[str] = Field(max_length=64)


class ResourceCreatedOrUpdated(Traced):
    type: Literal["resource_created_or_updated"] = "resource_created_or_updated"
    resource: ResourceView


class ResourceDeleted(Traced):
    type: Literal["resource_deleted"] = "resource_deleted"
    resource_id: str


class RelaysPresence(Traced):
    """Relays that left (drop their candidates) and relays to use (new, or fresh credentials)."""

    type: Literal["relays_presence"] = "relays_presence"
    disconnected_ids: list[str] = Field(default_factory=list)
    connected: list[RelayInfo] = Field(default_factory=list)


class Disconnect(Traced):
    """The session ends for good (``token_expired``, ``token_revoked``, ``deleted``)."""

    type: Literal["disconnect"] = "disconnect"
    reason: str


# --------------------------------------------------------------------------- signaling → gateway


class GatewayInit(Traced):
    type: Literal["init"] = "init"
    gateway_id: str
    site_id: str
    interface: InterfaceConfig
    relays: list[RelayInfo]
    #: Of the authorizations the gateway said it holds, those still allowed.
    authorizations: list[AuthorizationRef] = Field(default_factory=list)


class CreateAuthorization(Traced):
    """Serve ``resource`` to ``client`` until ``expires_at``; open a connection if given."""

    type: Literal["create_authorization"] = "create_authorization"
    ref: AuthorizationRef
    client: ClientInfo
    resource: ResourceView
    expires_at: datetime | None = None
    connection: Connection | None = None
    #: For a DNS resource: the name the client asks for, and the proxy addresses it
    #: gave that name (the gateway translates them to the name's real addresses).
    domain: str | None = Field(default=None, max_length=253)
    proxy_ips: list[str] = Field(default_factory=list, max_length=MAX_PROXY_IPS)


class RejectAccess(Traced):
    """Stop serving ``resource_id`` to ``client_id`` now."""

    type: Literal["reject_access"] = "reject_access"
    client_id: str
    resource_id: str


class ResourceUpdated(Traced):
    """A resource the gateway serves changed (its filters, name...)."""

    type: Literal["resource_updated"] = "resource_updated"
    resource: ResourceView


# --------------------------------------------------------------------------- client → signaling


class RequestAuthorization(Traced):
    type: Literal["request_authorization"] = "request_authorization"
    resource_id: str = Field(max_length=64)
    #: Gateways the client has a working tunnel to: one of them is preferred.
    connected_gateway_ids: list[str] = Field(default_factory=list, max_length=256)
    #: For a DNS resource: the name the first packet was for, and its proxy addresses.
    domain: str | None = Field(default=None, max_length=253)
    proxy_ips: list[str] = Field(default_factory=list, max_length=MAX_PROXY_IPS)


class BroadcastIceCandidates(Traced):
    """Trickle candidates to these peers (gateways for a client, clients for a gateway)."""

    type: Literal["broadcast_ice_candidates"] = "broadcast_ice_candidates"
    peer_ids: list[str] = Field(max_length=1024)
    candidates: list[str] = Field(max_length=64)


class BroadcastInvalidatedIceCandidates(Traced):
    type: Literal["broadcast_invalidated_ice_candidates"] = "broadcast_invalidated_ice_candidates"
    peer_ids: list[str] = Field(max_length=1024)
    candidates: list[str] = Field(max_length=64)


# --------------------------------------------------------------------------- gateway → signaling


class HeldAuthorizations(Traced):
    """First frame of a gateway after it connects: what it still serves."""

    type: Literal["held_authorizations"] = "held_authorizations"
    authorizations: list[AuthorizationRef] = Field(default_factory=list, max_length=100_000)


class AuthorizationConfirmed(Traced):
    type: Literal["authorization_confirmed"] = "authorization_confirmed"
    ref_id: str
    ok: bool = True
    detail: str = ""


ClientOutbound = Annotated[
    ClientInit
    | AuthorizationCreated
    | AuthorizationFailed
    | IceCandidates
    | InvalidateIceCandidates
    | ResourceCreatedOrUpdated
    | ResourceDeleted
    | RelaysPresence
    | Disconnect
    | Heartbeat
    | ErrorMessage,
    Field(discriminator="type"),
]
GatewayOutbound = Annotated[
    GatewayInit
    | CreateAuthorization
    | RejectAccess
    | ResourceUpdated
    | IceCandidates
    | InvalidateIceCandidates
    | RelaysPresence
    | Disconnect
    | Heartbeat
    | ErrorMessage,
    Field(discriminator="type"),
]
ClientInbound = Annotated[
    RequestAuthorization | BroadcastIceCandidates | BroadcastInvalidatedIceCandidates | Heartbeat,
    Field(discriminator="type"),
]
GatewayInbound = Annotated[
    HeldAuthorizations
    | AuthorizationConfirmed
    | BroadcastIceCandidates
    | BroadcastInvalidatedIceCandidates
    | Heartbeat,
    Field(discriminator="type"),
]

CLIENT_OUTBOUND: TypeAdapter[ClientOutbound] = TypeAdapter(ClientOutbound)
GATEWAY_OUTBOUND: TypeAdapter[GatewayOutbound] = TypeAdapter(GatewayOutbound)
CLIENT_INBOUND: TypeAdapter[ClientInbound] = TypeAdapter(ClientInbound)
GATEWAY_INBOUND: TypeAdapter[GatewayInbound] = TypeAdapter(GatewayInbound)


# --------------------------------------------------------------------------- bus only


class AgentDelivery(Message):
    """A frame for one agent, published on its subject; ``frame`` is the agent's JSON."""

    frame: str = Field(max_length=1024 * 1024)


class GatewayConfirmation(Message):
    """The answer to a ``create_authorization`` bus request."""

    ok: bool
    detail: str = ""


class GatewayPresence(Message):
    """A connected gateway, as kept in the presence bucket (key ``gateway.<id>``)."""

    gateway_id: str
    site_id: str
    account_id: str
    instance: str
    public_key: str
    version: str = ""
    lat: float | None = None
    lon: float | None = None
    last_seen: datetime
