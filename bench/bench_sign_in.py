"""Sign-in round trip against a local OpenID provider (panva's oidc-provider on Node).

Starts Postgres (``ZG_DATABASE_URL`` if set, else one under ``.zerogate/``) and
the test OpenID provider, builds the api in-process (as the tests do), creates
an account with the provider and a user, then runs ``--count`` complete
scripted sign-ins one after the other, each timed from the CLI's first request
to its token in hand:

    GET /v1/sign_in/{slug}  → provider /auth → login page → POST login → consent
    page → POST consent → api callback (code exchange, ID token checks) →
    loopback redirect → POST /v1/sign_in/token

The browser is plain HTTP (cookies kept, no redirects followed by itself); the
provider runs on loopback, the api in this process. Prints median, p90, min and
max in milliseconds. Asserts nothing.

    .venv/bin/python bench/bench_sign_in.py [--count 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from zerogate.api import db
from zerogate.api.accounts.service import bootstrap_account
from zerogate.api.app import create_app
from zerogate.api.settings import ApiSettings
from zerogate.common.servers import PostgresServer
from zerogate.testing.oidc import OidcClient, OidcProvider, sign_in_browser

API = "http://api.bench"
CALLBACK = API + "/v1/sign_in/callback"
LOOPBACK = "http://127.0.0.1:53682/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def run(database_url: str, issuer: str, count: int) -> dict[str, Any]:
    await db.migrate_url(database_url)
    pool = await db.create_pool(database_url, min_size=2, max_size=4)
    settings = ApiSettings(
        database_url=SecretStr(database_url),
        nats_url=None,
        rate_limit_ip_burst=1_000_000,
        rate_limit_ip_per_s=1e6,
    )
    app = create_app(settings, pool=pool, bus=None, bus_handlers=False)
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    boot = await bootstrap_account(pool, slug=slug, email="admin@bench.test")
    times: list[float] = []
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=API,
            headers={"Authorization": f"Bearer {boot.token}"},
        ) as admin:
            provider = (
                await admin.post(
                    "/v1/auth_providers",
                    json={"name": "local", "issuer": issuer, "client_id": "zg-bench"},
                )
            ).json()
            user = (
                await admin.post(
                    "/v1/actors",
                    json={"type": "account_user", "name": "u", "email": "user@bench.test"},
                )
            ).json()
        for i in range(count + 1):  # the first warms caches and connections
            verifier, challenge = pkce()
            start = httpx.URL(
                f"{API}/v1/sign_in/{slug}",
                params={
                    "provider": provider["id"],
                    "redirect_uri": LOOPBACK,
                    "code_challenge": challenge,
                },
            )
            async with httpx.AsyncClient(
                mounts={API: httpx.ASGITransport(app=app)}, follow_redirects=False, timeout=10
            ) as browser:
                t0 = time.perf_counter()
                landed = await sign_in_browser(
                    browser, str(start), login=user["email"], stop_at=LOOPBACK
                )
                code = httpx.URL(landed.headers["location"]).params["code"]
                answer = await browser.post(
                    f"{API}/v1/sign_in/token",
                    json={"code": code, "code_verifier": verifier, "redirect_uri": LOOPBACK},
                )
                elapsed = time.perf_counter() - t0
            if answer.status_code != 200:
                raise RuntimeError(f"sign-in failed: {answer.text}")
            if i:
                times.append(elapsed * 1000)
    finally:
        await app.state.oidc_cache.http.aclose()
        await pool.close()
    times.sort()
    return {
        "sign_ins": len(times),
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[max(0, int(len(times) * 0.9) - 1)], 1),
        "min_ms": round(times[0], 1),
        "max_ms": round(times[-1], 1),
        "python": sys.version.split()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    state = Path(".zerogate") / f"bench-sign-in-{os.getpid()}"
    with ExitStack() as stack:
        database_url = os.environ.get("ZG_DATABASE_URL")
        if not database_url:
            pg = PostgresServer(state / "pg")
            stack.callback(shutil.rmtree, state, ignore_errors=True)
            stack.callback(shutil.rmtree, pg.data_dir, ignore_errors=True)
            stack.callback(pg.log_file.unlink, missing_ok=True)
            stack.enter_context(pg)
            database_url = pg.create_database("bench")
        provider = stack.enter_context(
            OidcProvider(Path(".zerogate") / "oidc", [OidcClient("zg-bench", (CALLBACK,))])
        )
        result = asyncio.run(run(database_url, provider.issuer, args.count))
    if args.json:
        print(json.dumps(result))
    else:
        print("sign-in round trip (start to token), local oidc-provider, api in-process")
        for key, value in result.items():
            print(f"  {key:<10} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
