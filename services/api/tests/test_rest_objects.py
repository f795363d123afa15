"""Success and failure paths of every REST endpoint (issue 2, items 10-14)."""

from __future__ import annotations

import ipaddress
import uuid

import pytest


async def test_get_account(tenant):
    response = await tenant.http.get("/v1/account")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(tenant.account_id)
    assert body["slug"].startswith("t-")


# ---------------------------------------------------------------------- actors


async def test_actor_crud(h, tenant):
    actor = await h.make_actor(tenant, "account_user", email="Someone@Example.test")
    assert actor["type"] == "account_user"
    assert actor["disabled_at"] is None
    got = await tenant.http.get(f"/v1/actors/{actor['id']}")
    assert got.json() == actor
    patched = await tenant.http.patch(f"/v1/actors/{actor['id']}", json={"name": "Renamed"})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Renamed"
    listed = (await tenant.http.get("/v1/actors")).json()["data"]
    assert {a["id"] for a in listed} == {str(tenant.actor_id), actor["id"]}
    assert (await tenant.http.delete(f"/v1/actors/{actor['id']}")).status_code == 204
    h.assert_problem(await tenant.http.get(f"/v1/actors/{actor['id']}"), 404)
    h.assert_problem(await tenant.http.delete(f"/v1/actors/{actor['id']}"), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "superuser", "name": "x"},
        {"type": "account_user"},
        {"type": "account_user", "name": ""},
        {"type": "account_user", "name": "x", "email": "not-an-email"},
        {"type": "account_user", "name": "x", "unknown": 1},
    ],
)
async def test_actor_create_rejects_bad_bodies(h, tenant, body):
    body = h.assert_problem(await tenant.http.post("/v1/actors", json=body), 422)
    assert body["errors"]


async def test_actor_email_is_unique_per_account_case_insensitively(h, make_tenant):
    one, two = await make_tenant(), await make_tenant()
    await h.make_actor(one, email="dup@example.test")
    again = await one.http.post(
        "/v1/actors", json={"type": "account_user", "name": "b", "email": "DUP@example.test"}
    )
    h.assert_problem(again, 409)
    # Another account may use the same email.
    await h.make_actor(two, email="dup@example.test")


async def test_actor_disable_enable(h, tenant):
    actor = await h.make_actor(tenant)
    disabled = await tenant.http.post(f"/v1/actors/{actor['id']}/disable")
    assert disabled.status_code == 200
    assert disabled.json()["disabled_at"] is not None
    enabled = await tenant.http.post(f"/v1/actors/{actor['id']}/enable")
    assert enabled.json()["disabled_at"] is None
    h.assert_problem(await tenant.http.post(f"/v1/actors/{uuid.uuid4()}/disable"), 404)


async def test_admin_cannot_lock_themselves_out(h, tenant):
    me = tenant.actor_id
    h.assert_problem(await tenant.http.post(f"/v1/actors/{me}/disable"), 409)
    h.assert_problem(await tenant.http.delete(f"/v1/actors/{me}"), 409)
    demote = await tenant.http.patch(f"/v1/actors/{me}", json={"type": "account_user"})
    h.assert_problem(demote, 409)
    assert (await tenant.http.get("/v1/account")).status_code == 200


async def test_client_tokens_only_for_service_accounts(h, tenant):
    user = await h.make_actor(tenant, "account_user")
    h.assert_problem(await tenant.http.post(f"/v1/actors/{user['id']}/client_tokens", json={}), 422)
    service = await h.make_actor(tenant, "service_account")
    created = await tenant.create(f"/v1/actors/{service['id']}/client_tokens", {"name": "ci"})
    assert created["type"] == "client"
    assert created["actor_id"] == service["id"]
    assert created["expires_at"] is not None
    listed = (await tenant.http.get(f"/v1/actors/{service['id']}/client_tokens")).json()
    assert [t["id"] for t in listed["data"]] == [created["id"]]
    assert "token" not in listed["data"][0]
    h.assert_problem(
        await tenant.http.post(f"/v1/actors/{uuid.uuid4()}/client_tokens", json={}), 404
    )


