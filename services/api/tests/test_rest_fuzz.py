"""Hypothesis against the REST bodies: any JSON (or non-JSON) body gets a
2xx or a problem+json 4xx, never a 500 (issue 2, item 21)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            "tcp",
            "icmp",
            "10.0.0.0/8",
            "*.example.com",
            "2026-11-25T10:00:00Z",
            "00000000-0000-0000-0000-000000000000",
            "is_in",
            "remote_ip",
            "DE",
        ]
    )
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _field_names(spec: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    ref = schema.get("$ref")
    if ref:
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return sorted(schema.get("properties", {}))


async def test_random_bodies_never_cause_a_server_error(app, h, tenant, api_pool):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant)
    actor = await h.make_actor(tenant, "service_account")
    policy = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    client = await h.make_client(api_pool, tenant, actor["id"])
    token = await tenant.create("/v1/tokens", {})
    provider = await tenant.create(
        "/v1/auth_providers",
        {"name": "idp", "issuer": "https://idp.example.com", "client_id": "zerogate"},
    )
    ids = {
        "auth_provider_id": provider["id"],
        "actor_id": actor["id"],
        "group_id": group["id"],
        "site_id": site["id"],
        "resource_id": resource["id"],
        "policy_id": policy["id"],
        "client_id": str(client.id),
        "token_id": token["id"],
    }
    spec = app.openapi()
    routes = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("post", "put", "patch"):
                routes.append((method.upper(), path.format(**ids), _field_names(spec, operation)))
    with_body = {(m, p) for m, p, fields in routes if fields}
    assert len(routes) >= 15
    # Real ids as values, so bodies also reach the services, not only validation.
    values = (
        JSON_VALUES
        | st.sampled_from(list(ids.values()))
        | st.lists(st.sampled_from(list(ids.values())), max_size=3)
    )

    @st.composite
    def requests(draw):
        method, path, fields = draw(st.sampled_from(routes))
        kind = draw(st.sampled_from(["shaped", "any", "raw"]))
        if kind == "raw":
            return method, path, draw(st.binary(max_size=64))
        if kind == "any" or not fields:
            return method, path, json.dumps(draw(JSON_VALUES)).encode()
        keys = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
        body = {k: draw(values) for k in keys}
        if draw(st.booleans()):
            body[draw(st.text(max_size=8))] = draw(JSON_SCALARS)
        return method, path, json.dumps(body).encode()

    loop = asyncio.get_running_loop()
    failures: list[str] = []

    async def send(method: str, path: str, content: bytes):
        return await tenant.http.request(
            method, path, content=content, headers={"content-type": "application/json"}
        )

    @settings(
        max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(requests())
    def check(request):
        method, path, content = request
        response = asyncio.run_coroutine_threadsafe(send(method, path, content), loop).result(30)
        if response.status_code >= 500:
            failures.append(f"{method} {path} {content!r} -> {response.status_code}")
        assert response.status_code < 500, response.text
        try:
            json.loads(content)
        except ValueError:
            if (method, path) in with_body:
                assert response.status_code == 422, response.text
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["status"] == response.status_code

    await asyncio.to_thread(check)
    assert failures == []
