"""Sign-in through an OpenID provider, against panva's oidc-provider (issue 12, items 1-2, 5).

The browser is scripted with plain HTTP through the provider's development
login and consent pages; the api runs in-process; the client's loopback
redirect is where the browser stops. Every failure of item 2 fails with its own
problem type and creates nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zerogate.api.accounts.service import bootstrap_account
from zerogate.api.app import create_app
from zerogate.api.errors import Invalid
from zerogate.api.sign_in import service as sign_in_service
from zerogate.api.sign_in.redact import AccessLogFilter
from zerogate.api.tokens.repository import verify_token
from zerogate.common import subjects, telemetry
from zerogate.common.messages.events import ChangeEvent

PROBLEMS = "https://zerogate.dev/problems/"


async def _counts(pool, account_id) -> dict[str, int]:
    async with pool.acquire() as conn:
        return {
            "tokens": await conn.fetchval(
                "SELECT count(*) FROM tokens WHERE account_id = $1", account_id
            ),
            "actors": await conn.fetchval(
                "SELECT count(*) FROM actors WHERE account_id = $1", account_id
            ),
            "codes": await conn.fetchval(
                "SELECT count(*) FROM sign_in_codes WHERE account_id = $1", account_id
            ),
        }


@pytest.fixture
async def idp(h, tenant, oidc_provider):
    """The tenant's provider (the public client), and a user of the tenant."""
    provider = await h.make_provider(tenant, oidc_provider.issuer)
    user = await h.make_actor(
        tenant, "account_user", email=f"user-{uuid.uuid4().hex[:6]}@corp.test"
    )
    return provider, user


async def test_client_sign_in_end_to_end(app, h, tenant, idp, api_pool):
    provider, user = idp
    before = datetime.now(UTC)
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"].upper())
    # The browser lands on the loopback URI with a one-time code and the client's
    # state, and nothing else: no token ever travels in a URL.
    assert set(flow.params) == {"code", "state"}
    assert flow.params["state"] == "cli-state-1"
    assert flow.loopback.host == "127.0.0.1"
    assert flow.loopback.port == 53682
    async with h.http_client(app) as cli:
        response = await cli.post("/v1/sign_in/token", json=flow.exchange_body())
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["type"] == "client"
    assert body["kind"] == "client"
    assert body["actor_id"] == user["id"]
    assert body["account_id"] == str(tenant.account_id)
    assert body["auth_provider_id"] == provider["id"]
    # The client session lasts the provider's client session lifetime (7 days by default).
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(days=7) <= expires_at <= datetime.now(UTC) + timedelta(days=7)
    async with api_pool.acquire() as conn:
        grant = await verify_token(conn, body["token"])
    assert grant is not None
    assert (grant.type, str(grant.actor_id)) == ("client", user["id"])
    # A client token does not open the admin API.
    async with h.http_client(app, body["token"]) as agent:
        h.assert_problem(await agent.get("/v1/account"), 401)
    listed = (await tenant.http.get(f"/v1/tokens/{body['token_id']}")).json()
    assert listed["auth_provider_id"] == provider["id"]


