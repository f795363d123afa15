"""The api's bus answers, over the real NATS, against the real Postgres."""

from __future__ import annotations

import base64
import ipaddress
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from zerogate.api import bushandlers
from zerogate.common import subjects
from zerogate.common.bus import Bus, RemoteError
from zerogate.common.messages.api import (
    ClientInitReply,
    ClientInitRequest,
    FlowAuthorizeReply,
    FlowAuthorizeRequest,
    FlowContext,
    GatewayInitReply,
    GatewayInitRequest,
    TokenVerifyReply,
    TokenVerifyRequest,
)

TUNNEL_V4 = ipaddress.ip_network("100.64.0.0/11")  # DESIGN.md, tunnel addresses
TUNNEL_V6 = ipaddress.ip_network("fd00:2021:1111::/107")


def wg_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="session")
async def api_on_bus(nats_url: str, api_pool: Any, api_settings: Any) -> AsyncIterator[Bus]:
    """The api's handlers, subscribed on their own connection like an api process."""
    bus = await Bus.connect(nats_url, name="api-handlers")
    await bushandlers.subscribe(bus, api_pool, api_settings)
    await bus.flush()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def agent_bus(api_on_bus: Bus, bus: Bus) -> Bus:
    """The side signaling plays: a separate connection making requests."""
    return bus


async def client_token(tenant: Any, actor_id: str) -> str:
    r = await tenant.http.post(f"/v1/actors/{actor_id}/client_tokens", json={})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def connect_client(bus: Bus, token: str, external_id: str = "laptop-1") -> tuple[Any, Any]:
    grant = await bus.request(
        subjects.TOKEN_VERIFY, TokenVerifyRequest(token=token), TokenVerifyReply, timeout=5
    )
    assert grant.actor_id is not None
    init = await bus.request(
        subjects.CLIENT_INIT,
        ClientInitRequest(
            token_id=grant.token_id,
            account_id=grant.account_id,
            actor_id=grant.actor_id,
            external_id=external_id,
            public_key=wg_key(),
            name="laptop",
            remote_ip="198.51.100.7",
        ),
        ClientInitReply,
        timeout=5,
    )
    return grant, init


async def authorize(
    bus: Bus, grant: Any, client_id: str, resource_id: str, **context: Any
) -> FlowAuthorizeReply:
    return await bus.request(
        subjects.FLOW_AUTHORIZE,
        FlowAuthorizeRequest(
            account_id=grant.account_id,
            client_id=client_id,
            resource_id=resource_id,
            token_id=grant.token_id,
            context=FlowContext(**context),
        ),
        FlowAuthorizeReply,
        timeout=5,
    )


async def test_token_verify_names_the_grant_and_refuses_bad_tokens(h, tenant, agent_bus):
    sa = await h.make_actor(tenant, "service_account")
    token = await client_token(tenant, sa["id"])
    grant = await agent_bus.request(
        subjects.TOKEN_VERIFY, TokenVerifyRequest(token=token), TokenVerifyReply, timeout=5
    )
    assert grant.kind == "client"
    assert grant.account_id == str(tenant.account_id)
    assert grant.actor_id == sa["id"]
    for bad in ["", "garbage", token[:-2] + "xx", f"{uuid.uuid4()}.{token.split('.', 1)[1]}"]:
        with pytest.raises(RemoteError) as info:
            await agent_bus.request(
                subjects.TOKEN_VERIFY, TokenVerifyRequest(token=bad), TokenVerifyReply, timeout=5
            )
        assert info.value.code == "unauthorized"


async def test_client_init_gives_stable_addresses_and_visible_resources(h, tenant, agent_bus):
    site = await h.make_site(tenant)
    seen = await h.make_resource(tenant, site["id"], address="10.20.0.0/16")
    hidden = await h.make_resource(tenant, site["id"], address="10.30.0.0/16")
    group = await h.make_group(tenant)
    sa = await h.make_actor(tenant, "service_account")
    r = await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [sa["id"]]})
    assert r.status_code == 200, r.text
    await tenant.create("/v1/policies", {"group_id": group["id"], "resource_id": seen["id"]})
    token = await client_token(tenant, sa["id"])

    _, first = await connect_client(agent_bus, token)
    _, again = await connect_client(agent_bus, token)
    _, other = await connect_client(agent_bus, token, external_id="phone-1")

    assert (again.client_id, again.ipv4, again.ipv6) == (first.client_id, first.ipv4, first.ipv6)
    assert other.client_id != first.client_id
    assert {other.ipv4, other.ipv6}.isdisjoint({first.ipv4, first.ipv6})
    assert ipaddress.ip_address(first.ipv4) in TUNNEL_V4
    assert ipaddress.ip_address(first.ipv6) in TUNNEL_V6
    ids = {res.id for res in first.resources}
    assert seen["id"] in ids
    assert hidden["id"] not in ids


