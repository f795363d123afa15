"""Fixtures of the api tests: one migrated database and one app per session,
one fresh account (or two) per test, all on the real Postgres and NATS."""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from zerogate.api import db
from zerogate.api.accounts.service import bootstrap_account
from zerogate.api.app import create_app
from zerogate.api.devices import Device, upsert_client, upsert_gateway
from zerogate.api.settings import ApiSettings
from zerogate.common.bus import Bus
from zerogate.testing.oidc import OidcClient, OidcProvider, sign_in_browser


@pytest.fixture(scope="session")
async def api_pool(database_url: str) -> AsyncIterator[Any]:
    await db.migrate_url(database_url)
    pool = await db.create_pool(database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def api_bus(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_url, name="api-test")
    try:
        yield bus
    finally:
        await bus.close()


#: The session's app shares the source IP 127.0.0.1 across every test, so its
#: limits are out of reach; tests of the limits build apps with small ones.
GENEROUS_LIMITS: dict[str, Any] = {
    "rate_limit_account_per_s": 1e6,
    "rate_limit_account_burst": 1_000_000,
    "rate_limit_ip_per_s": 1e6,
    "rate_limit_ip_burst": 1_000_000,
}
#: ZG_SECRET_KEY of the tests (32 bytes, URL-safe base64).
TEST_SECRET_KEY = "dGVzdC1rZXktb2YtdGhlLXRlc3RzLTMyLWJ5dGVzISE"


@pytest.fixture(scope="session")
def api_settings(database_url: str, nats_url: str) -> ApiSettings:
    return ApiSettings(
        database_url=SecretStr(database_url),
        nats_url=nats_url,
        secret_key=SecretStr(TEST_SECRET_KEY),
        **GENEROUS_LIMITS,
    )


@pytest.fixture(scope="session")
async def app(api_settings: ApiSettings, api_pool: Any, api_bus: Bus) -> AsyncIterator[Any]:
    app = create_app(api_settings, pool=api_pool, bus=api_bus, bus_handlers=False)
    yield app
    await app.state.oidc_cache.http.aclose()


@dataclass
class Tenant:
    """An account with an admin and an HTTP client that carries its token."""

    account_id: uuid.UUID
    actor_id: uuid.UUID
    token: str
    http: httpx.AsyncClient
    slug: str = ""

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(path, json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


def http_client(app: Any, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test", headers=headers
    )


MakeTenant = Callable[[], Awaitable[Tenant]]


@pytest.fixture
async def make_tenant(app: Any, api_pool: Any) -> AsyncIterator[MakeTenant]:
    clients: list[httpx.AsyncClient] = []

    async def make() -> Tenant:
        slug = f"t-{uuid.uuid4().hex[:12]}"
        boot = await bootstrap_account(api_pool, slug=slug, email=f"admin@{slug}.test")
        http = http_client(app, boot.token)
        clients.append(http)
        return Tenant(boot.account_id, boot.actor_id, boot.token, http, slug)

    yield make
    for http in clients:
        await http.aclose()


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


@pytest.fixture(scope="session")
def h() -> ModuleType:
    """The helper functions below, for tests (they cannot import conftest)."""
    return sys.modules[__name__]


# --------------------------------------------------------------------- helpers


async def make_site(tenant: Any, name: str | None = None) -> dict[str, Any]:
    return await tenant.create("/v1/sites", {"name": name or f"site-{uuid.uuid4().hex[:8]}"})


async def make_resource(tenant: Any, site_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "type": "cidr",
        "address": "10.1.0.0/16",
        "name": f"res-{uuid.uuid4().hex[:8]}",
        "site_id": site_id,
    }
    body.update(overrides)
    return await tenant.create("/v1/resources", body)


async def make_group(tenant: Any, name: str | None = None) -> dict[str, Any]:
    return await tenant.create("/v1/groups", {"name": name or f"grp-{uuid.uuid4().hex[:8]}"})


async def make_actor(tenant: Any, type_: str = "account_user", **extra: Any) -> dict[str, Any]:
    body = {"type": type_, "name": f"actor-{uuid.uuid4().hex[:8]}", **extra}
    return await tenant.create("/v1/actors", body)


async def make_client(pool: Any, tenant: Any, actor_id: Any, external_id: str = "dev-1") -> Device:
    async with pool.acquire() as conn:
        return await upsert_client(
            conn,
            account_id=tenant.account_id,
            actor_id=uuid.UUID(str(actor_id)),
            external_id=external_id,
            public_key="pk-" + uuid.uuid4().hex,
            name="laptop",
            remote_ip="198.51.100.7",
            version="1.0.0",
        )


async def make_gateway(pool: Any, tenant: Any, site_id: Any, external_id: str = "gw-1") -> Device:
    async with pool.acquire() as conn:
        return await upsert_gateway(
            conn,
            account_id=tenant.account_id,
            site_id=uuid.UUID(str(site_id)),
            external_id=external_id,
            public_key="gpk-" + uuid.uuid4().hex,
            name="gateway",
            remote_ip="203.0.113.9",
            version="1.0.0",
        )


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """RFC 9457: problem+json with type, title and the same status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert isinstance(body["title"], str)
    return body


# ------------------------------------------------------------------ sign-in

#: The api's address in in-process tests, and so its callback at the provider.
API_BASE = "http://api.test"
OIDC_CALLBACK = API_BASE + "/v1/sign_in/callback"
#: The CLI's loopback redirect (nobody listens: the scripted browser stops there).
LOOPBACK = "http://127.0.0.1:53682/callback"
#: Faults the provider injects into the ID tokens of client "zg-<fault>".
ID_TOKEN_FAULTS = ("expired", "audience", "nonce", "issuer", "hs256", "none")
CONFIDENTIAL_SECRET = "idp-client-secret-" + "x" * 24


@pytest.fixture(scope="session")
def oidc_provider(request: pytest.FixtureRequest) -> Iterator[OidcProvider]:
    """panva's oidc-provider on Node, with a public client, a confidential one and
    one client per injected ID-token fault, all redirecting to the api's callback."""
    clients = [
        OidcClient("zg-public", (OIDC_CALLBACK,)),
        OidcClient("zg-confidential", (OIDC_CALLBACK,), client_secret=CONFIDENTIAL_SECRET),
        *(OidcClient(f"zg-{fault}", (OIDC_CALLBACK,), tamper=fault) for fault in ID_TOKEN_FAULTS),
    ]
    prefix = Path(request.config.rootpath) / ".zerogate" / "oidc"
    with OidcProvider(prefix, clients) as provider:
        yield provider


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636 §4.1, §4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def browser_for(app: Any) -> httpx.AsyncClient:
    """A scripted browser: the api in-process, the provider over real HTTP; it keeps
    cookies and follows no redirect by itself."""
    return httpx.AsyncClient(
        mounts={API_BASE: httpx.ASGITransport(app=app)}, follow_redirects=False, timeout=10
    )


@dataclass
class SignIn:
    """One scripted sign-in up to the loopback redirect."""

    verifier: str
    challenge: str
    #: The loopback URL the api redirected the browser to (code or error), if any.
    loopback: httpx.URL | None
    #: The last response the browser saw (the redirect to the loopback, or a problem).
    response: httpx.Response

    @property
    def params(self) -> dict[str, str]:
        assert self.loopback is not None, self.response.text
        return dict(self.loopback.params)

    def exchange_body(self, **overrides: str) -> dict[str, str]:
        body = {
            "code": self.params["code"],
            "code_verifier": self.verifier,
            "redirect_uri": LOOPBACK,
        }
        return body | overrides


async def sign_in(
    app: Any,
    slug: str,
    provider_id: str,
    *,
    login: str,
    kind: str = "client",
    state: str = "cli-state-1",
) -> SignIn:
    verifier, challenge = pkce_pair()
    params = {
        "provider": provider_id,
        "kind": kind,
        "redirect_uri": LOOPBACK,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    start = httpx.URL(f"{API_BASE}/v1/sign_in/{slug}", params=params)
    async with browser_for(app) as browser:
        response = await sign_in_browser(browser, str(start), login=login, stop_at=LOOPBACK)
    loopback = None
    if response.is_redirect and response.headers["location"].startswith(LOOPBACK):
        loopback = httpx.URL(response.headers["location"])
    return SignIn(verifier, challenge, loopback, response)


async def make_provider(
    tenant: Any, issuer: str, client_id: str = "zg-public", **extra: Any
) -> dict[str, Any]:
    body = {"name": f"idp-{uuid.uuid4().hex[:8]}", "issuer": issuer, "client_id": client_id}
    return await tenant.create("/v1/auth_providers", body | extra)