async def test_start_answers_json_to_a_cli_and_refuses_bad_clients(
    app, h, tenant, idp, oidc_provider
):
    provider, _ = idp
    _, challenge = h.pkce_pair()
    good = {"redirect_uri": h.LOOPBACK, "code_challenge": challenge, "provider": provider["id"]}
    async with h.http_client(app) as cli:
        response = await cli.get(
            f"/v1/sign_in/{tenant.slug}", params=good, headers={"Accept": "application/json"}
        )
        assert response.status_code == 200, response.text
        url = httpx.URL(response.json()["authorization_url"])
        assert str(url).startswith(oidc_provider.issuer + "/")
        assert url.params["client_id"] == "zg-public"
        assert url.params["code_challenge_method"] == "S256"
        assert url.params["code_challenge"] != challenge  # the api's own PKCE toward the IdP
        assert url.params["redirect_uri"] == h.OIDC_CALLBACK
        assert len(url.params["state"]) >= 43
        assert len(url.params["nonce"]) >= 43
        # Without a provider named, the account's only provider is used.
        response = await cli.get(
            f"/v1/sign_in/{tenant.slug}",
            params={k: v for k, v in good.items() if k != "provider"},
        )
        assert response.status_code == 302
        for bad in (
            "https://evil.test/cb",
            "http://evil.test:8080/cb",
            "http://127.0.0.1/cb",  # no port
            "http://10.1.2.3:8080/cb",
            "http://user:pw@127.0.0.1:8080/cb",
            "http://127.0.0.1:8080/cb#frag",
        ):
            response = await cli.get(
                f"/v1/sign_in/{tenant.slug}", params=good | {"redirect_uri": bad}
            )
            body = h.assert_problem(response, 422)
            assert body["type"] == PROBLEMS + "sign_in_redirect_uri_invalid", bad
        for loopback in ("http://[::1]:8080/cb", "http://localhost:8080/cb"):
            response = await cli.get(
                f"/v1/sign_in/{tenant.slug}", params=good | {"redirect_uri": loopback}
            )
            assert response.status_code == 302, loopback
        for extra in ({"code_challenge_method": "plain"}, {"code_challenge": "short"}):
            h.assert_problem(await cli.get(f"/v1/sign_in/{tenant.slug}", params=good | extra), 422)
        h.assert_problem(await cli.get("/v1/sign_in/no-such-account", params=good), 404)
        other = good | {"provider": str(uuid.uuid4())}
        h.assert_problem(await cli.get(f"/v1/sign_in/{tenant.slug}", params=other), 404)


async def test_admin_sign_in_gives_an_admin_session(app, h, tenant, idp, api_pool):
    provider, user = idp
    flow = await h.sign_in(
        app, tenant.slug, provider["id"], login=f"admin@{tenant.slug}.test", kind="admin"
    )
    async with h.http_client(app) as cli:
        body = (await cli.post("/v1/sign_in/token", json=flow.exchange_body())).json()
    assert (body["type"], body["kind"], body["actor_id"]) == ("api", "admin", str(tenant.actor_id))
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(hours=8))) < timedelta(minutes=1)
    async with h.http_client(app, body["token"]) as admin:
        assert (await admin.get("/v1/account")).json()["id"] == str(tenant.account_id)
        # Sign-out revokes the session.
        assert (await admin.delete("/v1/sign_in/token")).status_code == 204
        h.assert_problem(await admin.get("/v1/account"), 401)
        h.assert_problem(await admin.delete("/v1/sign_in/token"), 401)
    # A user who is not an admin gets no admin session, and nothing is created.
    before = await _counts(api_pool, tenant.account_id)
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"], kind="admin")
    assert flow.params["error"] == "access_denied"
    assert flow.params["error_uri"] == PROBLEMS + "sign_in_not_allowed"
    assert flow.params["state"] == "cli-state-1"
    assert await _counts(api_pool, tenant.account_id) == before


async def test_custom_session_lifetimes_and_a_confidential_client(
    app, h, tenant, oidc_provider, api_pool
):
    provider = await h.make_provider(
        tenant,
        oidc_provider.issuer,
        client_id="zg-confidential",
        client_secret=h.CONFIDENTIAL_SECRET,
        client_session_lifetime_secs=3600,
    )
    assert provider["has_client_secret"] is True
    assert h.CONFIDENTIAL_SECRET not in str(provider)
    async with api_pool.acquire() as conn:
        sealed = await conn.fetchval(
            "SELECT client_secret_sealed FROM auth_providers WHERE id = $1",
            uuid.UUID(provider["id"]),
        )
    assert h.CONFIDENTIAL_SECRET.encode() not in sealed
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=f"admin@{tenant.slug}.test")
    async with h.http_client(app) as cli:
        body = (await cli.post("/v1/sign_in/token", json=flow.exchange_body())).json()
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    # Without the secret the provider refuses our code: a clear 502 type at the loopback.
    patched = await tenant.http.patch(
        f"/v1/auth_providers/{provider['id']}", json={"client_secret": None}
    )
    assert patched.json()["has_client_secret"] is False
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=f"admin@{tenant.slug}.test")
    assert flow.params["error_uri"] == PROBLEMS + "provider_refused_code"
    assert flow.params["error"] == "server_error"