async def test_gateway_init_registers_once_per_external_id(h, tenant, agent_bus, api_pool):
    site = await h.make_site(tenant)
    r = await tenant.http.post(f"/v1/sites/{site['id']}/gateway_tokens", json={})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    grant = await agent_bus.request(
        subjects.TOKEN_VERIFY, TokenVerifyRequest(token=token), TokenVerifyReply, timeout=5
    )
    assert grant.kind == "gateway"
    assert grant.site_id == site["id"]
    replies = []
    for _ in range(2):
        replies.append(
            await agent_bus.request(
                subjects.GATEWAY_INIT,
                GatewayInitRequest(
                    token_id=grant.token_id,
                    account_id=grant.account_id,
                    site_id=grant.site_id,
                    external_id="gw-a",
                    public_key=wg_key(),
                ),
                GatewayInitReply,
                timeout=5,
            )
        )
    assert replies[0] == replies[1]
    listed = await tenant.http.get(f"/v1/sites/{site['id']}/gateways")
    assert [g["id"] for g in listed.json()["data"]] == [replies[0].gateway_id]


async def test_flow_authorize_allows_with_gateways_and_denies_by_default(
    h, tenant, agent_bus, api_pool
):
    site = await h.make_site(tenant)
    gateway = await h.make_gateway(api_pool, tenant, site["id"])
    allowed = await h.make_resource(tenant, site["id"], address="10.40.0.0/16")
    denied = await h.make_resource(tenant, site["id"], address="10.50.0.0/16")
    sa = await h.make_actor(tenant, "service_account")
    everyone = next(
        g for g in (await tenant.http.get("/v1/groups")).json()["data"] if g["name"] == "Everyone"
    )
    policy = await tenant.create(
        "/v1/policies", {"group_id": everyone["id"], "resource_id": allowed["id"]}
    )
    grant, init = await connect_client(agent_bus, await client_token(tenant, sa["id"]))

    ok = await authorize(agent_bus, grant, init.client_id, allowed["id"], remote_ip="198.51.100.7")
    assert ok.decision == "allow"
    assert ok.policy_id == policy["id"]
    assert [g.id for g in ok.gateways] == [str(gateway.id)]
    assert ok.resource is not None
    assert ok.resource.address == "10.40.0.0/16"
    # The token's expiry caps the access.
    assert ok.expires_at is not None
    assert grant.expires_at is not None
    assert ok.expires_at <= grant.expires_at

    no = await authorize(agent_bus, grant, init.client_id, denied["id"])
    assert no.decision == "deny"
    assert no.gateways == []


