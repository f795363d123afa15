"""``zerogate sign-in`` and ``sign-out`` against the real api and a real OpenID provider.

The CLI runs as a process with ``--no-browser``; a scripted browser (plain
HTTP through the provider's login and consent pages) plays the person, and
its last redirect lands on the CLI's own loopback listener.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zerogate.testing.oidc import OidcClient, OidcProvider, sign_in_browser
from zerogate.testing.stack import ControlPlane, script

pytestmark = pytest.mark.slow

EMAIL = "alice@example.test"


@pytest.fixture(scope="module")
def stack(
    nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory, request: Any
) -> Iterator[tuple[ControlPlane, OidcProvider]]:
    workdir: Path = tmp_path_factory.mktemp("sign-in")
    with ControlPlane(nats_url=nats_url, database_url=database_url, workdir=workdir) as plane:
        api = plane.api()
        callback = api.url() + "/v1/sign_in/callback"
        prefix = Path(request.config.rootpath) / ".zerogate" / "oidc"
        with OidcProvider(prefix, [OidcClient("zg-cli", (callback,))]) as provider:
            yield plane, provider


@pytest.fixture
def request_cleanup() -> Iterator[Any]:
    """Processes a test started: killed by PID if it failed before they ended."""
    procs: list[subprocess.Popen[str]] = []
    yield procs.append
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


async def _browse(url: str, loopback_uri: str) -> None:
    """The person: sign in at the provider; the last redirect lands on the CLI."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        back = await sign_in_browser(browser, url, login=EMAIL, stop_at=loopback_uri)
        loopback = back.headers["location"]
        assert "code=" in loopback
        assert "token" not in loopback.split("?", 1)[1].lower()  # never a token in a URL
        page = await browser.get(loopback)  # the browser lands on the CLI's listener
        assert page.status_code == 200
        assert "Signed in" in page.text


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [script("zerogate"), *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ZG_")}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sign_in_keeps_a_client_token_and_sign_out_revokes_it(
    stack: tuple[ControlPlane, OidcProvider], tmp_path: Path, request_cleanup: Any
) -> None:
    plane, provider = stack
    admin = plane.admin()
    try:
        admin.call(
            "POST",
            "/v1/auth_providers",
            {"name": "idp", "issuer": provider.issuer, "client_id": "zg-cli"},
            201,
        )
        actor = admin.call(
            "POST", "/v1/actors", {"type": "account_user", "name": "alice", "email": EMAIL}, 201
        )
        env = {"ZG_API_URL": admin.base_url, "ZG_STATE_DIR": str(tmp_path)}
        cli = _cli(["sign-in", admin.boot["account_slug"], "--no-browser", "--json"], env)
        request_cleanup(cli)
        assert cli.stderr is not None
        url = loopback_uri = ""
        for line in cli.stderr:
            if match := re.search(r"^\s+(https?://\S+)", line):
                url = match.group(1)
            elif match := re.search(r"come back to (http://127\.0\.0\.1:\d+/callback)", line):
                loopback_uri = match.group(1)
                break
        assert url.startswith(provider.issuer), url
        asyncio.run(_browse(url, loopback_uri))
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 0, err
        answer = json.loads(out)
        token_file = Path(answer["token_file"])
        assert token_file.parent == tmp_path
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert token
        assert token not in out + err  # the CLI never prints the token
        tokens = admin.call("GET", f"/v1/actors/{actor['id']}/client_tokens")["data"]
        assert len(tokens) == 1

        done = subprocess.run(
            [script("zerogate"), "sign-out"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert not token_file.exists()
        tokens = admin.call("GET", f"/v1/actors/{actor['id']}/client_tokens")["data"]
        assert all(t.get("revoked_at") for t in tokens) or tokens == []
        again = subprocess.run(
            [script("zerogate"), "sign-out"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert again.returncode == 0
        assert "not signed in" in again.stdout
    finally:
        admin.close()


def test_sign_in_without_the_api_url_names_the_setting(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zerogate.client.main", "sign-in", "acme"],
        env={k: v for k, v in os.environ.items() if not k.startswith("ZG_")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "ZG_API_URL" in done.stderr