async def test_a_replayed_code_fails_and_revokes_what_it_gave(app, h, tenant, idp, api_pool):
    provider, user = idp
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"])
    async with h.http_client(app) as cli:
        first = (await cli.post("/v1/sign_in/token", json=flow.exchange_body())).json()
        before = await _counts(api_pool, tenant.account_id)
        replay = await cli.post("/v1/sign_in/token", json=flow.exchange_body())
    body = h.assert_problem(replay, 400)
    assert body["type"] == PROBLEMS + "sign_in_code_replayed"
    assert "token" not in body
    assert await _counts(api_pool, tenant.account_id) == before
    async with api_pool.acquire() as conn:
        assert await verify_token(conn, first["token"]) is None  # RFC 6749 §4.1.2


async def test_a_wrong_verifier_fails_and_burns_the_code(app, h, tenant, idp, api_pool):
    provider, user = idp
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"])
    before = await _counts(api_pool, tenant.account_id)
    wrong, _ = h.pkce_pair()
    async with h.http_client(app) as cli:
        response = await cli.post("/v1/sign_in/token", json=flow.exchange_body(code_verifier=wrong))
        body = h.assert_problem(response, 400)
        assert body["type"] == PROBLEMS + "sign_in_verifier_mismatch"
        # The right verifier afterwards finds the code spent.
        again = await cli.post("/v1/sign_in/token", json=flow.exchange_body())
        assert h.assert_problem(again, 400)["type"] == PROBLEMS + "sign_in_code_replayed"
        # An unknown code, and a redirect_uri other than the start's.
        unknown = await cli.post("/v1/sign_in/token", json=flow.exchange_body(code="A" * 43))
        assert h.assert_problem(unknown, 400)["type"] == PROBLEMS + "sign_in_code_invalid"
    assert await _counts(api_pool, tenant.account_id) == before
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"])
    async with h.http_client(app) as cli:
        response = await cli.post(
            "/v1/sign_in/token", json=flow.exchange_body(redirect_uri="http://127.0.0.1:1/x")
        )
    assert h.assert_problem(response, 400)["type"] == PROBLEMS + "sign_in_redirect_uri_mismatch"


async def test_a_wrong_or_replayed_state_fails(app, h, tenant, idp, api_pool, oidc_provider):
    _, user = idp
    before = await _counts(api_pool, tenant.account_id)
    async with h.http_client(app) as browser:
        response = await browser.get(
            "/v1/sign_in/callback", params={"state": "x" * 43, "code": "c"}
        )
        assert h.assert_problem(response, 400)["type"] == PROBLEMS + "sign_in_state_invalid"
        response = await browser.get("/v1/sign_in/callback", params={"code": "c"})
        assert h.assert_problem(response, 400)["type"] == PROBLEMS + "sign_in_state_invalid"
    # The provider's genuine callback, played twice: the state is good once.
    _, challenge = h.pkce_pair()
    start = httpx.URL(
        f"{h.API_BASE}/v1/sign_in/{tenant.slug}",
        params={"redirect_uri": h.LOOPBACK, "code_challenge": challenge},
    )
    async with h.browser_for(app) as browser:
        response = await h.sign_in_browser(
            browser, str(start), login=user["email"], stop_at=h.OIDC_CALLBACK
        )
        callback = response.headers["location"]
        first = await browser.get(callback)
        assert httpx.URL(first.headers["location"]).params["code"]
        counts = await _counts(api_pool, tenant.account_id)
        second = await browser.get(callback)
    assert h.assert_problem(second, 400)["type"] == PROBLEMS + "sign_in_state_invalid"
    assert await _counts(api_pool, tenant.account_id) == counts
    assert counts["codes"] == before["codes"] + 1


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("nonce", "id_token_nonce"),
        ("expired", "id_token_expired"),
        ("audience", "id_token_audience"),
        ("issuer", "id_token_issuer"),
        ("hs256", "id_token_signature"),
        ("none", "id_token_signature"),
    ],
)
async def test_a_bad_id_token_fails_with_its_own_problem(
    app, h, tenant, oidc_provider, api_pool, fault, problem
):
    """The provider issues a real ID token, then (per client) changes it and signs it
    again with its own key: another nonce, an expired one, a foreign audience,
    another issuer; or HS256 keyed with its public JWK, or alg none."""
    provider = await h.make_provider(tenant, oidc_provider.issuer, client_id=f"zg-{fault}")
    before = await _counts(api_pool, tenant.account_id)
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=f"admin@{tenant.slug}.test")
    assert flow.params["error_uri"] == PROBLEMS + problem
    assert flow.params["error"] == "access_denied"
    assert "code" not in flow.params
    assert await _counts(api_pool, tenant.account_id) == before


