"""A DNS resource's address families (``ip_stack``): REST, and what agents are told."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from zerogate.api import bushandlers
from zerogate.common import subjects
from zerogate.common.bus import Bus
from zerogate.common.messages.api import (
    ClientInitReply,
    ClientInitRequest,
    FlowAuthorizeReply,
    FlowAuthorizeRequest,
    TokenVerifyReply,
    TokenVerifyRequest,
)


@pytest.fixture(scope="module")
async def agent_bus(nats_url: str, api_pool: Any, api_settings: Any) -> AsyncIterator[Bus]:
    """The api's handlers on one connection; signaling's side on another."""
    api = await Bus.connect(nats_url, name="api-handlers")
    await bushandlers.subscribe(api, api_pool, api_settings)
    await api.flush()
    agent = await Bus.connect(nats_url, name="agent")
    try:
        yield agent
    finally:
        await agent.close()
        await api.close()


async def _client(tenant: Any, bus: Bus, actor_id: str) -> tuple[Any, Any]:
    r = await tenant.http.post(f"/v1/actors/{actor_id}/client_tokens", json={})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
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
            external_id="laptop-1",
            public_key=base64.b64encode(os.urandom(32)).decode(),
        ),
        ClientInitReply,
        timeout=5,
    )
    return grant, init


async def test_a_dns_resource_keeps_its_ip_stack_and_others_are_dual(h, tenant):
    site = await h.make_site(tenant)
    dns = await h.make_resource(
        tenant, site["id"], type="dns", address="app.corp.example", ip_stack="ipv4_only"
    )
    assert dns["ip_stack"] == "ipv4_only"
    plain = await h.make_resource(tenant, site["id"])
    assert plain["ip_stack"] == "dual"
    patched = await tenant.http.patch(f"/v1/resources/{dns['id']}", json={"ip_stack": "dual"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["ip_stack"] == "dual"
    got = (await tenant.http.get(f"/v1/resources/{dns['id']}")).json()
    assert got["ip_stack"] == "dual"


@pytest.mark.parametrize("bad", ["both", "", None, 4])
async def test_an_unknown_ip_stack_is_refused(h, tenant, bad):
    site = await h.make_site(tenant)
    response = await tenant.http.post(
        "/v1/resources",
        json={"type": "dns", "address": "a.corp.example", "name": "x", "site_id": site["id"],
              "ip_stack": bad},
    )  # fmt: skip
    h.assert_problem(response, 422)


async def test_only_a_dns_resource_chooses_families(h, tenant):
    site = await h.make_site(tenant)
    response = await tenant.http.post(
        "/v1/resources",
        json={"type": "cidr", "address": "10.9.0.0/16", "name": "x", "site_id": site["id"],
              "ip_stack": "ipv6_only"},
    )  # fmt: skip
    assert "ip_stack" in h.assert_problem(response, 422)["detail"]
    cidr = await h.make_resource(tenant, site["id"])
    patched = await tenant.http.patch(f"/v1/resources/{cidr['id']}", json={"ip_stack": "ipv4_only"})
    h.assert_problem(patched, 422)


async def test_agents_see_the_ip_stack(h, tenant, agent_bus):
    site = await h.make_site(tenant)
    dns = await h.make_resource(
        tenant, site["id"], type="dns", address="v6.corp.example", ip_stack="ipv6_only"
    )
    group = await h.make_group(tenant)
    sa = await h.make_actor(tenant, "service_account")
    r = await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [sa["id"]]})
    assert r.status_code == 200, r.text
    await tenant.create("/v1/policies", {"group_id": group["id"], "resource_id": dns["id"]})
    grant, init = await _client(tenant, agent_bus, sa["id"])
    seen = {res.id: res for res in init.resources}
    assert seen[dns["id"]].ip_stack == "ipv6_only"
    reply = await agent_bus.request(
        subjects.FLOW_AUTHORIZE,
        FlowAuthorizeRequest(
            account_id=grant.account_id,
            client_id=init.client_id,
            resource_id=dns["id"],
            token_id=grant.token_id,
        ),
        FlowAuthorizeReply,
        timeout=5,
    )
    assert reply.decision == "allow"
    assert reply.resource is not None
    assert reply.resource.ip_stack == "ipv6_only"