async def test_gateway_token_is_shown_once_reusable_and_revocable(h, tenant, api_pool):
    """One gateway token serves any number of gateways of its site, is never shown
    again after creation, and stops working the moment it is revoked."""
    from zerogate.api.tokens.repository import verify_token

    site, other_site = await h.make_site(tenant), await h.make_site(tenant)
    created = await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {"name": "k8s"})
    assert created["type"] == "gateway"
    assert created["site_id"] == site["id"]
    assert created["actor_id"] is None
    listed = (await tenant.http.get(f"/v1/sites/{site['id']}/gateway_tokens")).json()["data"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]
    async with api_pool.acquire() as conn:
        for _ in range(3):  # reusable: verifying it changes nothing
            grant = await verify_token(conn, created["token"], types=frozenset({"gateway"}))
            assert grant is not None
            assert str(grant.site_id) == site["id"]
    gateways = [await h.make_gateway(api_pool, tenant, site["id"], f"gw-{i}") for i in range(3)]
    assert len({g.ipv4 for g in gateways}) == 3
    shown = (await tenant.http.get(f"/v1/sites/{site['id']}/gateways")).json()["data"]
    assert {g["external_id"] for g in shown} == {"gw-0", "gw-1", "gw-2"}
    # Revoking through the wrong site is not found and changes nothing.
    wrong = await tenant.http.delete(f"/v1/sites/{other_site['id']}/gateway_tokens/{created['id']}")
    h.assert_problem(wrong, 404)
    revoke = await tenant.http.delete(f"/v1/sites/{site['id']}/gateway_tokens/{created['id']}")
    assert revoke.status_code == 204
    async with api_pool.acquire() as conn:
        assert await verify_token(conn, created["token"]) is None
    assert (await tenant.http.get(f"/v1/sites/{site['id']}/gateway_tokens")).json()["data"] == []
    h.assert_problem(
        await tenant.http.delete(f"/v1/sites/{site['id']}/gateway_tokens/{created['id']}"), 404
    )


async def test_client_tokens_are_refused_for_every_other_actor_type(h, tenant):
    for actor_type in ("account_user", "account_admin_user", "api_client"):
        actor = await h.make_actor(tenant, actor_type)
        response = await tenant.http.post(f"/v1/actors/{actor['id']}/client_tokens", json={})
        assert "service_account" in h.assert_problem(response, 422)["detail"]
    h.assert_problem(
        await tenant.http.post(f"/v1/actors/{tenant.actor_id}/client_tokens", json={}), 422
    )


# ---------------------------------------------------------------------- groups


async def test_everyone_group_exists_and_is_immutable(h, tenant):
    groups = (await tenant.http.get("/v1/groups")).json()["data"]
    everyone = [g for g in groups if g["kind"] == "everyone"]
    assert len(everyone) == 1
    gid = everyone[0]["id"]
    assert everyone[0]["name"] == "Everyone"
    h.assert_problem(await tenant.http.delete(f"/v1/groups/{gid}"), 409)
    h.assert_problem(await tenant.http.patch(f"/v1/groups/{gid}", json={"name": "All"}), 409)
    members = await tenant.http.put(
        f"/v1/groups/{gid}/members", json={"actor_ids": [str(tenant.actor_id)]}
    )
    h.assert_problem(members, 409)
    # It contains every actor implicitly.
    actor = await h.make_actor(tenant)
    listed = (await tenant.http.get(f"/v1/groups/{gid}/members")).json()["data"]
    assert {a["id"] for a in listed} == {str(tenant.actor_id), actor["id"]}


async def test_group_crud_and_members(h, tenant):
    group = await h.make_group(tenant, "Engineering")
    h.assert_problem(await tenant.http.post("/v1/groups", json={"name": "Engineering"}), 409)
    renamed = await tenant.http.patch(f"/v1/groups/{group['id']}", json={"name": "Eng"})
    assert renamed.json()["name"] == "Eng"
    a, b = await h.make_actor(tenant), await h.make_actor(tenant)
    put = await tenant.http.put(
        f"/v1/groups/{group['id']}/members", json={"actor_ids": [a["id"], b["id"], a["id"]]}
    )
    assert put.status_code == 200
    assert put.json() == {"group_id": group["id"], "actor_ids": sorted([a["id"], b["id"]])}
    listed = (await tenant.http.get(f"/v1/groups/{group['id']}/members")).json()["data"]
    assert {m["id"] for m in listed} == {a["id"], b["id"]}
    # Replace: b only.
    await tenant.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [b["id"]]})
    listed = (await tenant.http.get(f"/v1/groups/{group['id']}/members")).json()["data"]
    assert [m["id"] for m in listed] == [b["id"]]
    # Unknown actor: 404, membership unchanged.
    bad = await tenant.http.put(
        f"/v1/groups/{group['id']}/members", json={"actor_ids": [a["id"], str(uuid.uuid4())]}
    )
    h.assert_problem(bad, 404)
    listed = (await tenant.http.get(f"/v1/groups/{group['id']}/members")).json()["data"]
    assert [m["id"] for m in listed] == [b["id"]]
    # Deleting an actor removes its membership.
    await tenant.http.delete(f"/v1/actors/{b['id']}")
    listed = (await tenant.http.get(f"/v1/groups/{group['id']}/members")).json()["data"]
    assert listed == []
    assert (await tenant.http.delete(f"/v1/groups/{group['id']}")).status_code == 204
    h.assert_problem(await tenant.http.get(f"/v1/groups/{group['id']}"), 404)