async def test_an_id_token_judged_after_its_expiry_fails(
    app, h, tenant, idp, api_pool, monkeypatch
):
    provider, user = idp
    monkeypatch.setattr(sign_in_service, "_now", lambda: time.time() + 2 * 3600)
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"])
    assert flow.params["error_uri"] == PROBLEMS + "id_token_expired"


async def test_emails_map_to_actors_and_jit_users_join(app, h, tenant, oidc_provider, api_pool):
    strict = await h.make_provider(tenant, oidc_provider.issuer)
    before = await _counts(api_pool, tenant.account_id)
    flow = await h.sign_in(app, tenant.slug, strict["id"], login="stranger@corp.test")
    assert flow.params["error_uri"] == PROBLEMS + "sign_in_unknown_user"
    flow = await h.sign_in(
        app, tenant.slug, strict["id"], login=f"unverified:admin@{tenant.slug}.test"
    )
    assert flow.params["error_uri"] == PROBLEMS + "sign_in_email_unverified"
    disabled = await h.make_actor(tenant, "account_user", email="gone@corp.test")
    await tenant.http.post(f"/v1/actors/{disabled['id']}/disable")
    flow = await h.sign_in(app, tenant.slug, strict["id"], login="gone@corp.test")
    assert flow.params["error_uri"] == PROBLEMS + "sign_in_actor_disabled"
    assert await _counts(api_pool, tenant.account_id) == {**before, "actors": before["actors"] + 1}

    jit = await tenant.http.patch(
        f"/v1/auth_providers/{strict['id']}", json={"allow_jit_users": True}
    )
    assert jit.json()["allow_jit_users"] is True
    # An admin session is never opened for a user made just in time.
    flow = await h.sign_in(app, tenant.slug, strict["id"], login="new@corp.test", kind="admin")
    assert flow.params["error_uri"] == PROBLEMS + "sign_in_unknown_user"
    flow = await h.sign_in(app, tenant.slug, strict["id"], login="new@corp.test")
    async with h.http_client(app) as cli:
        body = (await cli.post("/v1/sign_in/token", json=flow.exchange_body())).json()
    actor = (await tenant.http.get(f"/v1/actors/{body['actor_id']}")).json()
    assert (actor["type"], actor["email"], actor["name"]) == (
        "account_user",
        "new@corp.test",
        "new",
    )
    groups = (await tenant.http.get("/v1/groups")).json()["data"]
    everyone = next(g for g in groups if g["kind"] == "everyone")
    members = (await tenant.http.get(f"/v1/groups/{everyone['id']}/members")).json()["data"]
    assert actor["id"] in [m["id"] for m in members]
    # Signing in again finds the same actor.
    flow = await h.sign_in(app, tenant.slug, strict["id"], login="NEW@corp.test")
    async with h.http_client(app) as cli:
        again = (await cli.post("/v1/sign_in/token", json=flow.exchange_body())).json()
    assert again["actor_id"] == actor["id"]


