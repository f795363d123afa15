"""The api's answers on the bus (queue group ``api``).

``zg.v1.api.token.verify``   who a bearer token is (agents' connect)
``zg.v1.api.client.init``    register/refresh a client; its addresses and visible resources
``zg.v1.api.gateway.init``   register/refresh a gateway of a site
``zg.v1.api.flow.authorize`` may this client use this resource now, until when, through which
                             gateways — decided by the same engine as ``/v1/policies/evaluate``

Errors travel back as codes: ``unauthorized`` (bad token), ``not_found`` (an id
that is not in the account), ``bad_request`` (malformed message).
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime

from zerogate.api.agents import repository as agents
from zerogate.api.db import Connection, Pool
from zerogate.api.devices import upsert_client, upsert_gateway
from zerogate.api.engine.context import DecisionContext
from zerogate.api.engine.decision import Allow, decide
from zerogate.api.settings import ApiSettings
from zerogate.api.tokens.repository import verify_token
from zerogate.common import subjects
from zerogate.common.bus import Bus, Subscription
from zerogate.common.errors import NotFound, Unauthorized, ZerogateError
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

#: What ``violated_properties`` says when the decision failed before the engine.
ACTOR_DISABLED = "actor_disabled"
TOKEN_INVALID = "token"  # noqa: S105 - a property name, not a secret


class BadRequest(ZerogateError):
    default_code = "bad_request"


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"{what} is not a UUID") from None


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if value is None:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise BadRequest("remote_ip is not an IP address") from None


def _resource_view(r: agents.ResourceRow) -> ResourceView:
    return ResourceView(
        id=r.id,
        type=r.type,  # type: ignore[arg-type]
        address=r.address,
        name=r.name,
        address_description=r.address_description,
        site_id=r.site_id,
        filters=[ResourceFilter.model_validate(f) for f in r.filters],
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
        self, conn: Connection, token_id: str, account_id: uuid.UUID, **owner: uuid.UUID
    ) -> None:
        """The token the session rests on is still live and belongs to this owner."""
        if not await agents.token_is_live(conn, _uuid(token_id, "token_id"), account_id, **owner):
            raise Unauthorized("the session's token is expired, revoked or not this agent's")

    async def client_init(self, req: ClientInitRequest) -> ClientInitReply:
        account_id = _uuid(req.account_id, "account_id")
        actor_id = _uuid(req.actor_id, "actor_id")
        _ip(req.remote_ip)
        async with self.pool.acquire() as conn:
            await self._check_token(conn, req.token_id, account_id, actor_id=actor_id)
            device = await upsert_client(
                conn,
                account_id=account_id,
                actor_id=actor_id,
                external_id=req.external_id,
                public_key=req.public_key,
                name=req.name or req.external_id,
                remote_ip=req.remote_ip,
            )
            resources = await agents.visible_resources(conn, account_id, actor_id)
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
        async with self.pool.acquire() as conn:
            await self._check_token(conn, req.token_id, account_id, site_id=site_id)
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
        account_id = _uuid(req.account_id, "account_id")
        client_id = _uuid(req.client_id, "client_id")
        resource_id = _uuid(req.resource_id, "resource_id")
        token_id = _uuid(req.token_id, "token_id") if req.token_id else None
        remote_ip = _ip(req.context.remote_ip)
        now = req.context.time or datetime.now(UTC)
        if now.tzinfo is None:
            raise BadRequest("context.time must carry a time zone")
        async with self.pool.acquire() as conn:
            flow = await agents.load_flow(conn, account_id, client_id, resource_id, token_id)
        if flow is None:
            raise NotFound("no such client or resource in this account")
        expired = flow.token_expires_at is not None and flow.token_expires_at <= now
        if flow.actor_disabled:
            return FlowAuthorizeReply(decision="deny", violated_properties=[ACTOR_DISABLED])
        if flow.token_invalid or expired:
            return FlowAuthorizeReply(decision="deny", violated_properties=[TOKEN_INVALID])
        context = DecisionContext(
            remote_ip=remote_ip,
            country=req.context.country.upper() if req.context.country else None,
            time=now,
            client_verified=flow.client_verified,
        )
        decision = decide(flow.policies, context, flow.token_expires_at)
        if not isinstance(decision, Allow):
            return FlowAuthorizeReply(
                decision="deny", violated_properties=list(decision.violated_properties)
            )
        resource = _resource_view(flow.resource)
        return FlowAuthorizeReply(
            decision="allow",
            policy_id=decision.policy_id,
            expires_at=decision.expires_at,
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