# ----------------------------------------------------------------------- sites


async def test_site_crud_and_gateway_tokens(h, tenant, api_pool):
    site = await h.make_site(tenant, "Berlin")
    h.assert_problem(await tenant.http.post("/v1/sites", json={"name": "Berlin"}), 409)
    renamed = await tenant.http.patch(f"/v1/sites/{site['id']}", json={"name": "Berlin DC"})
    assert renamed.json()["name"] == "Berlin DC"
    token = await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {"name": "k8s"})
    assert token["type"] == "gateway"
    assert token["site_id"] == site["id"]
    listed = (await tenant.http.get(f"/v1/sites/{site['id']}/gateway_tokens")).json()["data"]
    assert [t["id"] for t in listed] == [token["id"]]
    other = await h.make_site(tenant)
    # A token is revoked through its own site only.
    h.assert_problem(
        await tenant.http.delete(f"/v1/sites/{other['id']}/gateway_tokens/{token['id']}"), 404
    )
    revoke = await tenant.http.delete(f"/v1/sites/{site['id']}/gateway_tokens/{token['id']}")
    assert revoke.status_code == 204
    assert (await tenant.http.get(f"/v1/sites/{site['id']}/gateway_tokens")).json()["data"] == []
    h.assert_problem(
        await tenant.http.post(f"/v1/sites/{uuid.uuid4()}/gateway_tokens", json={}), 404
    )
    assert (await tenant.http.delete(f"/v1/sites/{site['id']}")).status_code == 204
    h.assert_problem(await tenant.http.get(f"/v1/sites/{site['id']}"), 404)


async def test_site_gateways_list_and_site_with_resources_is_not_deletable(h, tenant, api_pool):
    site = await h.make_site(tenant)
    gateway = await h.make_gateway(api_pool, tenant, site["id"])
    listed = (await tenant.http.get(f"/v1/sites/{site['id']}/gateways")).json()["data"]
    assert len(listed) == 1
    assert listed[0]["id"] == str(gateway.id)
    assert listed[0]["ipv4"] == str(gateway.ipv4)
    assert listed[0]["last_seen_remote_ip"] == "203.0.113.9"
    await h.make_resource(tenant, site["id"])
    h.assert_problem(await tenant.http.delete(f"/v1/sites/{site['id']}"), 409)


# ------------------------------------------------------------------- resources


@pytest.mark.parametrize(
    ("type_", "address", "expected"),
    [
        ("cidr", "10.0.0.0/8", "10.0.0.0/8"),
        ("ip", "192.0.2.10", "192.0.2.10"),
        ("ip", "2001:DB8::1", "2001:db8::1"),
        ("dns", "*.Example.COM", "*.example.com"),
        ("dns", "**.corp.example.com", "**.corp.example.com"),
    ],
)
async def test_resource_addresses_are_normalised(h, tenant, type_, address, expected):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"], type=type_, address=address)
    assert resource["address"] == expected


@pytest.mark.parametrize(
    ("type_", "address"),
    [
        ("cidr", "0.0.0.0/0"),
        ("cidr", "not a cidr"),
        ("ip", "127.0.0.1"),
        ("dns", "localhost"),
        ("dns", "*.com"),
        ("cidr", None),
        ("internet", "1.2.3.4"),
    ],
)
async def test_resource_bad_addresses_are_422(h, tenant, type_, address):
    site = await h.make_site(tenant)
    response = await tenant.http.post(
        "/v1/resources",
        json={"type": type_, "address": address, "name": "x", "site_id": site["id"]},
    )
    body = h.assert_problem(response, 422)
    assert "address" in body["detail"]


