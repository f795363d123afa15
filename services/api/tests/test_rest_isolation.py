"""Cross-account isolation on every route of the OpenAPI (issue 2, item 9).

Account A owns one object of every kind. Account B's admin token is used on
every route with A's ids (in the path, or in the body for routes without ids
in the path) and must get 404, or, on list routes, must see none of A's ids.
The route table must cover the OpenAPI exactly: a new route without a case
fails :func:`test_every_route_has_an_isolation_case`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

#: Routes that carry no account data: health, and the relay registry's answer
#: (the same for every account; admin-only through the usual 401/403).
PUBLIC_ROUTES = {("GET", "/healthz"), ("GET", "/v1/relays/nearest")}
#: Sign-in legs that name no account object: the callback finds its sign-in by
#: state, the token exchange by one-time code, sign-out revokes the bearer itself
#: (their refusals are tested in test_sign_in.py).
SIGN_IN_ROUTES = {
    ("GET", "/v1/sign_in/callback"),
    ("POST", "/v1/sign_in/token"),
    ("DELETE", "/v1/sign_in/token"),
}
#: A loopback redirect and an S256 challenge, so sign-in start reaches the lookup.
SIGN_IN_PARAMS = {
    "redirect_uri": "http://127.0.0.1:53682/callback",
    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    #: body built from A's ids; None: no body
    body: Callable[[dict[str, str]], Any] | None = None
    #: "404": B gets 404; "list": B gets 200 without any of A's ids
    expect: str = "404"
    params: Callable[[dict[str, str]], dict[str, str]] | None = None


CASES = [
    Case("GET", "/v1/account", expect="list"),
    Case("GET", "/v1/actors", expect="list"),
    Case(
        "POST",
        "/v1/actors",
        lambda a: {"type": "account_user", "name": "x", "email": a["actor_email"]},
        expect="list",
    ),
    Case("GET", "/v1/actors/{actor_id}"),
    Case("PATCH", "/v1/actors/{actor_id}", lambda a: {"name": "pwned"}),
    Case("DELETE", "/v1/actors/{actor_id}"),
    Case("POST", "/v1/actors/{actor_id}/disable"),
    Case("POST", "/v1/actors/{actor_id}/enable"),
    Case("POST", "/v1/actors/{actor_id}/client_tokens", lambda a: {}),
    Case("GET", "/v1/actors/{actor_id}/client_tokens"),
    Case("GET", "/v1/groups", expect="list"),
    Case("POST", "/v1/groups", lambda a: {"name": a["group_name"]}, expect="list"),
    Case("GET", "/v1/groups/{group_id}"),
    Case("PATCH", "/v1/groups/{group_id}", lambda a: {"name": "pwned"}),
    Case("DELETE", "/v1/groups/{group_id}"),
    Case("GET", "/v1/groups/{group_id}/members"),
    Case("PUT", "/v1/groups/{group_id}/members", lambda a: {"actor_ids": []}),
    Case("GET", "/v1/sites", expect="list"),
    Case("POST", "/v1/sites", lambda a: {"name": a["site_name"]}, expect="list"),
    Case("GET", "/v1/sites/{site_id}"),
    Case("PATCH", "/v1/sites/{site_id}", lambda a: {"name": "pwned"}),
    Case("DELETE", "/v1/sites/{site_id}"),
    Case("POST", "/v1/sites/{site_id}/gateway_tokens", lambda a: {}),
    Case("GET", "/v1/sites/{site_id}/gateway_tokens"),
    Case("DELETE", "/v1/sites/{site_id}/gateway_tokens/{token_id}"),
    Case("GET", "/v1/sites/{site_id}/gateways"),
    Case("GET", "/v1/resources", expect="list", params=lambda a: {"site_id": a["site_id"]}),
    Case(
        "POST",
        "/v1/resources",
        lambda a: {"type": "ip", "address": "192.0.2.1", "name": "x", "site_id": a["site_id"]},
    ),
    Case("GET", "/v1/resources/{resource_id}"),
    Case("PATCH", "/v1/resources/{resource_id}", lambda a: {"name": "pwned"}),
    Case("DELETE", "/v1/resources/{resource_id}"),
    Case("GET", "/v1/policies", expect="list", params=lambda a: {"resource_id": a["resource_id"]}),
    Case(
        "POST",
        "/v1/policies",
        lambda a: {"group_id": a["group_id"], "resource_id": a["resource_id"]},
    ),
    Case(
        "POST",
        "/v1/policies/evaluate",
        lambda a: {"actor_id": a["actor_id"], "resource_id": a["resource_id"]},
    ),
    Case("GET", "/v1/policies/{policy_id}"),
    Case("PATCH", "/v1/policies/{policy_id}", lambda a: {"description": "pwned"}),
    Case("DELETE", "/v1/policies/{policy_id}"),
    Case("POST", "/v1/policies/{policy_id}/disable"),
    Case("POST", "/v1/policies/{policy_id}/enable"),
    Case("GET", "/v1/clients", expect="list", params=lambda a: {"actor_id": a["actor_id"]}),
    Case("GET", "/v1/clients/{client_id}"),
    Case("DELETE", "/v1/clients/{client_id}"),
    Case("POST", "/v1/clients/{client_id}/verify"),
    Case("POST", "/v1/clients/{client_id}/unverify"),
    Case("GET", "/v1/tokens", expect="list"),
    Case("POST", "/v1/tokens", lambda a: {"actor_id": a["api_client_id"]}),
    Case("GET", "/v1/tokens/{token_id}"),
    Case("DELETE", "/v1/tokens/{token_id}"),
    Case("GET", "/v1/auth_providers", expect="list"),
    Case(
        "POST",
        "/v1/auth_providers",
        lambda a: {"name": a["auth_provider_name"], "issuer": "https://b.test", "client_id": "b"},
        expect="list",
    ),
    Case("GET", "/v1/auth_providers/{auth_provider_id}"),
    Case("PATCH", "/v1/auth_providers/{auth_provider_id}", lambda a: {"name": "pwned"}),
    Case("DELETE", "/v1/auth_providers/{auth_provider_id}"),
    # B's account slug with A's provider: no such provider in B's account.
    Case(
        "GET",
        "/v1/sign_in/{account_slug}",
        params=lambda a: {**SIGN_IN_PARAMS, "provider": a["auth_provider_id"]},
    ),
    Case("GET", "/v1/audit_log", expect="list", params=lambda a: {"actor_id": a["actor_id"]}),
]
# Extra body-reference cases on routes already listed (a second id in the body).
EXTRA_CASES = [
    Case(
        "POST",
        "/v1/policies/evaluate",
        lambda a: {"client_id": a["client_id"], "resource_id": a["resource_id"]},
    ),
    Case("PUT", "/v1/groups/{group_id}/members", lambda a: {"actor_ids": [a["actor_id"]]}),
    Case("POST", "/v1/sites/{site_id}/gateway_tokens", lambda a: {"name": "x"}),
]


def test_every_route_has_an_isolation_case(app):
    spec = app.openapi()
    routes = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    covered = {(c.method, c.path) for c in CASES}
    assert routes - PUBLIC_ROUTES - SIGN_IN_ROUTES == covered


@pytest.fixture
async def world(h, make_tenant, api_pool) -> tuple[Any, Any, dict[str, str]]:
    """Account A with one object of each kind, and account B."""
    a, b = await make_tenant(), await make_tenant()
    actor = await h.make_actor(a, "service_account", email=f"{uuid.uuid4().hex[:8]}@a.test")
    api_client = await h.make_actor(a, "api_client")
    group = await h.make_group(a)
    await a.http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [actor["id"]]})
    site = await h.make_site(a)
    gateway_token = await a.create(f"/v1/sites/{site['id']}/gateway_tokens", {})
    await h.make_gateway(api_pool, a, site["id"])
    resource = await h.make_resource(a, site["id"])
    policy = await a.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    client = await h.make_client(api_pool, a, actor["id"])
    await a.create(f"/v1/actors/{actor['id']}/client_tokens", {})
    api_token = await a.create("/v1/tokens", {"name": "a's"})
    provider = await a.create(
        "/v1/auth_providers",
        {"name": "a-idp", "issuer": "https://idp.a.test", "client_id": "a", "client_secret": "s"},
    )
    b_slug = (await b.http.get("/v1/account")).json()["slug"]
    ids = {
        "account_id": str(a.account_id),
        "actor_id": actor["id"],
        "actor_email": actor["email"],
        "api_client_id": api_client["id"],
        "group_id": group["id"],
        "group_name": group["name"],
        "site_id": site["id"],
        "site_name": site["name"],
        "gateway_token_id": gateway_token["id"],
        "resource_id": resource["id"],
        "policy_id": policy["id"],
        "client_id": str(client.id),
        "api_token_id": api_token["id"],
        "auth_provider_id": provider["id"],
        "auth_provider_name": provider["name"],
        "b_slug": b_slug,
    }
    return a, b, ids


def _fill(path: str, ids: dict[str, str]) -> str:
    token_id = ids["gateway_token_id"] if "gateway_tokens" in path else ids["api_token_id"]
    return path.format(
        actor_id=ids["actor_id"],
        group_id=ids["group_id"],
        site_id=ids["site_id"],
        resource_id=ids["resource_id"],
        policy_id=ids["policy_id"],
        client_id=ids["client_id"],
        token_id=token_id,
        auth_provider_id=ids["auth_provider_id"],
        account_slug=ids["b_slug"],
    )


def _all_ids(ids: dict[str, str]) -> set[str]:
    return {v for k, v in ids.items() if k.endswith("_id") and k != "account_id"} | {
        ids["account_id"]
    }


async def test_account_b_gets_404_for_account_a_objects_everywhere(h, world):
    a, b, ids = world
    secret_ids = _all_ids(ids) - {ids["account_id"]}
    for case in CASES + EXTRA_CASES:
        path = _fill(case.path, ids)
        body = case.body(ids) if case.body else None
        params = case.params(ids) if case.params else None
        response = await b.http.request(case.method, path, json=body, params=params)
        where = f"{case.method} {case.path}"
        if case.expect == "404":
            assert response.status_code == 404, f"{where}: {response.status_code} {response.text}"
            h.assert_problem(response, 404)
        else:
            assert response.status_code in (200, 201), f"{where}: {response.text}"
            leaked = [i for i in secret_ids | {ids["account_id"]} if i in response.text]
            assert leaked == [], f"{where} leaked {leaked}"
    # A's objects are untouched.
    for path in (
        f"/v1/actors/{ids['actor_id']}",
        f"/v1/groups/{ids['group_id']}",
        f"/v1/sites/{ids['site_id']}",
        f"/v1/resources/{ids['resource_id']}",
        f"/v1/policies/{ids['policy_id']}",
        f"/v1/clients/{ids['client_id']}",
        f"/v1/tokens/{ids['api_token_id']}",
        f"/v1/auth_providers/{ids['auth_provider_id']}",
    ):
        response = await a.http.get(path)
        assert response.status_code == 200, path
    assert (await a.http.get(f"/v1/actors/{ids['actor_id']}")).json()["disabled_at"] is None
    assert (await a.http.get(f"/v1/policies/{ids['policy_id']}")).json()["disabled_at"] is None
    members = (await a.http.get(f"/v1/groups/{ids['group_id']}/members")).json()["data"]
    assert [m["id"] for m in members] == [ids["actor_id"]]
    gw_tokens = (await a.http.get(f"/v1/sites/{ids['site_id']}/gateway_tokens")).json()["data"]
    assert [t["id"] for t in gw_tokens] == [ids["gateway_token_id"]]


async def test_own_objects_cannot_be_pointed_at_another_accounts_ids(h, world):
    """B changing B's own objects to reference A's ids (in bodies and filters) gets
    404 or an empty list, never 403, and B's objects stay as they were."""
    _, b, ids = world
    site = await h.make_site(b)
    resource = await h.make_resource(b, site["id"])
    group = await h.make_group(b)
    actor = await h.make_actor(b)
    policy = await b.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    attempts = [
        ("PATCH", f"/v1/policies/{policy['id']}", {"group_id": ids["group_id"]}),
        ("PATCH", f"/v1/policies/{policy['id']}", {"resource_id": ids["resource_id"]}),
        ("PATCH", f"/v1/resources/{resource['id']}", {"site_id": ids["site_id"]}),
        ("POST", "/v1/policies", {"group_id": group["id"], "resource_id": ids["resource_id"]}),
        ("POST", "/v1/policies", {"group_id": ids["group_id"], "resource_id": resource["id"]}),
        ("PUT", f"/v1/groups/{group['id']}/members", {"actor_ids": [actor["id"], ids["actor_id"]]}),
        (
            "POST",
            "/v1/policies/evaluate",
            {"actor_id": actor["id"], "resource_id": ids["resource_id"]},
        ),
        (
            "POST",
            "/v1/policies/evaluate",
            {"actor_id": ids["actor_id"], "resource_id": resource["id"]},
        ),
        ("POST", "/v1/tokens", {"actor_id": ids["api_client_id"]}),
    ]
    for method, path, body in attempts:
        response = await b.http.request(method, path, json=body)
        h.assert_problem(response, 404)
    for path, params in [
        ("/v1/policies", {"group_id": ids["group_id"]}),
        ("/v1/policies", {"resource_id": ids["resource_id"]}),
        ("/v1/resources", {"site_id": ids["site_id"]}),
        ("/v1/clients", {"actor_id": ids["actor_id"]}),
    ]:
        response = await b.http.get(path, params=params)
        assert response.status_code == 200
        assert response.json()["data"] == []
    assert (await b.http.get(f"/v1/policies/{policy['id']}")).json() == policy
    assert (await b.http.get(f"/v1/resources/{resource['id']}")).json() == resource
    members = (await b.http.get(f"/v1/groups/{group['id']}/members")).json()["data"]
    assert members == []
