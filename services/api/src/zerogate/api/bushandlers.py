"""The api's answers on the bus (queue group ``api``).

``zg.v1.api.token.verify``   who a bearer token is (agents' connect)
``zg.v1.api.client.init``    register/refresh a client; its addresses and visible resources
``zg.v1.api.gateway.init``   register/refresh a gateway of a site
``zg.v1.api.flow.authorize`` may this client use this resource now, until when, through which
                             gateways — :func:`zerogate.api.policies.service.authorize_flow`,
                             the decision service ``/v1/policies/evaluate`` uses too

Every handler fails closed: a token, client, actor or site that is not found
is never taken for one that is fine. ``flow.authorize`` denies (with ``token``
among ``violated_properties``) unless the request names the client's own live
client token, and every allow carries an ``expires_at`` no later than that
token's.

Errors travel back as codes: ``unauthorized`` (bad token at init), ``not_found``
(an id that is not in the account), ``bad_request`` (malformed message).
"""

from __future__ import annotations

import ipaddress
import uuid

from zerogate.api.agents import repository as agents
from zerogate.api.db import Connection, Pool
from zerogate.api.devices import upsert_client, upsert_gateway
from zerogate.api.engine.decision import Allow
from zerogate.api.policies import service as policies
from zerogate.api.resources.repository import ResourceRow, visible_resources
from zerogate.api.settings import ApiSettings
from zerogate.api.tokens.repository import verify_token
from zerogate.common import subjects
from zerogate.common.bus import Bus, Subscription
from zerogate.common.errors import Unauthorized, ZerogateError
from zerogate.common.messages.api import (
    ClientInitReply,
    ClientInitRequest,
    FlowAuthorizeReply,
    FlowAuthorizeRequest,
    GatewayInitReply,
    GatewayInitRequest,
    GatewayView,
    ResourceFilter,
    ResourceView,
    TokenVerifyReply,
    TokenVerifyRequest,
)
from zerogate.proto.net import IPAddress

#: What ``violated_properties`` says when the decision failed before the engine.
ACTOR_DISABLED = policies.ACTOR_DISABLED
TOKEN_INVALID = policies.TOKEN_INVALID


class BadRequest(ZerogateError):
    default_code = "bad_request"


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"{what} is not a UUID") from None


def _ip(value: str | None) -> IPAddress | None:
    if value is None:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise BadRequest("remote_ip is not an IP address") from None


def _text(**fields: str) -> None:
    """Postgres text cannot hold NUL: refuse it here rather than fail in the database."""
    for name, value in fields.items():
        if "\x00" in value:
            raise BadRequest(f"{name} contains a NUL character")


def _resource_view(r: ResourceRow) -> ResourceView:
    return ResourceView(
        id=str(r.id),
        type=r.type,  # type: ignore[arg-type]
        address=r.address,
        name=r.name,
        address_description=r.address_description,
        site_id=str(r.site_id),
        filters=[ResourceFilter.model_validate(f) for f in r.filters],
        ip_stack=r.ip_stack,  # type: ignore[arg-type]
    )