@pytest.mark.parametrize(
    ("type_", "address", "reason"),
    [
        # DNS: wildcard in the top-level label, bare TLDs, localhost, too broad.
        ("dns", "intranet.*", "top-level"),
        ("dns", "corp.c?m", "top-level"),
        ("dns", "com", "single label"),
        ("dns", "localhost", "localhost"),
        ("dns", "db.LOCALHOST.", "localhost"),
        ("dns", "**.de", "too broad"),
        ("dns", "**.**.example.com", "'**' twice"),
        ("dns", "bad_label!.example.com", "not allowed"),
        # IP space: the internet, loopback, link-local and DESIGN.md's own ranges.
        ("cidr", "::/0", "internet resource"),
        ("cidr", "0.0.0.0/0", "internet resource"),
        ("ip", "::1", "loopback"),
        ("cidr", "127.0.0.0/8", "loopback"),
        ("cidr", "169.254.0.0/16", "link-local"),
        ("ip", "fe80::1", "link-local"),
        ("cidr", "100.64.0.0/10", "tunnel"),
        ("ip", "fd00:2021:1111::5", "tunnel"),
        ("cidr", "100.96.0.0/12", "DNS proxy"),
        ("ip", "fd00:2021:1111:8000::1", "DNS proxy"),
        ("ip", "100.100.111.1", "DNS proxy"),
        ("ip", "10.0.0.5/24", "network"),
    ],
)
async def test_resource_refusals_reach_rest_with_a_clear_detail(h, tenant, type_, address, reason):
    site = await h.make_site(tenant)
    response = await tenant.http.post(
        "/v1/resources",
        json={"type": type_, "address": address, "name": "x", "site_id": site["id"]},
    )
    body = h.assert_problem(response, 422)
    assert body["detail"].startswith("address: ")
    assert reason in body["detail"]
    # The same rules hold when an existing resource is changed.
    resource = await h.make_resource(
        tenant,
        site["id"],
        type=type_,
        address=(
            "ok.example.com"
            if type_ == "dns"
            else "192.0.2.0/24"
            if type_ == "cidr"
            else "192.0.2.1"
        ),
    )
    patched = await tenant.http.patch(f"/v1/resources/{resource['id']}", json={"address": address})
    assert reason in h.assert_problem(patched, 422)["detail"]


@pytest.mark.parametrize(
    ("type_", "address", "expected"),
    [
        ("cidr", "10.0.0.5/24", "10.0.0.0/24"),
        ("cidr", "10.0.0.5", "10.0.0.5/32"),
        ("cidr", "2001:DB8::1/32", "2001:db8::/32"),
        ("ip", "10.0.0.5/32", "10.0.0.5"),
        ("ip", "2001:db8::5/128", "2001:db8::5"),
        ("dns", "**.Corp.Example.COM.", "**.corp.example.com"),
        ("dns", "DB-?.example.com", "db-?.example.com"),
        ("dns", "bücher.example", "xn--bcher-kva.example"),
    ],
)
async def test_resource_host_prefixes_and_names_are_normalised(h, tenant, type_, address, expected):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"], type=type_, address=address)
    assert resource["address"] == expected
    assert (await tenant.http.get(f"/v1/resources/{resource['id']}")).json()["address"] == expected


async def test_resource_filters_are_validated_and_normalised(h, tenant):
    site = await h.make_site(tenant)
    resource = await h.make_resource(
        tenant,
        site["id"],
        filters=[{"protocol": "icmp"}, {"protocol": "TCP", "ports": ["8000-8100", "443"]}],
    )
    assert resource["filters"] == [
        {"protocol": "icmp", "ports": []},
        {"protocol": "tcp", "ports": ["443", "8000-8100"]},
    ]
    for filters in (
        [{"protocol": "tcp", "ports": ["0"]}],
        [{"protocol": "tcp", "ports": ["1-10", "5-20"]}],
        [{"protocol": "icmp", "ports": ["1"]}],
        [{"protocol": "sctp"}],
    ):
        bad = await tenant.http.post(
            "/v1/resources",
            json={
                "type": "ip",
                "address": "192.0.2.1",
                "name": "x",
                "site_id": site["id"],
                "filters": filters,
            },
        )
        assert "filters" in h.assert_problem(bad, 422)["detail"]


async def test_one_internet_resource_per_account(h, tenant):
    site = await h.make_site(tenant)
    first = await h.make_resource(tenant, site["id"], type="internet", address=None)
    assert first["address"] is None
    again = await tenant.http.post(
        "/v1/resources", json={"type": "internet", "name": "again", "site_id": site["id"]}
    )
    h.assert_problem(again, 409)


