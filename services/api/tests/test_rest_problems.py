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


def _field_problem(h, response, loc: list[str], *words: str) -> dict:
    """A 422 that names the field (``loc``) and says what is wrong, in ``detail``
    and in ``errors[]`` (RFC 9457 extension, pydantic's shape)."""
    body = h.assert_problem(response, 422)
    assert body["errors"], body
    for item in body["errors"]:
        assert isinstance(item["loc"], list), body
        assert isinstance(item["msg"], str), body
        assert item["msg"], body
    assert loc in [item["loc"] for item in body["errors"]], body
    assert body["detail"].startswith(".".join(loc[:2]) + ":") or body["detail"].startswith(
        loc[-1] + ":"
    ), body
    assert "errors.pydantic.dev" not in body["detail"]
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    return body


async def test_every_422_names_the_field_and_the_problem(h, tenant):
    """Issue 8: ``?ip=notanip`` answered only "For further information visit
    https://errors.pydantic.dev/..." and a NUL in a name "a value is out of range"."""
    http = tenant.http
    _field_problem(
        h, await http.get("/v1/relays/nearest", params={"ip": "notanip"}), ["query", "ip"], "IP"
    )
    _field_problem(
        h, await http.get("/v1/relays/nearest", params={"lat": 10}), ["query"], "lat and lon"
    )
    _field_problem(
        h, await http.get("/v1/relays/nearest", params={"count": 99}), ["query", "count"], "8"
    )
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    group = await h.make_group(tenant)
    actor = await h.make_actor(tenant, "service_account")
    nul = "a\x00b"
    for method, path, body, loc in [
        ("POST", "/v1/sites", {"name": nul}, ["body", "name"]),
        ("PATCH", f"/v1/sites/{site['id']}", {"name": nul}, ["body", "name"]),
        ("POST", "/v1/groups", {"name": nul}, ["body", "name"]),
        ("POST", "/v1/actors", {"type": "account_user", "name": nul}, ["body", "name"]),
        (
            "POST",
            "/v1/actors",
            {"type": "account_user", "name": "x", "email": "a\x00@b.test"},
            ["body", "email"],
        ),
        ("PATCH", f"/v1/resources/{resource['id']}", {"name": nul}, ["body", "name"]),
        (
            "PATCH",
            f"/v1/resources/{resource['id']}",
            {"address_description": nul},
            ["body", "address_description"],
        ),
        (
            "POST",
            "/v1/policies",
            {"group_id": group["id"], "resource_id": resource["id"], "description": nul},
            ["body", "description"],
        ),
        ("POST", "/v1/tokens", {"name": nul}, ["body", "name"]),
        ("POST", f"/v1/actors/{actor['id']}/client_tokens", {"name": nul}, ["body", "name"]),
        ("POST", f"/v1/sites/{site['id']}/gateway_tokens", {"name": nul}, ["body", "name"]),
    ]:
        response = await http.request(method, path, json=body)
        _field_problem(h, response, loc, "NUL")
    # The service's own checks name their field too.
    _field_problem(
        h,
        await http.patch(f"/v1/resources/{resource['id']}", json={"address": "10.0.0.0/33"}),
        ["body", "address"],
        "prefix",
    )
    _field_problem(
        h,
        await http.patch(f"/v1/resources/{resource['id']}", json={"name": None}),
        ["body", "name"],
        "null",
    )
    _field_problem(
        h,
        await http.post(
            "/v1/policies",
            json={
                "group_id": group["id"],
                "resource_id": resource["id"],
                "conditions": [{"property": "nope"}],
            },
        ),
        ["body", "conditions"],
    )
    _field_problem(
        h,
        await http.get("/v1/sites", params={"page_cursor": "garbage"}),
        ["query", "page_cursor"],
        "cursor",
    )
    _field_problem(h, await http.get("/v1/resources/not-a-uuid"), ["path", "resource_id"], "UUID")
    not_json = await http.post(
        "/v1/sites", content=b"{", headers={"content-type": "application/json"}
    )
    assert h.assert_problem(not_json, 422)["errors"][0]["loc"][0] == "body"
    not_utf8 = await http.post(
        "/v1/sites", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    first = h.assert_problem(not_utf8, 422)["errors"][0]
    assert (first["type"], first["loc"][0]) == ("json_invalid", "body")
