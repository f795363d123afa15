"""The ``zerogate-api`` CLI, the app's lifespan and ``/healthz`` (items 15, 19)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

import pytest
from pydantic import SecretStr

from zerogate.api.app import create_app
from zerogate.api.settings import ApiSettings
from zerogate.common import subjects
from zerogate.common.bus import RemoteError
from zerogate.common.messages.api import TokenVerifyReply, TokenVerifyRequest


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zerogate.api.main",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_bootstrap_prints_one_json_line_and_refuses_a_duplicate(app, h, database_url):
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    env = {"ZG_DATABASE_URL": database_url}
    code, out, err = await _cli(
        "bootstrap", "--account-slug", slug, "--email", "ops@x.test", env=env
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert set(line) == {"account_id", "actor_id", "token"}
    async with h.http_client(app, line["token"]) as admin:
        account = (await admin.get("/v1/account")).json()
        me = (await admin.get(f"/v1/actors/{line['actor_id']}")).json()
    assert account == account | {"id": line["account_id"], "slug": slug}
    assert me["type"] == "account_admin_user"
    assert me["email"] == "ops@x.test"
    code, out, err = await _cli("bootstrap", "--account-slug", slug, "--email", "b@x.test", env=env)
    assert code == 1
    assert out == ""
    assert "already exists" in err


async def test_bootstrap_rejects_bad_input_and_bad_settings(database_url):
    env = {"ZG_DATABASE_URL": database_url}
    code, _, err = await _cli(
        "bootstrap", "--account-slug", "Bad Slug!", "--email", "a@b.c", env=env
    )
    assert code == 1
    assert "slug" in err
    code, _, err = await _cli("migrate", env={**env, "ZG_API_PORT": "not-a-port"})
    assert code == 2
    assert "ZG_API_PORT" in err
    code, _, _ = await _cli("bootstrap", env=env)
    assert code == 2


async def test_unreachable_database_is_a_clear_error():
    env = {"ZG_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"}
    for command in (["migrate"], ["bootstrap", "--account-slug", "abc", "--email", "a@b.c"]):
        code, out, err = await _cli(*command, env=env)
        assert code == 1
        assert out == ""
        assert "ZG_DATABASE_URL" in err
        assert "Traceback" not in err


async def test_concurrent_bootstraps_of_one_slug_create_one_account(api_pool):
    from zerogate.api.accounts.service import bootstrap_account
    from zerogate.api.errors import Conflict

    slug = f"race-{uuid.uuid4().hex[:8]}"
    results = await asyncio.gather(
        *(bootstrap_account(api_pool, slug=slug, email=f"a{i}@x.test") for i in range(4)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    async with api_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM accounts WHERE slug = $1", slug) == 1


async def test_migrate_and_help(database_url):
    code, out, _ = await _cli("migrate", env={"ZG_DATABASE_URL": database_url})
    assert code == 0
    assert json.loads(out) == {"applied": []}
    code, out, _ = await _cli("--help", env={})
    assert code == 0
    for command in ("serve", "migrate", "bootstrap"):
        assert command in out


async def test_lifespan_opens_pool_bus_and_handlers_and_healthz_is_ok(
    h, database_url, nats_url, bus
):
    settings = ApiSettings(database_url=SecretStr(database_url), nats_url=nats_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app), h.http_client(app) as anon:
        response = await anon.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "checks": {"postgres": True, "nats": True}}
        assert app.state.bus.is_connected
        # The bus handlers were started: token.verify answers (and refuses garbage).
        request = TokenVerifyRequest(token=SecretStr("not-a-token"))
        with pytest.raises(RemoteError) as refused:
            await bus.request(subjects.TOKEN_VERIFY, request, TokenVerifyReply, timeout=5)
        assert refused.value.code == "unauthorized"
    assert not app.state.bus.is_connected


async def test_healthz_is_503_when_nats_is_missing(h, api_pool, database_url):
    settings = ApiSettings(database_url=SecretStr(database_url), nats_url=None)
    app = create_app(settings, pool=api_pool, bus=None)
    async with h.http_client(app) as anon:
        response = await anon.get("/healthz")
    body = h.assert_problem(response, 503)
    assert body["checks"] == {"postgres": True, "nats": False}


async def test_healthz_is_503_when_postgres_is_gone(h, api_bus, database_url):
    from zerogate.api import db

    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    await pool.close()
    settings = ApiSettings(database_url=SecretStr(database_url))
    app = create_app(settings, pool=pool, bus=api_bus)
    async with h.http_client(app) as anon:
        response = await anon.get("/healthz")
    body = h.assert_problem(response, 503)
    assert body["checks"] == {"postgres": False, "nats": True}


async def test_a_missing_dependency_is_a_503_problem(h, api_pool, database_url):
    """Unavailable (e.g. no bus for the relay registry) renders as 503, not 500."""
    settings = ApiSettings(database_url=SecretStr(database_url), nats_url=None)
    app = create_app(settings, pool=api_pool, bus=None)
    from zerogate.api.accounts.service import bootstrap_account

    boot = await bootstrap_account(api_pool, slug=f"nb-{uuid.uuid4().hex[:8]}", email="a@b.test")
    async with h.http_client(app, boot.token) as admin:
        response = await admin.get("/v1/relays/nearest")
    h.assert_problem(response, 503)


async def test_version_and_subcommand_help():
    code, out, _ = await _cli("--version", env={})
    assert code == 0
    assert out.startswith("zerogate-api ")
    code, out, _ = await _cli("bootstrap", "--help", env={})
    assert code == 0
    for text in ("--account-slug", "--email", "JSON"):
        assert text in out
    code, out, _ = await _cli("--help", env={})
    assert "ZG_DATABASE_URL" in out
    assert "exit codes" in out
    code, _, err = await _cli("frobnicate", env={})
    assert code == 2
    assert "invalid choice" in err


async def test_bootstrap_writes_nothing_but_its_json_line(database_url):
    """stdout is exactly one JSON line and stderr stays empty, so scripts can
    ``TOKEN=$(zerogate-api bootstrap ... | jq -r .token)``."""
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, err = await _cli(
        "bootstrap",
        "--account-slug",
        slug,
        "--email",
        "ops@x.test",
        env={"ZG_DATABASE_URL": database_url},
    )
    assert code == 0
    assert err == ""
    assert out.endswith("\n")
    assert out.count("\n") == 1
    line = json.loads(out)
    assert list(line) == ["account_id", "actor_id", "token"]
    assert str(uuid.UUID(line["account_id"])) == line["account_id"]
    assert str(uuid.UUID(line["actor_id"])) == line["actor_id"]
    token_id, secret = line["token"].split(".", 1)
    assert str(uuid.UUID(token_id)) == token_id
    assert len(secret) >= 43


async def test_start_up_gives_up_on_an_unreachable_bus_naming_the_setting(api_pool, database_url):
    """Bounded by ZG_NATS_CONNECT_TIMEOUT: an unbounded wait would also swallow SIGTERM,
    since uvicorn acts on signals only once start-up is over."""
    import socket

    from zerogate.common.errors import ConfigError

    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        unused = probe.getsockname()[1]
    settings = ApiSettings(
        database_url=SecretStr(database_url),
        nats_url=f"nats://127.0.0.1:{unused}",
        nats_connect_timeout=0.5,
    )
    app = create_app(settings, pool=api_pool)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConfigError) as refused:
        async with app.router.lifespan_context(app):
            pass
    assert loop.time() - started < 10
    assert "ZG_NATS_URL" in refused.value.detail
    assert "ZG_NATS_CONNECT_TIMEOUT" in refused.value.detail


async def test_a_bad_bus_timeout_setting_stops_the_cli_naming_it(database_url):
    code, _, err = await _cli(
        "migrate", env={"ZG_DATABASE_URL": database_url, "ZG_NATS_CONNECT_TIMEOUT": "-1"}
    )
    assert code == 2
    assert "ZG_NATS_CONNECT_TIMEOUT" in err
