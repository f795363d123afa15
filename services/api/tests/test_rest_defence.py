"""An API that defends itself (issue 12, items 6-7): rate limits shared by
replicas, a bound on request bodies and on JSON shapes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zerogate.api.accounts.service import bootstrap_account
from zerogate.api.app import create_app
from zerogate.api.fields import MAX_JSON_LIST
from zerogate.api.ratelimit import repository as buckets
from zerogate.api.sign_in import repository as sign_ins
from zerogate.common.listen import PORTS_FILE_ENV, wait_for_ports

PROBLEMS = "https://zerogate.dev/problems/"


def _ip() -> str:
    """A source address of its own for each test (TEST-NET-2; nothing is sent there:
    it only names the caller to an in-process app or in X-Forwarded-For)."""
    return f"198.51.100.{random.randint(1, 254)}"


@pytest.fixture
async def strict_app(api_settings, api_pool, api_bus):
    """An app with small limits: 3 calls per account and 3 failures per IP, slow refill."""
    settings = api_settings.model_copy(
        update={
            "rate_limit_account_burst": 3,
            "rate_limit_account_per_s": 0.05,
            "rate_limit_ip_burst": 3,
            "rate_limit_ip_per_s": 0.05,
            "max_body_bytes": 4096,
        }
    )
    app = create_app(settings, pool=api_pool, bus=api_bus, bus_handlers=False)
    yield app
    await app.state.oidc_cache.http.aclose()


def _client(app: Any, ip: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 40000)),
        base_url="http://api.test",
        headers=headers,
    )


def _assert_429(h: Any, response: httpx.Response) -> None:
    body = h.assert_problem(response, 429)
    assert body["type"] == PROBLEMS + "rate_limited"
    assert int(response.headers["retry-after"]) >= 1


async def test_each_account_has_its_own_bucket(h, strict_app, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    async with (
        _client(strict_app, _ip(), a.token) as http_a,
        _client(strict_app, _ip(), b.token) as http_b,
    ):
        for _ in range(3):
            assert (await http_a.get("/v1/account")).status_code == 200
        limited = await http_a.get("/v1/account")
        _assert_429(h, limited)
        # 3 tokens, 0.05 a second: a whole token is 20 s away.
        assert 1 <= int(limited.headers["retry-after"]) <= 20
        assert (await http_b.get("/v1/account")).status_code == 200


async def test_failed_authentications_exhaust_the_source_ip(h, strict_app, tenant):
    ip = _ip()
    async with _client(strict_app, ip, "not-a-token") as bad:
        for _ in range(3):
            h.assert_problem(await bad.get("/v1/account"), 401)
        _assert_429(h, await bad.get("/v1/account"))
        # Once refused, the address's tokens are not even looked at: no more guesses.
        _assert_429(
            h, await bad.get("/v1/account", headers={"Authorization": f"Bearer {tenant.token}"})
        )
    async with _client(strict_app, _ip(), tenant.token) as elsewhere:
        assert (await elsewhere.get("/v1/account")).status_code == 200


async def test_sign_in_requests_are_limited_per_source_ip(h, strict_app, tenant):
    _, challenge = h.pkce_pair()
    params = {"redirect_uri": h.LOOPBACK, "code_challenge": challenge}
    async with _client(strict_app, _ip()) as anon:
        for _ in range(3):
            h.assert_problem(await anon.get("/v1/sign_in/no-such-account", params=params), 404)
        _assert_429(h, await anon.get("/v1/sign_in/no-such-account", params=params))
        _assert_429(h, await anon.post("/v1/sign_in/token", json={}))


async def test_limits_are_off_when_disabled(h, api_settings, api_pool, api_bus, tenant):
    settings = api_settings.model_copy(
        update={"rate_limit_enabled": False, "rate_limit_account_burst": 1}
    )
    app = create_app(settings, pool=api_pool, bus=api_bus, bus_handlers=False)
    try:
        async with _client(app, _ip(), tenant.token) as http:
            for _ in range(5):
                assert (await http.get("/v1/account")).status_code == 200
    finally:
        await app.state.oidc_cache.http.aclose()


# ------------------------------------------------------------------ two replicas


def _wait_healthy(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@pytest.fixture
def two_replicas(database_url, nats_url, zg_state_dir) -> Iterator[list[int]]:
    """Two ``zerogate-api serve`` processes on one Postgres and one NATS."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for i in range(2):
            ports_file = zg_state_dir / f"api-replica-{uuid.uuid4().hex[:8]}.json"
            log = zg_state_dir / f"api-replica-{i}.log"
            env = {
                **os.environ,
                "ZG_DATABASE_URL": database_url,
                "ZG_NATS_URL": nats_url,
                "ZG_API_PORT": "0",
                PORTS_FILE_ENV: str(ports_file),
                "ZG_RATE_LIMIT_ACCOUNT_BURST": "5",
                "ZG_RATE_LIMIT_ACCOUNT_PER_S": "0.01",
                "ZG_RATE_LIMIT_IP_BURST": "4",
                "ZG_RATE_LIMIT_IP_PER_S": "0.01",
                "ZG_LOG_LEVEL": "WARNING",
            }
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "zerogate.api.main", "serve"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append(proc)
            ports.append(
                wait_for_ports(Path(ports_file), proc, name="api", timeout=60, log_file=log)["http"]
            )
        for port in ports:
            _wait_healthy(port, 60)
        yield ports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def test_two_replicas_share_the_limits(h, two_replicas, api_pool):
    boot = await bootstrap_account(api_pool, slug=f"r-{uuid.uuid4().hex[:10]}", email="a@r.test")
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=10) as http:
        # Alternate between the replicas: 5 calls in all pass, whichever serves them.
        for i in range(8):
            port = two_replicas[i % 2]
            response = await http.get(
                f"http://127.0.0.1:{port}/v1/account",
                headers={"Authorization": f"Bearer {boot.token}", "X-Forwarded-For": _ip()},
            )
            statuses.append(response.status_code)
        assert statuses == [200] * 5 + [429] * 3
        assert response.headers["retry-after"]
        # Failed authentications from one address, spread over both replicas.
        ip = _ip()
        failures = []
        for i in range(6):
            response = await http.get(
                f"http://127.0.0.1:{two_replicas[i % 2]}/v1/account",
                headers={"Authorization": "Bearer nope", "X-Forwarded-For": ip},
            )
            failures.append(response.status_code)
        assert failures == [401] * 4 + [429] * 2


