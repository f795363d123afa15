"""``POST /v1/policies/evaluate`` and ``load_decision_inputs`` (item 13)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from zerogate.api.policies.repository import load_decision_inputs

BERLIN_OFFICE_HOURS = {
    "property": "current_time",
    "operator": "is_in_day_of_week_time_ranges",
    "values": ["MTWRF/09:00-17:00/Europe/Berlin"],
}


async def _setup(h, tenant):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant)
    actor = await h.make_actor(tenant)
    return site, resource, group, actor


async def _evaluate(tenant, **body):
    response = await tenant.http.post("/v1/policies/evaluate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_default_deny_without_policies(h, tenant):
    _, resource, _, actor = await _setup(h, tenant)
    result = await _evaluate(tenant, actor_id=actor["id"], resource_id=resource["id"])
    assert result == {"decision": "deny", "violated_properties": []}


async def test_group_membership_grants_and_removal_revokes(h, tenant):
    _, resource, group, actor = await _setup(h, tenant)
    policy = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    denied = await _evaluate(tenant, actor_id=actor["id"], resource_id=resource["id"])
    assert denied["decision"] == "deny"
    await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [actor["id"]]})
    allowed = await _evaluate(tenant, actor_id=actor["id"], resource_id=resource["id"])
    assert allowed == {"decision": "allow", "expires_at": None, "policy_id": policy["id"]}
    await tenant.http.post(f"/v1/policies/{policy['id']}/disable")
    assert (await _evaluate(tenant, actor_id=actor["id"], resource_id=resource["id"]))[
        "decision"
    ] == "deny"


async def test_everyone_policy_applies_to_every_actor(h, tenant):
    _, resource, _, actor = await _setup(h, tenant)
    everyone = next(
        g for g in (await tenant.http.get("/v1/groups")).json()["data"] if g["kind"] == "everyone"
    )
    policy = await tenant.create(
        "/v1/policies", {"group_id": everyone["id"], "resource_id": resource["id"]}
    )
    result = await _evaluate(tenant, actor_id=actor["id"], resource_id=resource["id"])
    assert result["decision"] == "allow"
    assert result["policy_id"] == policy["id"]


async def test_time_window_gives_expiry_and_country_fails_closed(h, tenant):
    _, resource, group, actor = await _setup(h, tenant)
    await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [actor["id"]]})
    await tenant.create(
        "/v1/policies",
        {
            "group_id": group["id"],
            "resource_id": resource["id"],
            "conditions": [
                BERLIN_OFFICE_HOURS,
                {"property": "remote_country", "operator": "is_in", "values": ["DE"]},
            ],
        },
    )
    # Wednesday 2026-11-25 10:00 UTC = 11:00 in Berlin (CET, UTC+1): inside the window,
    # which ends at 17:00 Berlin = 16:00 UTC.
    inside = "2026-11-25T10:00:00Z"
    result = await _evaluate(
        tenant,
        actor_id=actor["id"],
        resource_id=resource["id"],
        context={"time": inside, "country": "de"},
    )
    assert set(result) == {"decision", "expires_at", "policy_id"}
    assert result["decision"] == "allow"
    assert datetime.fromisoformat(result["expires_at"]) == datetime(2026, 11, 25, 16, tzinfo=UTC)
    unknown_country = await _evaluate(
        tenant, actor_id=actor["id"], resource_id=resource["id"], context={"time": inside}
    )
    assert unknown_country == {"decision": "deny", "violated_properties": ["remote_country"]}
    saturday = await _evaluate(
        tenant,
        actor_id=actor["id"],
        resource_id=resource["id"],
        context={"time": "2026-11-28T10:00:00Z", "country": "FR"},
    )
    assert saturday["violated_properties"] == ["current_time", "remote_country"]


async def test_client_id_brings_its_actor_and_verification(h, tenant, api_pool):
    _, resource, group, actor = await _setup(h, tenant)
    await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [actor["id"]]})
    await tenant.create(
        "/v1/policies",
        {
            "group_id": group["id"],
            "resource_id": resource["id"],
            "conditions": [{"property": "client_verified", "operator": "is", "values": ["true"]}],
        },
    )
    client = await h.make_client(api_pool, tenant, actor["id"])
    body = {"client_id": str(client.id), "resource_id": resource["id"]}
    assert (await _evaluate(tenant, **body))["violated_properties"] == ["client_verified"]
    await tenant.http.post(f"/v1/clients/{client.id}/verify")
    assert (await _evaluate(tenant, **body))["decision"] == "allow"
    # An explicit context wins over the stored state.
    override = await _evaluate(tenant, **body, context={"client_verified": False})
    assert override["decision"] == "deny"


async def test_disabled_actor_is_denied(h, tenant):
    _, resource, group, actor = await _setup(h, tenant)
    await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [actor["id"]]})
    await tenant.create("/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]})
    await tenant.http.post(f"/v1/actors/{actor['id']}/disable")
    result = await _evaluate(tenant, actor_id=actor["id"], resource_id=resource["id"])
    assert result["decision"] == "deny"
    assert result["violated_properties"] == ["actor_disabled"]


async def test_evaluate_bad_requests(h, tenant):
    _, resource, _, actor = await _setup(h, tenant)
    post = tenant.http.post
    both = {"actor_id": actor["id"], "client_id": str(uuid.uuid4()), "resource_id": resource["id"]}
    h.assert_problem(await post("/v1/policies/evaluate", json=both), 422)
    h.assert_problem(await post("/v1/policies/evaluate", json={"resource_id": resource["id"]}), 422)
    naive = {
        "actor_id": actor["id"],
        "resource_id": resource["id"],
        "context": {"time": "2026-11-25T10:00:00"},
    }
    h.assert_problem(await post("/v1/policies/evaluate", json=naive), 422)
    bad_ip = {
        "actor_id": actor["id"],
        "resource_id": resource["id"],
        "context": {"remote_ip": "300.1.1.1"},
    }
    h.assert_problem(await post("/v1/policies/evaluate", json=bad_ip), 422)
    missing = {"actor_id": actor["id"], "resource_id": str(uuid.uuid4())}
    h.assert_problem(await post("/v1/policies/evaluate", json=missing), 404)


async def test_load_decision_inputs_picks_only_the_actors_policies(h, tenant, api_pool):
    _, resource, group, actor = await _setup(h, tenant)
    other_group = await h.make_group(tenant)
    everyone = next(
        g for g in (await tenant.http.get("/v1/groups")).json()["data"] if g["kind"] == "everyone"
    )
    await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [actor["id"]]})
    mine = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    await tenant.create(
        "/v1/policies", {"group_id": other_group["id"], "resource_id": resource["id"]}
    )
    everyone_policy = await tenant.create(
        "/v1/policies",
        {
            "group_id": everyone["id"],
            "resource_id": resource["id"],
            "conditions": [
                {"property": "remote_ip", "operator": "is_in_cidr", "values": ["192.0.2.0/24"]}
            ],
        },
    )
    await tenant.http.post(f"/v1/policies/{everyone_policy['id']}/disable")
    async with api_pool.acquire() as conn:
        inputs = await load_decision_inputs(
            conn, tenant.account_id, uuid.UUID(resource["id"]), actor_id=uuid.UUID(actor["id"])
        )
        assert inputs is not None
        assert not inputs.actor_disabled
        assert str(inputs.resource.id) == resource["id"]
        assert inputs.resource.address == "10.1.0.0/16"
        by_id = {p.id: p for p in inputs.policies}
        assert set(by_id) == {mine["id"], everyone_policy["id"]}
        assert by_id[everyone_policy["id"]].disabled
        assert by_id[everyone_policy["id"]].conditions[0].property == "remote_ip"
        # Another account's ids load nothing.
        assert (
            await load_decision_inputs(
                conn, uuid.uuid4(), uuid.UUID(resource["id"]), actor_id=uuid.UUID(actor["id"])
            )
            is None
        )