async def test_expired_sign_ins_and_codes_fail(app, h, tenant, idp, api_pool):
    provider, user = idp
    _, challenge = h.pkce_pair()
    start = httpx.URL(
        f"{h.API_BASE}/v1/sign_in/{tenant.slug}",
        params={"redirect_uri": h.LOOPBACK, "code_challenge": challenge},
    )
    async with h.browser_for(app) as browser:
        response = await h.sign_in_browser(
            browser, str(start), login=user["email"], stop_at=h.OIDC_CALLBACK
        )
        async with api_pool.acquire() as conn:
            await conn.execute(
                "UPDATE sign_in_requests SET expires_at = now() - interval '1 second'"
                " WHERE account_id = $1",
                tenant.account_id,
            )
        late = await browser.get(response.headers["location"])
    assert h.assert_problem(late, 400)["type"] == PROBLEMS + "sign_in_expired"
    flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"])
    async with api_pool.acquire() as conn:
        await conn.execute(
            "UPDATE sign_in_codes SET expires_at = now() - interval '1 second'"
            " WHERE account_id = $1",
            tenant.account_id,
        )
    before = await _counts(api_pool, tenant.account_id)
    async with h.http_client(app) as cli:
        response = await cli.post("/v1/sign_in/token", json=flow.exchange_body())
    assert h.assert_problem(response, 400)["type"] == PROBLEMS + "sign_in_expired"
    assert await _counts(api_pool, tenant.account_id) == before


async def test_sign_out_and_provider_deletion_revoke_sessions(app, h, tenant, idp, api_pool, bus):
    provider, user = idp
    tokens = []
    for _ in range(2):
        flow = await h.sign_in(app, tenant.slug, provider["id"], login=user["email"])
        async with h.http_client(app) as cli:
            tokens.append((await cli.post("/v1/sign_in/token", json=flow.exchange_body())).json())
    revoked: list[str] = []
    done = asyncio.Event()

    ours = {t["token_id"] for t in tokens}

    async def on_revoked(msg):
        token_id = str(ChangeEvent.model_validate_json(msg.data).token_id)
        if token_id in ours:
            revoked.append(token_id)
        if len(revoked) == 2:
            done.set()

    sub = await bus.nats.subscribe(subjects.event("token", "revoked"), cb=on_revoked)
    try:
        async with h.http_client(app, tokens[0]["token"]) as client:
            assert (await client.delete("/v1/sign_in/token")).status_code == 204
        assert (await tenant.http.delete(f"/v1/auth_providers/{provider['id']}")).status_code == 204
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await sub.unsubscribe()
    assert revoked == [tokens[0]["token_id"], tokens[1]["token_id"]]
    async with api_pool.acquire() as conn:
        for token in tokens:
            assert await verify_token(conn, token["token"]) is None
    h.assert_problem(await tenant.http.get(f"/v1/auth_providers/{provider['id']}"), 404)


async def test_an_unreachable_or_silent_provider_fails_fast(
    h, tenant, api_settings, api_pool, api_bus
):
    app = create_app(
        api_settings.model_copy(update={"oidc_timeout": 1.0}),
        pool=api_pool,
        bus=api_bus,
        bus_handlers=False,
    )
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        _, challenge = h.pkce_pair()
        params = {"redirect_uri": h.LOOPBACK, "code_challenge": challenge}
        async with h.http_client(app) as cli:
            for port in (closed_port, silent.getsockname()[1]):
                provider = await h.make_provider(tenant, f"http://127.0.0.1:{port}")
                t0 = time.monotonic()
                response = await cli.get(
                    f"/v1/sign_in/{tenant.slug}", params=params | {"provider": provider["id"]}
                )
                took = time.monotonic() - t0
                body = h.assert_problem(response, 503)
                assert body["type"] == PROBLEMS + "provider_unavailable"
                assert "ZG_OIDC_TIMEOUT" in body["detail"] or "cannot be reached" in body["detail"]
                assert took < 3.0, took
    finally:
        silent.close()
        await app.state.oidc_cache.http.aclose()


