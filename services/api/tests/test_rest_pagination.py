"""Every list route pages the same way: ``data`` + ``metadata`` and an opaque
keyset cursor that visits each row once (issue 2, item 14)."""

from __future__ import annotations

import pytest


def _list_routes(app) -> list[str]:
    spec = app.openapi()
    routes = []
    for path, item in spec["paths"].items():
        get = item.get("get")
        if get is None:
            continue
        ok = get["responses"].get("200", {})  # redirects (sign-in) have no 200
        schema = ok.get("content", {}).get("application/json", {}).get("schema", {})
        ref = schema.get("$ref", "")
        if ref.rsplit("/", 1)[-1].startswith("Page_"):
            routes.append(path)
    return sorted(routes)


def test_list_routes_are_the_expected_ones(app):
    assert _list_routes(app) == [
        "/v1/actors",
        "/v1/actors/{actor_id}/client_tokens",
        "/v1/audit_log",
        "/v1/auth_providers",
        "/v1/clients",
        "/v1/groups",
        "/v1/groups/{group_id}/members",
        "/v1/policies",
        "/v1/resources",
        "/v1/sites",
        "/v1/sites/{site_id}/gateway_tokens",
        "/v1/sites/{site_id}/gateways",
        "/v1/tokens",
    ]


@pytest.fixture
async def populated(h, tenant, api_pool):
    """Three or more rows behind every list route."""
    service = await h.make_actor(tenant, "service_account")
    group = await h.make_group(tenant)
    site = await h.make_site(tenant)
    actors = [service] + [await h.make_actor(tenant) for _ in range(2)]
    await tenant.http.put(
        f"/v1/groups/{group['id']}/members", json={"actor_ids": [a["id"] for a in actors]}
    )
    for _ in range(3):
        await tenant.create(f"/v1/actors/{service['id']}/client_tokens", {})
        await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {})
        await h.make_group(tenant)
        await h.make_site(tenant)
        await tenant.create(
            "/v1/auth_providers",
            {"name": f"idp-{_}", "issuer": "https://idp.example.com", "client_id": "zg"},
        )
    for i in range(3):
        await h.make_gateway(api_pool, tenant, site["id"], f"gw-{i}")
        await h.make_client(api_pool, tenant, service["id"], f"dev-{i}")
        resource = await h.make_resource(tenant, site["id"], address=f"10.{i}.0.0/16")
        await tenant.create(
            "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
        )
    return {"actor_id": service["id"], "group_id": group["id"], "site_id": site["id"]}


async def test_every_list_route_pages_through_all_rows(app, tenant, populated):
    for template in _list_routes(app):
        path = template.format(**populated)
        everything = (await tenant.http.get(path, params={"limit": 500})).json()
        assert everything["metadata"]["next_page_cursor"] is None
        total = [row["id"] for row in everything["data"]]
        assert len(total) >= 3, path
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"page_cursor": cursor} if cursor else {})
            response = await tenant.http.get(path, params=params)
            assert response.status_code == 200, f"{path}: {response.text}"
            page = response.json()
            assert set(page) == {"data", "metadata"}
            assert page["metadata"]["limit"] == 2
            assert page["metadata"]["count"] == len(page["data"])
            seen += [row["id"] for row in page["data"]]
            cursor = page["metadata"]["next_page_cursor"]
            if cursor is None:
                break
            assert len(page["data"]) == 2
        assert seen == total, path