async def test_resource_crud(h, tenant):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    assert (await tenant.http.get(f"/v1/resources/{resource['id']}")).json() == resource
    patched = await tenant.http.patch(
        f"/v1/resources/{resource['id']}", json={"address": "10.2.0.0/16", "name": "lan"}
    )
    assert patched.status_code == 200
    assert patched.json()["address"] == "10.2.0.0/16"
    bad = await tenant.http.patch(f"/v1/resources/{resource['id']}", json={"address": "nope"})
    h.assert_problem(bad, 422)
    moved = await tenant.http.patch(
        f"/v1/resources/{resource['id']}", json={"site_id": str(uuid.uuid4())}
    )
    h.assert_problem(moved, 404)
    by_site = (await tenant.http.get("/v1/resources", params={"site_id": site["id"]})).json()
    assert [r["id"] for r in by_site["data"]] == [resource["id"]]
    missing_site = await tenant.http.post(
        "/v1/resources",
        json={"type": "ip", "address": "192.0.2.1", "name": "x", "site_id": str(uuid.uuid4())},
    )
    h.assert_problem(missing_site, 404)
    assert (await tenant.http.delete(f"/v1/resources/{resource['id']}")).status_code == 204
    h.assert_problem(await tenant.http.get(f"/v1/resources/{resource['id']}"), 404)


# -------------------------------------------------------------------- policies


async def test_policy_crud(h, tenant):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant)
    conditions = [{"property": "remote_country", "operator": "is_in", "values": ["de", "FR"]}]
    policy = await tenant.create(
        "/v1/policies",
        {
            "group_id": group["id"],
            "resource_id": resource["id"],
            "description": "eng",
            "conditions": conditions,
        },
    )
    assert policy["conditions"] == [
        {"property": "remote_country", "operator": "is_in", "values": ["DE", "FR"]}
    ]
    duplicate = await tenant.http.post(
        "/v1/policies", json={"group_id": group["id"], "resource_id": resource["id"]}
    )
    h.assert_problem(duplicate, 409)
    disabled = await tenant.http.post(f"/v1/policies/{policy['id']}/disable")
    assert disabled.json()["disabled_at"] is not None
    enabled = await tenant.http.post(f"/v1/policies/{policy['id']}/enable")
    assert enabled.json()["disabled_at"] is None
    patched = await tenant.http.patch(
        f"/v1/policies/{policy['id']}", json={"conditions": [], "description": None}
    )
    assert patched.json()["conditions"] == []
    assert patched.json()["description"] is None
    listed = await tenant.http.get("/v1/policies", params={"resource_id": resource["id"]})
    assert [p["id"] for p in listed.json()["data"]] == [policy["id"]]
    assert (await tenant.http.delete(f"/v1/policies/{policy['id']}")).status_code == 204
    h.assert_problem(await tenant.http.get(f"/v1/policies/{policy['id']}"), 404)


@pytest.mark.parametrize(
    "conditions",
    [
        [{"property": "remote_country", "operator": "is_in", "values": ["XX"]}],
        [{"property": "moon_phase", "operator": "is", "values": ["full"]}],
        [{"property": "remote_ip", "operator": "is_in", "values": ["10.0.0.0/8"]}],
        [
            {
                "property": "current_time",
                "operator": "is_in_day_of_week_time_ranges",
                "values": ["M/25:00-26:00/UTC"],
            }
        ],
        [
            {"property": "client_verified", "operator": "is", "values": ["true"]},
            {"property": "client_verified", "operator": "is", "values": ["true"]},
        ],
    ],
)
async def test_policy_bad_conditions_are_422(h, tenant, conditions):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant)
    response = await tenant.http.post(
        "/v1/policies",
        json={"group_id": group["id"], "resource_id": resource["id"], "conditions": conditions},
    )
    assert "conditions" in h.assert_problem(response, 422)["detail"]


async def test_policy_with_unknown_references_is_404(h, tenant):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant)
    for body in (
        {"group_id": str(uuid.uuid4()), "resource_id": resource["id"]},
        {"group_id": group["id"], "resource_id": str(uuid.uuid4())},
    ):
        h.assert_problem(await tenant.http.post("/v1/policies", json=body), 404)


async def test_deleting_a_resource_or_group_deletes_its_policies(h, tenant):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant)
    policy = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    await tenant.http.delete(f"/v1/resources/{resource['id']}")
    h.assert_problem(await tenant.http.get(f"/v1/policies/{policy['id']}"), 404)


