"""The audit log (issue 12, item 8): every change made through the REST API, in
the change's transaction, with who, what, when, from where and the request id;
and never a secret.

The walker below makes one change per changing route of the OpenAPI and fails
when a route has no case (as the isolation walker does).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: Changing routes whose audit rows are checked in the sign-in tests below.
SIGN_IN_ROUTES = {("POST", "/v1/sign_in/token"), ("DELETE", "/v1/sign_in/token")}
#: A POST that changes nothing, so writes no row.
READ_ONLY_POSTS = {("POST", "/v1/policies/evaluate")}
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    body: Callable[[dict[str, str]], Any] | None = None
    #: the name under which the created object's id is kept for later steps
    creates: str | None = None
    audited: bool = True


STEPS = [
    Step("POST", "/v1/actors", lambda i: {"type": "service_account", "name": "sa"}, "actor_id"),
    Step("PATCH", "/v1/actors/{actor_id}", lambda i: {"name": "sa2"}),
    Step("POST", "/v1/actors/{actor_id}/disable"),
    Step("POST", "/v1/actors/{actor_id}/enable"),
    Step("POST", "/v1/actors/{actor_id}/client_tokens", lambda i: {}, "client_token_id"),
    Step("POST", "/v1/groups", lambda i: {"name": "g"}, "group_id"),
    Step("PATCH", "/v1/groups/{group_id}", lambda i: {"name": "g2"}),
    Step("PUT", "/v1/groups/{group_id}/members", lambda i: {"actor_ids": [i["actor_id"]]}),
    Step("POST", "/v1/sites", lambda i: {"name": "s"}, "site_id"),
    Step("PATCH", "/v1/sites/{site_id}", lambda i: {"name": "s2"}),
    Step("POST", "/v1/sites/{site_id}/gateway_tokens", lambda i: {}, "token_id"),
    Step("DELETE", "/v1/sites/{site_id}/gateway_tokens/{token_id}"),
    Step(
        "POST",
        "/v1/resources",
        lambda i: {"type": "ip", "address": "192.0.2.1", "name": "r", "site_id": i["site_id"]},
        "resource_id",
    ),
    Step("PATCH", "/v1/resources/{resource_id}", lambda i: {"name": "r2"}),
    Step(
        "POST",
        "/v1/policies",
        lambda i: {"group_id": i["group_id"], "resource_id": i["resource_id"]},
        "policy_id",
    ),
    Step("PATCH", "/v1/policies/{policy_id}", lambda i: {"description": "d"}),
    Step("POST", "/v1/policies/{policy_id}/disable"),
    Step("POST", "/v1/policies/{policy_id}/enable"),
    Step(
        "POST",
        "/v1/policies/evaluate",
        lambda i: {"actor_id": i["actor_id"], "resource_id": i["resource_id"]},
        audited=False,
    ),
    Step("POST", "/v1/clients/{client_id}/verify"),
    Step("POST", "/v1/clients/{client_id}/unverify"),
    Step("DELETE", "/v1/clients/{client_id}"),
    Step("POST", "/v1/tokens", lambda i: {"name": "t"}, "token_id"),
    Step("DELETE", "/v1/tokens/{token_id}"),
    Step(
        "POST",
        "/v1/auth_providers",
        lambda i: {
            "name": "idp",
            "issuer": "https://idp.example.com",
            "client_id": "c",
            "client_secret": "audit-me-not-secret",
        },
        "auth_provider_id",
    ),
    Step("PATCH", "/v1/auth_providers/{auth_provider_id}", lambda i: {"client_secret": "n3w"}),
    Step("DELETE", "/v1/auth_providers/{auth_provider_id}"),
    Step("DELETE", "/v1/policies/{policy_id}"),
    Step("DELETE", "/v1/resources/{resource_id}"),
    Step("DELETE", "/v1/groups/{group_id}"),
    Step("DELETE", "/v1/sites/{site_id}"),
    Step("DELETE", "/v1/actors/{actor_id}"),
]


def test_every_changing_route_has_an_audit_case(app):
    spec = app.openapi()
    changing = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method.upper() in CHANGING
    }
    assert changing - SIGN_IN_ROUTES == {(s.method, s.path) for s in STEPS}
    assert {(s.method, s.path) for s in STEPS if not s.audited} == READ_ONLY_POSTS


async def _entries(tenant: Any, **params: str) -> list[dict[str, Any]]:
    response = await tenant.http.get("/v1/audit_log", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_every_change_is_audited_with_who_what_when_where(h, app, tenant, api_pool):
    ids: dict[str, str] = {}
    token_id = tenant.token.split(".", 1)[0]
    seen_ids: list[str] = []
    for step in STEPS:
        if step.path.startswith("/v1/clients") and "client_id" not in ids:
            client = await h.make_client(api_pool, tenant, ids["actor_id"])
            ids["client_id"] = str(client.id)
        path = step.path.format(**ids)
        request_id = f"audit-{uuid.uuid4().hex}"
        before = datetime.now(UTC)
        async with h.http_client(app, tenant.token) as http:
            response = await http.request(
                step.method,
                path,
                json=step.body(ids) if step.body else None,
                headers={"X-Request-ID": request_id},
            )
        where = f"{step.method} {step.path}"
        assert response.status_code < 300, f"{where}: {response.text}"
        assert response.headers["x-request-id"] == request_id
        entries = await _entries(tenant, request_id=request_id)
        if not step.audited:
            assert entries == [], where
            continue
        assert len(entries) == 1, where
        entry = entries[0]
        seen_ids.append(entry["id"])
        assert entry["actor_id"] == str(tenant.actor_id), where
        assert entry["token_id"] == token_id, where
        assert entry["method"] == step.method, where
        assert entry["route"] == step.path, where
        assert entry["remote_ip"] == "127.0.0.1", where
        assert entry["request_id"] == request_id
        assert entry["action"], where
        when = datetime.fromisoformat(entry["created_at"])
        assert before - timedelta(seconds=1) <= when <= datetime.now(UTC), where
        for name in ("actor_id", "group_id", "site_id", "resource_id", "policy_id"):
            if "{" + name + "}" in step.path:
                assert entry["target_ids"][name] == ids[name], where
        if step.creates:
            ids[step.creates] = response.json()["id"]
            assert ids[step.creates] in entry["target_ids"].values(), where
    # One row per audited step, in order, with distinct actions per route.
    listed = [e["id"] for e in await _entries(tenant) if e["id"] in seen_ids]
    assert listed == seen_ids
    actions = {e["action"] for e in await _entries(tenant)}
    assert {"create_site", "delete_site", "revoke_token", "create_auth_provider"} <= actions


async def test_a_failed_change_leaves_no_audit_row(h, tenant):
    site = await h.make_site(tenant)
    request_id = f"audit-{uuid.uuid4().hex}"
    response = await tenant.http.post(
        "/v1/sites", json={"name": site["name"]}, headers={"X-Request-ID": request_id}
    )
    h.assert_problem(response, 409)
    assert await _entries(tenant, request_id=request_id) == []
    # A request id that is not a short token is replaced by one of ours.
    response = await tenant.http.post(
        "/v1/sites", json={"name": "other"}, headers={"X-Request-ID": "bad id with spaces"}
    )
    assert response.headers["x-request-id"] != "bad id with spaces"
    assert len(await _entries(tenant, request_id=response.headers["x-request-id"])) == 1


async def test_audit_log_is_admin_only_and_per_account(h, app, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    await h.make_site(a)
    assert all(e["actor_id"] != str(a.actor_id) for e in await _entries(b))
    async with h.http_client(app) as anon:
        h.assert_problem(await anon.get("/v1/audit_log"), 401)


async def test_sign_in_is_audited_and_no_secret_reaches_the_log(
    h, app, tenant, oidc_provider, api_pool, caplog
):
    """Sign-in, token issue and sign-out write audit rows; no token, code, verifier,
    state or client secret appears in the audit log, the API's answers about it,
    or the api's log lines."""
    caplog.set_level(logging.DEBUG)
    secret = h.CONFIDENTIAL_SECRET
    provider = await h.make_provider(
        tenant,
        oidc_provider.issuer,
        client_id="zg-confidential",
        client_secret=secret,
        allow_jit_users=True,
    )
    api_token = await tenant.create("/v1/tokens", {"name": "ci"})
    flow = await h.sign_in(app, tenant.slug, provider["id"], login="jit-user@corp.test")
    request_id = f"audit-{uuid.uuid4().hex}"
    async with h.http_client(app) as cli:
        issued = (
            await cli.post(
                "/v1/sign_in/token",
                json=flow.exchange_body(),
                headers={"X-Request-ID": request_id},
            )
        ).json()
    async with h.http_client(app, issued["token"]) as client:
        assert (await client.delete("/v1/sign_in/token")).status_code == 204
    entries = await _entries(tenant)
    by_action = {e["action"]: e for e in entries}
    assert by_action["sign_in_callback"]["target_ids"]["actor_id"] == issued["actor_id"]
    assert by_action["sign_in_token"]["request_id"] == request_id
    assert by_action["sign_in_token"]["actor_id"] == issued["actor_id"]
    assert by_action["sign_in_token"]["target_ids"]["token_id"] == issued["token_id"]
    assert by_action["sign_out"]["token_id"] == issued["token_id"]
    async with api_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT to_jsonb(a)::text AS row FROM audit_log a WHERE account_id = $1",
            tenant.account_id,
        )
    stored = "\n".join(r["row"] for r in rows)
    answered = json.dumps(entries)
    # Messages and every extra field of every record, at DEBUG and up.
    logged = caplog.text + "\n".join(str(vars(r)) for r in caplog.records)
    assert "signed in" in logged
    secrets = {
        "client secret": secret,
        "api token": api_token["token"],
        "api token secret": api_token["token"].split(".", 1)[1],
        "client token": issued["token"],
        "client token secret": issued["token"].split(".", 1)[1],
        "one-time code": flow.params["code"],
        "pkce verifier": flow.verifier,
        "bootstrap token": tenant.token,
    }
    for name, value in secrets.items():
        assert value not in stored, f"{name} in the audit table"
        assert value not in answered, f"{name} in GET /v1/audit_log"
        assert value not in logged, f"{name} in the log"