# ------------------------------------------------------------------ bodies


async def test_a_body_over_the_limit_is_refused_by_its_length(h, strict_app, tenant):
    async with _client(strict_app, _ip(), tenant.token) as http:
        response = await http.post(
            "/v1/sites",
            content=json.dumps({"name": "x" * 5000}).encode(),
            headers={"content-type": "application/json"},
        )
        body = h.assert_problem(response, 413)
        assert body["type"] == PROBLEMS + "payload_too_large"
        assert "ZG_MAX_BODY_BYTES" in body["detail"]
        assert response.headers["x-request-id"]
        sites = (await http.get("/v1/sites")).json()["data"]
    assert sites == []


async def test_a_streamed_body_is_cut_off_once_over_the_limit(h, strict_app, tenant):
    """No Content-Length (chunked): the bytes are counted as they arrive, the 413
    goes out once they pass the limit, and the rest is never read."""
    pulled = 0

    async def chunks():
        nonlocal pulled
        yield b'{"name": "'
        for _ in range(1000):
            pulled += 1
            yield b"x" * 1024
        yield b'"}'

    async with _client(strict_app, _ip(), tenant.token) as http:
        response = await http.post(
            "/v1/sites", content=chunks(), headers={"content-type": "application/json"}
        )
        h.assert_problem(response, 413)
        assert pulled < 10
        assert (await http.get("/v1/sites")).json()["data"] == []
        # Under the limit, a streamed body is served as usual.

        async def small():
            yield b'{"name": "streamed"}'

        created = await http.post(
            "/v1/sites", content=small(), headers={"content-type": "application/json"}
        )
        assert created.status_code == 201, created.text


async def test_json_nesting_and_list_lengths_are_bounded(h, tenant):
    site = await h.make_site(tenant)
    deep: Any = "443"
    for _ in range(50):
        deep = [deep]
    cases = [
        (
            "/v1/resources",
            {
                "type": "ip",
                "address": "192.0.2.1",
                "name": "r",
                "site_id": site["id"],
                "filters": [{"protocol": "tcp", "ports": deep}],
            },
        ),
        (
            "/v1/resources",
            {
                "type": "ip",
                "address": "192.0.2.1",
                "name": "r",
                "site_id": site["id"],
                "filters": [{"protocol": "tcp"}] * 17,
            },
        ),
        (
            "/v1/resources",
            {
                "type": "ip",
                "address": "192.0.2.1",
                "name": "r",
                "site_id": site["id"],
                "filters": [{"protocol": "tcp", "ports": ["443"] * (MAX_JSON_LIST + 1)}],
            },
        ),
        (
            "/v1/auth_providers",
            {"name": "x", "issuer": "https://i.test", "client_id": "c", "scopes": ["openid"] * 21},
        ),
    ]
    for path, body in cases:
        h.assert_problem(await tenant.http.post(path, json=body), 422)
    # Nesting deeper than the JSON parser goes: still a 422, never a 500.
    text = '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = await tenant.http.post(
        "/v1/sites", content=text.encode(), headers={"content-type": "application/json"}
    )
    h.assert_problem(response, 422)


async def test_housekeeping_forgets_full_buckets_and_expired_sign_ins(api_pool, h, tenant):
    old, fresh = f"test:{uuid.uuid4()}", f"test:{uuid.uuid4()}"
    provider = await h.make_provider(tenant, "https://idp.example.com")
    async with api_pool.acquire() as conn:
        await buckets.charge(conn, old, burst=5, rate=1.0)
        await buckets.charge(conn, fresh, burst=5, rate=1.0)
        await conn.execute(
            "UPDATE rate_buckets SET updated_at = now() - interval '1 hour' WHERE key = $1", old
        )
        await sign_ins.create_request(
            conn,
            state_hash=uuid.uuid4().bytes * 2,
            account_id=tenant.account_id,
            auth_provider_id=uuid.UUID(provider["id"]),
            kind="client",
            nonce="n",
            provider_verifier="v",
            redirect_uri="http://127.0.0.1:1/cb",
            client_code_challenge="c",
            client_state=None,
            ttl_secs=30,
        )
        await conn.execute(
            "UPDATE sign_in_requests SET expires_at = now() - interval '1 second'"
            " WHERE account_id = $1",
            tenant.account_id,
        )
        await buckets.forget_full(conn, 60.0)
        await sign_ins.forget_expired(conn, keep_used_codes_secs=3600)
        keys = {r["key"] for r in await conn.fetch("SELECT key FROM rate_buckets")}
        left = await conn.fetchval(
            "SELECT count(*) FROM sign_in_requests WHERE account_id = $1", tenant.account_id
        )
    assert old not in keys
    assert fresh in keys
    assert left == 0
