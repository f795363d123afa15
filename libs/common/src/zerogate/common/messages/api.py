"""Requests the api answers on the bus (queue group ``api``).

``zg.v1.api.token.verify``  :class:`TokenVerifyRequest`  → :class:`TokenVerifyReply`
``zg.v1.api.client.init``   :class:`ClientInitRequest`   → :class:`ClientInitReply`
``zg.v1.api.gateway.init``  :class:`GatewayInitRequest`  → :class:`GatewayInitReply`
``zg.v1.api.flow.authorize`` :class:`FlowAuthorizeRequest` → :class:`FlowAuthorizeReply`

A failed request answers with an error code instead (``unauthorized``,
``not_found``, ``bad_request``): see :mod:`zerogate.common.bus`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, SecretStr, field_serializer

from zerogate.common.messages import Message

TokenKind = Literal["api", "client", "gateway"]


class TokenVerifyRequest(Message):
    #: The bearer token an agent presented; masked in repr and logs, sent in JSON.
    token: SecretStr

    @field_serializer("token", when_used="json")
    def _reveal_token(self, value: SecretStr) -> str:
        return value.get_secret_value()


class TokenVerifyReply(Message):
    token_id: str
    kind: TokenKind
    account_id: str
    #: The actor a client or API token belongs to.
    actor_id: str | None = None
    #: The site a gateway token belongs to.
    site_id: str | None = None
    expires_at: datetime | None = None


class ResourceFilter(Message):
    protocol: Literal["tcp", "udp", "icmp"]
    ports: list[str] = Field(default_factory=list)


class ResourceView(Message):
    """A resource as an agent sees it."""

    id: str
    type: Literal["cidr", "ip", "dns", "internet"]
    #: None for the Internet resource (frames leave None out: it must default).
    address: str | None = None
    name: str
    address_description: str | None = None
    site_id: str
    filters: list[ResourceFilter] = Field(default_factory=list)
    #: A DNS resource's address families: its names get proxy addresses of these only.
    ip_stack: Literal["dual", "ipv4_only", "ipv6_only"] = "dual"


class ClientInitRequest(Message):
    token_id: str
    account_id: str
    actor_id: str
    #: Stable id the client device reports (survives reinstalls of keys).
    external_id: str = Field(min_length=1, max_length=255)
    public_key: str = Field(min_length=44, max_length=44, description="WireGuard key, base64")
    name: str = Field(default="", max_length=255)
    remote_ip: str | None = None


class ClientInitReply(Message):
    client_id: str
    ipv4: str
    ipv6: str
    verified: bool
    resources: list[ResourceView]


class GatewayInitRequest(Message):
    token_id: str
    account_id: str
    site_id: str
    external_id: str = Field(min_length=1, max_length=255)
    public_key: str = Field(min_length=44, max_length=44)
    name: str = Field(default="", max_length=255)
    remote_ip: str | None = None


class GatewayInitReply(Message):
    gateway_id: str
    site_id: str
    ipv4: str
    ipv6: str


class FlowContext(Message):
    remote_ip: str | None = None
    country: str | None = None
    time: datetime | None = None


class FlowAuthorizeRequest(Message):
    account_id: str
    client_id: str
    resource_id: str
    #: The token the client's session rests on: its expiry caps the access.
    token_id: str | None = None
    context: FlowContext = Field(default_factory=FlowContext)


class GatewayView(Message):
    id: str
    site_id: str
    public_key: str
    ipv4: str
    ipv6: str
    name: str = ""
    last_seen_remote_ip: str | None = None


class FlowAuthorizeReply(Message):
    decision: Literal["allow", "deny"]
    policy_id: str | None = None
    expires_at: datetime | None = None
    violated_properties: list[str] = Field(default_factory=list)
    resource: ResourceView | None = None
    #: The gateways of the resource's site (empty on deny).
    gateways: list[GatewayView] = Field(default_factory=list)
