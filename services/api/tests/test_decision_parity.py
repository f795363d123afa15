"""``flow.authorize`` (bus) and ``POST /v1/policies/evaluate`` (REST) are one
decision service over one loader: for the same client, resource and context
they must decide alike, the flow's expiry being the evaluation's capped by the
session token's (issue 7 item 10, issue 8)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogate.api import bushandlers
from zerogate.common import subjects
from zerogate.common.bus import Bus
from zerogate.common.messages.api import (
    ClientInitReply,
    ClientInitRequest,
    FlowAuthorizeReply,
    FlowAuthorizeRequest,
    FlowContext,
    TokenVerifyReply,
    TokenVerifyRequest,
)

CONDITIONS = [
    {"property": "remote_ip", "operator": "is_in_cidr", "values": ["198.51.100.0/24"]},
    {"property": "remote_ip", "operator": "is_not_in_cidr", "values": ["198.51.100.0/24"]},
    {"property": "remote_country", "operator": "is_in", "values": ["DE"]},
    {"property": "remote_country", "operator": "is_not_in", "values": ["DE"]},
    {"property": "client_verified", "operator": "is", "values": ["true"]},
    {
        "property": "current_time",
        "operator": "is_in_day_of_week_time_ranges",
        "values": ["MTWRF/09:00-17:00/Europe/Berlin"],
    },
    {
        "property": "current_time",
        "operator": "is_in_day_of_week_time_ranges",
        "values": ["MTWRFSU/08:00-22:00/UTC"],
    },
]
POLICY = st.fixed_dictionaries(
    {
        "group": st.sampled_from(["everyone", "member", "other"]),
        "conditions": st.lists(
            st.sampled_from(CONDITIONS), unique_by=lambda c: c["property"], max_size=3
        ),
        "disabled": st.booleans(),
    }
)
SCENARIO = st.fixed_dictionaries(
    {
        "policies": st.lists(POLICY, unique_by=lambda p: p["group"], max_size=3),
        "verified": st.booleans(),
        "remote_ip": st.sampled_from([None, "198.51.100.7", "203.0.113.9", "2001:db8::1"]),
        "country": st.sampled_from([None, "DE", "fr"]),
        # Wednesday morning and evening, Saturday; all before the token's expiry.
        "time": st.sampled_from(
            ["2026-11-25T10:00:00+00:00", "2026-11-25T20:30:00+00:00", "2026-11-28T10:00:00Z"]
        ),
    }
)


async def test_flow_authorize_and_evaluate_decide_alike(h, tenant, bus, nats_url, api_pool):
    handlers = await Bus.connect(nats_url, name="api-parity")
    await bushandlers.subscribe(handlers, api_pool, None)
    await handlers.flush()
    try:
        await _check_parity(h, tenant, bus)
    finally:
        await handlers.close()


async def _check_parity(h: Any, tenant: Any, bus: Bus) -> None:
    http = tenant.http
    site = await h.make_site(tenant)
    sa = await h.make_actor(tenant, "service_account")
    groups = {g["kind"]: g for g in (await http.get("/v1/groups")).json()["data"]}
    member, other = await h.make_group(tenant), await h.make_group(tenant)
    r = await http.put(f"/v1/groups/{member['id']}/members", json={"actor_ids": [sa["id"]]})
    assert r.status_code == 200, r.text
    group_ids = {"everyone": groups["everyone"]["id"], "member": member["id"], "other": other["id"]}
    token = (await tenant.create(f"/v1/actors/{sa['id']}/client_tokens", {}))["token"]
    grant = await bus.request(
        subjects.TOKEN_VERIFY, TokenVerifyRequest(token=token), TokenVerifyReply, timeout=5
    )
    assert grant.expires_at is not None
    init = await bus.request(
        subjects.CLIENT_INIT,
        ClientInitRequest(
            token_id=grant.token_id,
            account_id=grant.account_id,
            actor_id=str(sa["id"]),
            external_id="parity-laptop",
            public_key="k" * 43 + "=",
        ),
        ClientInitReply,
        timeout=5,
    )
    loop = asyncio.get_running_loop()
    seen: set[str] = set()
    ran: list[None] = []

    async def one(scenario: dict[str, Any]) -> None:
        resource = await h.make_resource(tenant, site["id"], address="10.80.0.0/16")
        for p in scenario["policies"]:
            policy = await tenant.create(
                "/v1/policies",
                {
                    "group_id": group_ids[p["group"]],
                    "resource_id": resource["id"],
                    "conditions": p["conditions"],
                },
            )
            if p["disabled"]:
                r = await http.post(f"/v1/policies/{policy['id']}/disable")
                assert r.status_code == 200, r.text
        verb = "verify" if scenario["verified"] else "unverify"
        assert (await http.post(f"/v1/clients/{init.client_id}/{verb}")).status_code == 200
        context = {k: scenario[k] for k in ("remote_ip", "country", "time")}
        r = await http.post(
            "/v1/policies/evaluate",
            json={
                "client_id": init.client_id,
                "resource_id": resource["id"],
                "context": {k: v for k, v in context.items() if v is not None},
            },
        )
        assert r.status_code == 200, r.text
        evaluated = r.json()
        flow = await bus.request(
            subjects.FLOW_AUTHORIZE,
            FlowAuthorizeRequest(
                account_id=grant.account_id,
                client_id=init.client_id,
                resource_id=resource["id"],
                token_id=grant.token_id,
                context=FlowContext(**context),
            ),
            FlowAuthorizeReply,
            timeout=5,
        )
        seen.add(flow.decision)
        assert flow.decision == evaluated["decision"], (scenario, evaluated, flow)
        if flow.decision == "deny":
            assert flow.violated_properties == evaluated["violated_properties"], scenario
            assert flow.expires_at is None
            return
        assert flow.policy_id == evaluated["policy_id"]
        window_end = (
            datetime.fromisoformat(evaluated["expires_at"]) if evaluated["expires_at"] else None
        )
        expected = grant.expires_at if window_end is None else min(window_end, grant.expires_at)
        assert flow.expires_at == expected, scenario

    @settings(
        max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(SCENARIO)
    def check(scenario: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(one(scenario), loop).result(60)
        ran.append(None)

    await asyncio.to_thread(check)
    assert len(ran) >= 40
    assert seen == {"allow", "deny"}, seen
