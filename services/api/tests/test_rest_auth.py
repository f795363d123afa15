"""Authentication and authorisation of the admin REST API (issue 2, item 9)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from zerogate.api.tokens.repository import create_token


async def test_missing_token_is_401_with_bearer_challenge(app, h):
    async with h.http_client(app) as anon:
        response = await anon.get("/v1/account")
    h.assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-token",
        "Bearer 00000000-0000-0000-0000-000000000000.secret",
        "Bearer " + "x" * 5000,
    ],
)
async def test_malformed_or_unknown_tokens_are_401(app, h, header):
    async with h.http_client(app) as anon:
        response = await anon.get("/v1/actors", headers={"Authorization": header})
    h.assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_secret_for_a_real_token_id_is_401(app, h, tenant):
    token_id = tenant.token.split(".", 1)[0]
    async with h.http_client(app, f"{token_id}.{'A' * 43}") as forged:
        h.assert_problem(await forged.get("/v1/account"), 401)


async def test_expired_token_is_401(app, h, tenant, api_pool):
    async with api_pool.acquire() as conn:
        _, token = await create_token(
            conn,
            account_id=tenant.account_id,
            type="api",
            actor_id=tenant.actor_id,
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    async with h.http_client(app, token) as expired:
        h.assert_problem(await expired.get("/v1/account"), 401)


async def test_revoked_token_is_401(app, h, tenant):
    created = await tenant.create("/v1/tokens", {"name": "ci"})
    async with h.http_client(app, created["token"]) as other:
        assert (await other.get("/v1/account")).status_code == 200
        assert (await tenant.http.delete(f"/v1/tokens/{created['id']}")).status_code == 204
        h.assert_problem(await other.get("/v1/account"), 401)


async def test_client_and_gateway_tokens_do_not_open_the_rest_api(app, h, tenant):
    service = await h.make_actor(tenant, "service_account")
    client_token = await tenant.create(f"/v1/actors/{service['id']}/client_tokens", {})
    site = await h.make_site(tenant)
    gateway_token = await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {})
    for token in (client_token["token"], gateway_token["token"]):
        async with h.http_client(app, token) as agent:
            h.assert_problem(await agent.get("/v1/account"), 401)


@pytest.mark.parametrize("actor_type", ["account_user", "service_account"])
async def test_non_admin_actors_get_403_on_every_endpoint(app, h, tenant, api_pool, actor_type):
    actor = await h.make_actor(tenant, actor_type)
    async with api_pool.acquire() as conn:
        _, token = await create_token(
            conn,
            account_id=tenant.account_id,
            type="api",
            actor_id=uuid.UUID(actor["id"]),
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )
    async with h.http_client(app, token) as user:
        for method, path in [
            ("GET", "/v1/account"),
            ("GET", "/v1/actors"),
            ("POST", "/v1/groups"),
            ("GET", f"/v1/actors/{uuid.uuid4()}"),
            ("DELETE", f"/v1/policies/{uuid.uuid4()}"),
        ]:
            body = {"name": "x"} if method == "POST" else None
            h.assert_problem(await user.request(method, path, json=body), 403)


async def test_api_client_actor_may_use_the_api(app, h, tenant):
    bot = await h.make_actor(tenant, "api_client")
    created = await tenant.create("/v1/tokens", {"actor_id": bot["id"], "name": "terraform"})
    assert created["actor_id"] == bot["id"]
    assert created["type"] == "api"
    async with h.http_client(app, created["token"]) as robot:
        response = await robot.get("/v1/account")
    assert response.status_code == 200
    assert response.json()["id"] == str(tenant.account_id)


async def test_disabling_an_actor_kills_its_tokens_for_good(app, h, tenant):
    """Issue 8: a re-enabled actor got its old tokens back, while the README says
    disabling kills them. Enabling issues nothing: the actor needs a new token."""
    bot = await h.make_actor(tenant, "api_client")
    created = await tenant.create("/v1/tokens", {"actor_id": bot["id"]})
    async with h.http_client(app, created["token"]) as robot:
        assert (await robot.get("/v1/account")).status_code == 200
        assert (await tenant.http.post(f"/v1/actors/{bot['id']}/disable")).status_code == 200
        h.assert_problem(await robot.get("/v1/account"), 401)
        assert (await tenant.http.post(f"/v1/actors/{bot['id']}/enable")).status_code == 200
        h.assert_problem(await robot.get("/v1/account"), 401)
    listed = (await tenant.http.get("/v1/tokens")).json()["data"]
    assert created["id"] not in {t["id"] for t in listed}
    fresh = await tenant.create("/v1/tokens", {"actor_id": bot["id"]})
    async with h.http_client(app, fresh["token"]) as robot:
        assert (await robot.get("/v1/account")).status_code == 200


async def test_api_tokens_are_only_for_api_clients_or_the_caller(h, tenant):
    user = await h.make_actor(tenant, "account_user")
    response = await tenant.http.post("/v1/tokens", json={"actor_id": user["id"]})
    h.assert_problem(response, 422)


async def test_token_expiry_defaults_and_validation(h, tenant):
    created = await tenant.create("/v1/tokens", {})
    expires = datetime.fromisoformat(created["expires_at"])
    # Default lifetime: 90 days (ZG_API_TOKEN_TTL_DAYS).
    assert abs(expires - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=1)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    h.assert_problem(await tenant.http.post("/v1/tokens", json={"expires_at": past}), 422)
    naive = "2099-01-01T00:00:00"
    h.assert_problem(await tenant.http.post("/v1/tokens", json={"expires_at": naive}), 422)


async def test_tokens_list_get_and_revoke(h, tenant):
    created = await tenant.create("/v1/tokens", {"name": "one"})
    assert "token" in created
    listed = (await tenant.http.get("/v1/tokens")).json()
    ids = {t["id"] for t in listed["data"]}
    assert created["id"] in ids
    assert all("token" not in t for t in listed["data"])
    got = await tenant.http.get(f"/v1/tokens/{created['id']}")
    assert got.status_code == 200
    assert "token" not in got.json()
    assert (await tenant.http.delete(f"/v1/tokens/{created['id']}")).status_code == 204
    h.assert_problem(await tenant.http.delete(f"/v1/tokens/{created['id']}"), 404)
    h.assert_problem(await tenant.http.get(f"/v1/tokens/{created['id']}"), 404)


async def test_a_token_that_expires_after_issue_is_401_and_no_longer_listed(
    app, h, tenant, api_pool
):
    """Issued through REST, then its expiry passes (moved into the past in the
    database): 401 at once, and it leaves the list of live tokens."""
    created = await tenant.create("/v1/tokens", {"name": "short-lived"})
    async with h.http_client(app, created["token"]) as holder:
        assert (await holder.get("/v1/actors")).status_code == 200
        async with api_pool.acquire() as conn:
            await conn.execute(
                "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
                uuid.UUID(created["id"]),
            )
        for path in ("/v1/account", "/v1/actors", f"/v1/tokens/{created['id']}"):
            response = await holder.get(path)
            h.assert_problem(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
    listed = (await tenant.http.get("/v1/tokens")).json()["data"]
    assert created["id"] not in {t["id"] for t in listed}
    h.assert_problem(await tenant.http.get(f"/v1/tokens/{created['id']}"), 404)


async def test_a_disabled_actors_token_and_a_deleted_actors_token_are_401(app, h, tenant):
    bot = await h.make_actor(tenant, "api_client")
    created = await tenant.create("/v1/tokens", {"actor_id": bot["id"]})
    async with h.http_client(app, created["token"]) as robot:
        assert (await robot.get("/v1/account")).status_code == 200
        assert (await tenant.http.delete(f"/v1/actors/{bot['id']}")).status_code == 204
        h.assert_problem(await robot.get("/v1/account"), 401)


async def test_token_expiry_is_bounded_per_kind(h, tenant):
    """Issue 8: an expiry a century ahead was accepted. Defaults: API tokens 1 year,
    client tokens 90 days, gateway tokens 1 year when an expiry is named."""
    now = datetime.now(UTC)
    sa = await h.make_actor(tenant, "service_account")
    site = await h.make_site(tenant)
    cases = [
        ("/v1/tokens", 365, "ZG_API_TOKEN_MAX_DAYS"),
        (f"/v1/actors/{sa['id']}/client_tokens", 90, "ZG_CLIENT_TOKEN_MAX_DAYS"),
        (f"/v1/sites/{site['id']}/gateway_tokens", 365, "ZG_GATEWAY_TOKEN_MAX_DAYS"),
    ]
    for path, days, setting in cases:
        too_far = (now + timedelta(days=days, hours=1)).isoformat()
        body = h.assert_problem(await tenant.http.post(path, json={"expires_at": too_far}), 422)
        assert body["detail"].startswith("expires_at:"), body
        assert setting in body["detail"]
        assert body["errors"] == [
            {"type": "invalid", "loc": ["body", "expires_at"], "msg": body["detail"]}
        ]
        century = "2126-01-01T00:00:00Z"
        h.assert_problem(await tenant.http.post(path, json={"expires_at": century}), 422)
        within = now + timedelta(days=days - 1)
        created = await tenant.create(path, {"expires_at": within.isoformat()})
        assert datetime.fromisoformat(created["expires_at"]) == within
    # A gateway token named without an expiry does not expire (it is revoked instead).
    forever = await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {})
    assert forever["expires_at"] is None


async def test_token_expiry_bounds_follow_the_settings(h, api_pool, api_bus, database_url):
    from pydantic import SecretStr

    from zerogate.api.accounts.service import bootstrap_account
    from zerogate.api.app import create_app
    from zerogate.api.settings import ApiSettings

    settings = ApiSettings(
        database_url=SecretStr(database_url),
        nats_url=None,
        api_token_max_days=7,
        api_token_ttl_days=7,
    )
    app = create_app(settings, pool=api_pool, bus=api_bus, bus_handlers=False)
    boot = await bootstrap_account(api_pool, slug=f"t-{uuid.uuid4().hex[:12]}", email="a@b.test")
    async with h.http_client(app, boot.token) as http:
        eight = (datetime.now(UTC) + timedelta(days=8)).isoformat()
        body = h.assert_problem(await http.post("/v1/tokens", json={"expires_at": eight}), 422)
        assert "ZG_API_TOKEN_MAX_DAYS" in body["detail"]
        made = await http.post("/v1/tokens", json={})
        assert made.status_code == 201, made.text
        expires = datetime.fromisoformat(made.json()["expires_at"])
        assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)


def test_a_default_lifetime_beyond_the_maximum_is_a_bad_setting():
    from zerogate.api.settings import ApiSettings
    from zerogate.common.errors import ConfigError
    from zerogate.common.settings import build_settings

    with pytest.raises(ConfigError) as refused:
        build_settings(ApiSettings, api_token_ttl_days=400)
    assert "ZG_API_TOKEN_TTL_DAYS" in refused.value.detail
    assert "ZG_API_TOKEN_MAX_DAYS" in refused.value.detail
    with pytest.raises(ConfigError) as refused:
        build_settings(ApiSettings, client_token_max_days=30)
    assert "ZG_CLIENT_TOKEN_TTL_DAYS" in refused.value.detail
    assert build_settings(ApiSettings).gateway_token_max_days == 365