async def test_flow_authorize_follows_conditions_revocation_and_accounts(
    h, tenant, make_tenant, agent_bus
):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"], address="10.60.0.0/16")
    sa = await h.make_actor(tenant, "service_account")
    everyone = next(
        g for g in (await tenant.http.get("/v1/groups")).json()["data"] if g["name"] == "Everyone"
    )
    await tenant.create(
        "/v1/policies",
        {
            "group_id": everyone["id"],
            "resource_id": resource["id"],
            "conditions": [
                {"property": "remote_ip", "operator": "is_in_cidr", "values": ["198.51.100.0/24"]},
                {
                    "property": "current_time",
                    "operator": "is_in_day_of_week_time_ranges",
                    "values": ["MTWRFSU/09:00-17:00/UTC"],
                },
            ],
        },
    )
    grant, init = await connect_client(agent_bus, await client_token(tenant, sa["id"]))
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    inside = await authorize(
        agent_bus, grant, init.client_id, resource["id"], remote_ip="198.51.100.9", time=noon
    )
    assert inside.decision == "allow"
    assert inside.expires_at == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)

    outside = await authorize(
        agent_bus, grant, init.client_id, resource["id"], remote_ip="203.0.113.9", time=noon
    )
    assert outside.decision == "deny"
    assert outside.violated_properties == ["remote_ip"]

    # Another account cannot learn whether these ids exist.
    other = await make_tenant()
    other_sa = await h.make_actor(other, "service_account")
    other_grant, _ = await connect_client(agent_bus, await client_token(other, other_sa["id"]))
    with pytest.raises(RemoteError) as info:
        await authorize(agent_bus, other_grant, init.client_id, resource["id"])
    assert info.value.code == "not_found"

    # Revoking the token the session rests on ends access.
    tokens = (await tenant.http.get("/v1/tokens")).json()["data"]
    assert any(t["id"] == grant.token_id for t in tokens), tokens
    r = await tenant.http.delete(f"/v1/tokens/{grant.token_id}")
    assert r.status_code in (200, 204), r.text
    revoked = await authorize(
        agent_bus, grant, init.client_id, resource["id"], remote_ip="198.51.100.9", time=noon
    )
    assert revoked.decision == "deny"
    assert revoked.violated_properties == [bushandlers.TOKEN_INVALID]


async def test_flow_authorize_answers_bad_ids_with_bad_request(agent_bus):
    with pytest.raises(RemoteError) as info:
        await agent_bus.request(
            subjects.FLOW_AUTHORIZE,
            FlowAuthorizeRequest(account_id="x", client_id="y", resource_id="z"),
            FlowAuthorizeReply,
            timeout=5,
        )
    assert info.value.code == "bad_request"


async def test_init_refuses_a_dead_token_or_someone_elses_ids(h, tenant, make_tenant, agent_bus):
    sa = await h.make_actor(tenant, "service_account")
    token = await client_token(tenant, sa["id"])
    grant, _ = await connect_client(agent_bus, token)
    other = await make_tenant()
    other_sa = await h.make_actor(other, "service_account")

    def init(actor_id: str) -> ClientInitRequest:
        return ClientInitRequest(
            token_id=grant.token_id,
            account_id=grant.account_id,
            actor_id=actor_id,
            external_id="laptop-x",
            public_key=wg_key(),
        )

    # another account's actor with this account's token: refused, nothing created
    with pytest.raises(RemoteError) as info:
        await agent_bus.request(
            subjects.CLIENT_INIT, init(other_sa["id"]), ClientInitReply, timeout=5
        )
    assert info.value.code == "unauthorized"
    listed = await other.http.get("/v1/clients")
    assert listed.json()["data"] == []

    # a revoked token ends the right to (re)register
    r = await tenant.http.delete(f"/v1/tokens/{grant.token_id}")
    assert r.status_code in (200, 204), r.text
    with pytest.raises(RemoteError) as info:
        await agent_bus.request(subjects.CLIENT_INIT, init(sa["id"]), ClientInitReply, timeout=5)
    assert info.value.code == "unauthorized"

    # a gateway token only registers gateways of its own site
    site, elsewhere = await h.make_site(tenant), await h.make_site(tenant)
    r = await tenant.http.post(f"/v1/sites/{site['id']}/gateway_tokens", json={})
    gw = await agent_bus.request(
        subjects.TOKEN_VERIFY,
        TokenVerifyRequest(token=r.json()["token"]),
        TokenVerifyReply,
        timeout=5,
    )
    with pytest.raises(RemoteError) as info:
        await agent_bus.request(
            subjects.GATEWAY_INIT,
            GatewayInitRequest(
                token_id=gw.token_id,
                account_id=gw.account_id,
                site_id=elsewhere["id"],
                external_id="gw-x",
                public_key=wg_key(),
            ),
            GatewayInitReply,
            timeout=5,
        )
    assert info.value.code == "unauthorized"


async def _flow_setup(h, tenant, agent_bus):
    """A service account whose client may use one resource through Everyone."""
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"], address="10.70.0.0/16")
    everyone = next(
        g for g in (await tenant.http.get("/v1/groups")).json()["data"] if g["kind"] == "everyone"
    )
    await tenant.create("/v1/policies", {"group_id": everyone["id"], "resource_id": resource["id"]})
    sa = await h.make_actor(tenant, "service_account")
    grant, init = await connect_client(agent_bus, await client_token(tenant, sa["id"]))
    return resource, sa, grant, init


