"""Every error the REST API returns is RFC 9457 ``application/problem+json``:
our errors, validation, Starlette's own 404/405, database errors, and a crash
(issue 2, item 14)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pydantic import SecretStr

from zerogate.api.app import create_app
from zerogate.api.deps import PoolDep
from zerogate.api.settings import ApiSettings

SECRET_TEXT = "internal detail that must not leak"


@pytest.fixture
async def crashing(api_pool, database_url):
    """An app with two extra routes: one raises, one runs broken SQL."""
    settings = ApiSettings(database_url=SecretStr(database_url), nats_url=None)
    app = create_app(settings, pool=api_pool, bus=None, bus_handlers=False)

    @app.get("/v1/test-crash")
    async def crash() -> None:
        raise RuntimeError(SECRET_TEXT)

    @app.get("/v1/test-bad-sql")
    async def bad_sql(pool: PoolDep) -> None:
        async with pool.acquire() as conn:
            await conn.execute(f"SELECT * FROM no_such_table_{uuid.uuid4().hex}")

    # raise_app_exceptions=False: see the response a real server sends, as Starlette
    # re-raises after rendering so that the server logs the traceback.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


async def test_an_unexpected_error_is_a_500_problem_without_internals(h, crashing):
    for path in ("/v1/test-crash", "/v1/test-bad-sql"):
        response = await crashing.get(path)
        body = h.assert_problem(response, 500)
        assert body["detail"] == "internal error"
        assert body["instance"] == path
        assert SECRET_TEXT not in response.text
        assert "no_such_table" not in response.text


async def test_routing_and_validation_errors_are_problems(app, h, tenant):
    async with h.http_client(app) as anon:
        # Unknown routes are 404 with or without a token, before authentication.
        assert h.assert_problem(await anon.get("/v1/nothing-here"), 404)["instance"] == (
            "/v1/nothing-here"
        )
        h.assert_problem(await anon.get("/nothing"), 404)
        h.assert_problem(await anon.get("/v1/actors"), 401)
    method = await tenant.http.request("PATCH", "/v1/account")
    h.assert_problem(method, 405)
    assert method.headers["allow"] == "GET"
    h.assert_problem(await tenant.http.post("/v1/resources/evaluate"), 405)
    # Path, query and body validation.
    for response in (
        await tenant.http.get("/v1/resources/not-a-uuid"),
        await tenant.http.get("/v1/resources", params={"site_id": "nope"}),
        await tenant.http.post("/v1/sites", json={"name": ""}),
        await tenant.http.post("/v1/sites", json=["not", "an", "object"]),
        await tenant.http.post(
            "/v1/sites", content=b"\xff\xfe", headers={"content-type": "application/json"}
        ),
    ):
        body = h.assert_problem(response, 422)
        assert body["detail"]


async def test_conflicts_say_what_clashed(h, tenant):
    site = await h.make_site(tenant, "hq")
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant, "eng")
    await tenant.create("/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]})
    again = await tenant.http.post(
        "/v1/policies", json={"group_id": group["id"], "resource_id": resource["id"]}
    )
    detail = h.assert_problem(again, 409)["detail"]
    assert "policy" in detail
    assert "group and resource" in detail
    # Moving another policy onto the same (group, resource) pair is the same conflict.
    other = await h.make_resource(tenant, site["id"], address="10.7.0.0/16")
    moved = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": other["id"]}
    )
    clash = await tenant.http.patch(
        f"/v1/policies/{moved['id']}", json={"resource_id": resource["id"]}
    )
    assert "group and resource" in h.assert_problem(clash, 409)["detail"]
    assert (
        "site"
        in h.assert_problem(await tenant.http.post("/v1/sites", json={"name": "hq"}), 409)["detail"]
    )
    assert (
        "group"
        in h.assert_problem(await tenant.http.post("/v1/groups", json={"name": "eng"}), 409)[
            "detail"
        ]
    )