class Handlers:
    """One instance per api process; each method answers one subject."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def token_verify(self, req: TokenVerifyRequest) -> TokenVerifyReply:
        async with self.pool.acquire() as conn:
            grant = await verify_token(conn, req.token.get_secret_value())
        if grant is None:
            raise Unauthorized("invalid, expired or revoked token")
        return TokenVerifyReply(
            token_id=str(grant.token_id),
            kind=grant.type,
            account_id=str(grant.account_id),
            actor_id=str(grant.actor_id) if grant.actor_id else None,
            site_id=str(grant.site_id) if grant.site_id else None,
            expires_at=grant.expires_at,
        )

    async def _check_token(
        self,
        conn: Connection,
        token_id: str,
        account_id: uuid.UUID,
        kind: agents.AgentKind,
        owner_id: uuid.UUID,
    ) -> None:
        """The token the session rests on is still live and belongs to this owner."""
        token = _uuid(token_id, "token_id")
        if not await agents.token_is_live(conn, token, account_id, kind, owner_id):
            raise Unauthorized("the session's token is expired, revoked or not this agent's")

    async def client_init(self, req: ClientInitRequest) -> ClientInitReply:
        account_id = _uuid(req.account_id, "account_id")
        actor_id = _uuid(req.actor_id, "actor_id")
        _ip(req.remote_ip)
        _text(external_id=req.external_id, name=req.name, public_key=req.public_key)
        async with self.pool.acquire() as conn:
            await self._check_token(conn, req.token_id, account_id, "client", actor_id)
            device = await upsert_client(
                conn,
                account_id=account_id,
                actor_id=actor_id,
                external_id=req.external_id,
                public_key=req.public_key,
                name=req.name or req.external_id,
                remote_ip=req.remote_ip,
            )
            resources = await visible_resources(conn, account_id, actor_id)
        return ClientInitReply(
            client_id=str(device.id),
            ipv4=str(device.ipv4),
            ipv6=str(device.ipv6),
            verified=device.verified_at is not None,
            resources=[_resource_view(r) for r in resources],
        )

    async def gateway_init(self, req: GatewayInitRequest) -> GatewayInitReply:
        account_id = _uuid(req.account_id, "account_id")
        site_id = _uuid(req.site_id, "site_id")
        _ip(req.remote_ip)
        _text(external_id=req.external_id, name=req.name, public_key=req.public_key)
        async with self.pool.acquire() as conn:
            await self._check_token(conn, req.token_id, account_id, "gateway", site_id)
            device = await upsert_gateway(
                conn,
                account_id=account_id,
                site_id=site_id,
                external_id=req.external_id,
                public_key=req.public_key,
                name=req.name or req.external_id,
                remote_ip=req.remote_ip,
            )
        return GatewayInitReply(
            gateway_id=str(device.id),
            site_id=str(site_id),
            ipv4=str(device.ipv4),
            ipv6=str(device.ipv6),
        )

    async def flow_authorize(self, req: FlowAuthorizeRequest) -> FlowAuthorizeReply:
        if req.context.time is not None and req.context.time.utcoffset() is None:
            raise BadRequest("context.time must carry a time zone")
        flow = await policies.authorize_flow(
            self.pool,
            account_id=_uuid(req.account_id, "account_id"),
            client_id=_uuid(req.client_id, "client_id"),
            resource_id=_uuid(req.resource_id, "resource_id"),
            # Absent (signaling always sends it): loaded as no token, denied.
            token_id=_uuid(req.token_id, "token_id") if req.token_id is not None else None,
            remote_ip=_ip(req.context.remote_ip),
            country=req.context.country,
            time=req.context.time,
        )
        result = flow.result
        if not isinstance(result, Allow):
            return FlowAuthorizeReply(
                decision="deny", violated_properties=list(result.violated_properties)
            )
        resource = _resource_view(flow.resource)
        return FlowAuthorizeReply(
            decision="allow",
            policy_id=result.policy_id,
            expires_at=result.expires_at,
            resource=resource,
            gateways=[
                GatewayView(
                    id=g.id,
                    site_id=resource.site_id,
                    public_key=g.public_key,
                    ipv4=g.ipv4,
                    ipv6=g.ipv6,
                    name=g.name,
                    last_seen_remote_ip=g.last_seen_remote_ip,
                )
                for g in flow.gateways
            ],
        )


async def subscribe(bus: Bus, pool: Pool, settings: ApiSettings) -> list[Subscription]:
    """Answer the api's subjects on ``bus`` in the ``api`` queue group."""
    del settings  # nothing configurable yet
    h = Handlers(pool)
    q = subjects.API_QUEUE
    return [
        await bus.subscribe(subjects.TOKEN_VERIFY, TokenVerifyRequest, h.token_verify, queue=q),
        await bus.subscribe(subjects.CLIENT_INIT, ClientInitRequest, h.client_init, queue=q),
        await bus.subscribe(subjects.GATEWAY_INIT, GatewayInitRequest, h.gateway_init, queue=q),
        await bus.subscribe(
            subjects.FLOW_AUTHORIZE, FlowAuthorizeRequest, h.flow_authorize, queue=q
        ),
    ]