# --------------------------------------------------------------------- clients


async def test_clients_list_get_verify_delete(h, tenant, api_pool):
    actor = await h.make_actor(tenant)
    client = await h.make_client(api_pool, tenant, actor["id"])
    other = await h.make_client(api_pool, tenant, tenant.actor_id, "dev-2")
    got = (await tenant.http.get(f"/v1/clients/{client.id}")).json()
    assert got["actor_id"] == actor["id"]
    assert ipaddress.IPv4Address(got["ipv4"]) in ipaddress.IPv4Network("100.64.0.0/11")
    assert ipaddress.IPv6Address(got["ipv6"]) in ipaddress.IPv6Network("fd00:2021:1111::/107")
    assert got["verified_at"] is None
    assert got["last_seen_remote_ip"] == "198.51.100.7"
    mine = (await tenant.http.get("/v1/clients", params={"actor_id": actor["id"]})).json()
    assert [c["id"] for c in mine["data"]] == [str(client.id)]
    everything = (await tenant.http.get("/v1/clients")).json()["data"]
    assert {c["id"] for c in everything} == {str(client.id), str(other.id)}
    verified = await tenant.http.post(f"/v1/clients/{client.id}/verify")
    assert verified.json()["verified_at"] is not None
    unverified = await tenant.http.post(f"/v1/clients/{client.id}/unverify")
    assert unverified.json()["verified_at"] is None
    assert (await tenant.http.delete(f"/v1/clients/{client.id}")).status_code == 204
    h.assert_problem(await tenant.http.get(f"/v1/clients/{client.id}"), 404)
    h.assert_problem(await tenant.http.post(f"/v1/clients/{client.id}/verify"), 404)


# ------------------------------------------------------------ lists and errors


async def test_pagination_walks_every_row_once(h, tenant):
    made = [await h.make_site(tenant) for _ in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"page_cursor": cursor} if cursor else {})
        body = (await tenant.http.get("/v1/sites", params=params)).json()
        assert body["metadata"]["limit"] == 3
        assert body["metadata"]["count"] == len(body["data"]) <= 3
        seen += [s["id"] for s in body["data"]]
        pages += 1
        cursor = body["metadata"]["next_page_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [s["id"] for s in made]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"page_cursor": "garbage!"},
        {"page_cursor": "MjAyNi0xMS0yNXxub3QtYS11dWlk"},
    ],
)
async def test_bad_page_parameters_are_422(h, tenant, params):
    h.assert_problem(await tenant.http.get("/v1/actors", params=params), 422)


async def test_unknown_route_and_method_are_problems(h, tenant):
    h.assert_problem(await tenant.http.get("/v1/nothing-here"), 404)
    h.assert_problem(await tenant.http.put("/v1/account"), 405)
    h.assert_problem(await tenant.http.get("/v1/actors/not-a-uuid"), 422)


async def test_invalid_json_is_422(h, tenant):
    response = await tenant.http.post(
        "/v1/groups", content=b"{not json", headers={"content-type": "application/json"}
    )
    h.assert_problem(response, 422)


async def test_openapi_and_docs_are_served(app, h):
    async with h.http_client(app) as anon:
        spec = await anon.get("/openapi.json")
        docs = await anon.get("/docs")
    assert spec.status_code == 200
    assert "/v1/policies/evaluate" in spec.json()["paths"]
    assert docs.status_code == 200


async def test_conditions_and_filters_come_back_in_the_documented_key_order(h, tenant):
    """jsonb stores keys in its own order; the API answers as documented."""
    site = await h.make_site(tenant)
    resource = await h.make_resource(
        tenant, site["id"], filters=[{"ports": ["443"], "protocol": "tcp"}]
    )
    group = await h.make_group(tenant)
    await tenant.create(
        "/v1/policies",
        {
            "group_id": group["id"],
            "resource_id": resource["id"],
            "conditions": [{"values": ["DE"], "operator": "is_in", "property": "remote_country"}],
        },
    )
    got_resource = (await tenant.http.get(f"/v1/resources/{resource['id']}")).json()
    assert [list(f) for f in got_resource["filters"]] == [["protocol", "ports"]]
    listed = (await tenant.http.get("/v1/policies", params={"group_id": group["id"]})).json()
    assert [list(c) for c in listed["data"][0]["conditions"]] == [
        ["property", "operator", "values"]
    ]