async def _authorize_with(bus: Bus, grant: Any, client_id: str, resource_id: str, token_id):
    return await bus.request(
        subjects.FLOW_AUTHORIZE,
        FlowAuthorizeRequest(
            account_id=grant.account_id,
            client_id=client_id,
            resource_id=resource_id,
            token_id=token_id,
        ),
        FlowAuthorizeReply,
        timeout=5,
    )


async def test_flow_authorize_fails_closed_on_any_token_but_the_clients_live_one(
    h, tenant, make_tenant, agent_bus, api_pool
):
    """Issue 8: an unknown token id was answered allow with expires_at null."""
    resource, sa, grant, init = await _flow_setup(h, tenant, agent_bus)
    ok = await _authorize_with(agent_bus, grant, init.client_id, resource["id"], grant.token_id)
    assert ok.decision == "allow"
    assert ok.expires_at is not None
    assert grant.expires_at is not None
    assert ok.expires_at <= grant.expires_at

    other = await make_tenant()
    other_sa = await h.make_actor(other, "service_account")
    foreign = (
        await agent_bus.request(
            subjects.TOKEN_VERIFY,
            TokenVerifyRequest(token=await client_token(other, other_sa["id"])),
            TokenVerifyReply,
            timeout=5,
        )
    ).token_id
    colleague = await h.make_actor(tenant, "service_account")
    colleagues = (
        await agent_bus.request(
            subjects.TOKEN_VERIFY,
            TokenVerifyRequest(token=await client_token(tenant, colleague["id"])),
            TokenVerifyReply,
            timeout=5,
        )
    ).token_id
    # the admin's API token: the right account, but not a client token of this actor
    api_token = (await tenant.create("/v1/tokens", {}))["id"]
    expired = await client_token(tenant, sa["id"])
    expired_id = expired.split(".", 1)[0]
    async with api_pool.acquire() as conn:
        await conn.execute(
            "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(expired_id),
        )
    revoked = (await client_token(tenant, sa["id"])).split(".", 1)[0]
    r = await tenant.http.delete(f"/v1/tokens/{revoked}")
    assert r.status_code == 204, r.text

    for token_id in (
        str(uuid.uuid4()),  # no such token
        foreign,  # another account's
        colleagues,  # another actor's
        api_token,  # not a client token
        expired_id,
        revoked,
        None,  # absent: signaling always sends it, so its absence fails closed
    ):
        reply = await _authorize_with(agent_bus, grant, init.client_id, resource["id"], token_id)
        assert reply.decision == "deny", token_id
        assert reply.violated_properties == [bushandlers.TOKEN_INVALID], token_id
        assert reply.expires_at is None
        assert reply.gateways == []


async def test_a_disabled_then_enabled_actor_gets_no_flow_on_its_old_token(h, tenant, agent_bus):
    """Issue 8: disabling revokes the session's token, so re-enabling the actor does
    not bring its flows back; the client must connect with a new token."""
    resource, sa, grant, init = await _flow_setup(h, tenant, agent_bus)
    assert (await authorize(agent_bus, grant, init.client_id, resource["id"])).decision == "allow"
    assert (await tenant.http.post(f"/v1/actors/{sa['id']}/disable")).status_code == 200
    disabled = await authorize(agent_bus, grant, init.client_id, resource["id"])
    assert disabled.decision == "deny"
    assert disabled.violated_properties == [bushandlers.ACTOR_DISABLED, bushandlers.TOKEN_INVALID]
    assert (await tenant.http.post(f"/v1/actors/{sa['id']}/enable")).status_code == 200
    enabled = await authorize(agent_bus, grant, init.client_id, resource["id"])
    assert (enabled.decision, enabled.violated_properties) == ("deny", [bushandlers.TOKEN_INVALID])
    fresh, _ = await connect_client(agent_bus, await client_token(tenant, sa["id"]))
    again = await authorize(agent_bus, fresh, init.client_id, resource["id"])
    assert again.decision == "allow"