async def test_provider_crud_keeps_the_secret_write_only(h, tenant):
    created = await h.make_provider(
        tenant, "https://idp.example.com", client_secret="very-secret-value", allow_jit_users=True
    )
    assert created["has_client_secret"] is True
    assert created["scopes"] == ["openid", "email", "profile"]
    assert created["email_claim"] == "email"
    assert created["client_session_lifetime_secs"] == 7 * 86400
    assert created["admin_session_lifetime_secs"] == 8 * 3600
    for response in (
        await tenant.http.get(f"/v1/auth_providers/{created['id']}"),
        await tenant.http.get("/v1/auth_providers"),
    ):
        assert "very-secret-value" not in response.text
        assert '"client_secret"' not in response.text
    updated = await tenant.http.patch(
        f"/v1/auth_providers/{created['id']}", json={"scopes": ["openid", "email"], "name": "x"}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["has_client_secret"] is True
    for bad in (
        {"issuer": "http://idp.example.com"},  # http only on loopback
        {"issuer": "https://idp.example.com/?q=1"},
        {"scopes": ["email"]},  # no openid
        {"scopes": ["openid"] * 21},
        {"client_session_lifetime_secs": 10},
        {"admin_session_lifetime_secs": 8 * 86400},
        {"email_claim": "bad claim"},
        {"name": None},
    ):
        response = await tenant.http.patch(f"/v1/auth_providers/{created['id']}", json=bad)
        h.assert_problem(response, 422)


async def test_a_secret_needs_the_secret_key(h, tenant, api_settings, api_pool, api_bus):
    app = create_app(
        api_settings.model_copy(update={"secret_key": None}),
        pool=api_pool,
        bus=api_bus,
        bus_handlers=False,
    )
    try:
        async with h.http_client(app, tenant.token) as admin:
            response = await admin.post(
                "/v1/auth_providers",
                json={
                    "name": "x",
                    "issuer": "https://i.test",
                    "client_id": "c",
                    "client_secret": "s",
                },
            )
        body = h.assert_problem(response, 422)
        assert "ZG_SECRET_KEY" in body["detail"]
    finally:
        await app.state.oidc_cache.http.aclose()


async def test_a_bad_secret_key_stops_the_process_without_echoing_it(database_url):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zerogate.api.main",
        "migrate",
        env={**os.environ, "ZG_DATABASE_URL": database_url, "ZG_SECRET_KEY": "sekrit-but-short"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "ZG_SECRET_KEY" in err.decode()
    assert "sekrit" not in (out + err).decode()


async def test_slugs_that_name_sign_in_routes_are_reserved(api_pool):
    for slug in ("callback", "token"):
        with pytest.raises(Invalid):
            await bootstrap_account(api_pool, slug=slug, email="a@b.test")


async def test_the_callback_query_stays_out_of_spans_and_the_access_log(app, h, tenant, idp):
    """The provider's code and our state reach the callback in its URL; neither the
    HTTP server span nor uvicorn's access line may keep them."""
    _, user = idp
    _, challenge = h.pkce_pair()
    start = httpx.URL(
        f"{h.API_BASE}/v1/sign_in/{tenant.slug}",
        params={"redirect_uri": h.LOOPBACK, "code_challenge": challenge},
    )
    exporter = InMemorySpanExporter()
    handle = telemetry.add_exporter(exporter)
    try:
        async with h.browser_for(app) as browser:
            response = await h.sign_in_browser(
                browser, str(start), login=user["email"], stop_at=h.OIDC_CALLBACK
            )
            callback = httpx.URL(response.headers["location"])
            landed = await browser.get(callback)
        assert "code" in httpx.URL(landed.headers["location"]).params
        spans = exporter.get_finished_spans()
    finally:
        handle.shutdown()
    server = [s for s in spans if s.name == "GET /v1/sign_in/callback"]
    assert server, [s.name for s in spans]
    values = "\n".join(str(v) for s in spans for v in (s.attributes or {}).values())
    assert "/v1/sign_in/callback" in values
    for secret in (callback.params["code"], callback.params["state"]):
        assert secret not in values
    line = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", callback.raw_path.decode(), "1.1", 302),
        None,
    )
    assert AccessLogFilter().filter(line)
    message = line.getMessage()
    assert "/v1/sign_in/callback?code=REDACTED&state=REDACTED" in message
    assert callback.params["code"] not in message
