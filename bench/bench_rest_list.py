"""REST list throughput in-process: ``GET /v1/resources?limit=50`` over httpx's ASGITransport.

Seeds one account with 200 resources on a real Postgres (``ZG_DATABASE_URL`` if
set, else one started under ``.zerogate/``), builds the app as the tests do (no
bus handlers) twice, with the rate limiter off and on (limits out of reach, so
every request is charged to its account's bucket in Postgres and none refused),
and issues the request from ``--concurrency`` tasks for ``--duration`` seconds
per variant, in ``--rounds`` alternating rounds. Prints requests/s, latency
percentiles and the process's CPU time per request of each variant, and the
limiter's overhead; with ``--profile FILE`` it also writes a cProfile of the
measured run. Asserts nothing.

    .venv/bin/python bench/bench_rest_list.py [--duration 5] [--rounds 6] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
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

RESOURCES = 200
PATH = "/v1/resources?limit=50"


async def seed(pool: Any) -> str:
    boot = await bootstrap_account(pool, slug=f"bench-{uuid.uuid4().hex[:8]}", email="a@b.test")
    async with pool.acquire() as conn:
        site = await conn.fetchval(
            "INSERT INTO sites (account_id, name) VALUES ($1, 'hq') RETURNING id", boot.account_id
        )
        await conn.execute(
            """INSERT INTO resources (account_id, site_id, type, address, name, filters)
               SELECT $1, $2, 'cidr', '10.' || (i / 256) || '.' || (i % 256) || '.0/24',
                      'res-' || i, '[{"protocol": "tcp", "ports": ["443"]}]'::jsonb
                 FROM generate_series(0, $3 - 1) i""",
            boot.account_id,
            site,
            RESOURCES,
        )
    return boot.token


VARIANTS = ("limiter_off", "limiter_on")


async def measure(
    http: httpx.AsyncClient, path: str, concurrency: int, duration: float
) -> tuple[list[float], float, float]:
    """Latencies, wall seconds and this process's CPU seconds of one round."""
    latencies: list[float] = []

    async def worker(until: float) -> None:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            response = await http.get(path)
            latencies.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text  # the limiter never refuses here

    cpu0 = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + duration) for _ in range(concurrency)))
    return latencies, time.perf_counter() - start, time.process_time() - cpu0


def figures(latencies: list[float], elapsed: float, cpu: float) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
        # CPU of this process (app and client, not Postgres) per request: steadier
        # than requests/s on a shared machine.
        "cpu_ms_per_request": round(1000 * cpu / max(len(ms), 1), 3),
    }


async def run(
    database_url: str,
    path: str,
    duration: float,
    concurrency: int,
    rounds: int,
    profile: str | None,
) -> dict[str, Any]:
    """The same requests with the rate limiter off and on, in alternating rounds
    (off/on, on/off, ...) so that drift of a shared machine hits both alike. The
    limiter's limits are out of reach: every request is charged, none refused."""
    await db.migrate_url(database_url)
    pool = await db.create_pool(database_url, min_size=concurrency, max_size=concurrency)
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        token = await seed(pool)
        base = ApiSettings(
            database_url=SecretStr(database_url),
            nats_url=None,
            rate_limit_account_per_s=1e9,
            rate_limit_account_burst=1_000_000_000,
        )
        for variant in VARIANTS:
            settings = base.model_copy(update={"rate_limit_enabled": variant == "limiter_on"})
            app = create_app(settings, pool=pool, bus=None, bus_handlers=False)
            clients[variant] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://api.bench",
                headers={"Authorization": f"Bearer {token}"},
            )
        for http in clients.values():  # warm up both
            await measure(http, path, concurrency, 1.0)
        totals: dict[str, tuple[list[float], float, float]] = {v: ([], 0.0, 0.0) for v in VARIANTS}
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        for round_no in range(rounds):
            order = VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                lat, elapsed, cpu = await measure(
                    clients[variant], path, concurrency, duration / rounds
                )
                done, wall, used = totals[variant]
                totals[variant] = (done + lat, wall + elapsed, used + cpu)
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)
    finally:
        for http in clients.values():
            await http.aclose()
        await pool.close()
    result: dict[str, Any] = {"path": path}
    for variant in VARIANTS:
        result[variant] = figures(*totals[variant])
    off, on = result["limiter_off"], result["limiter_on"]
    result["limiter_overhead"] = {
        "requests_per_s_pct": round(100 * (1 - on["requests_per_s"] / off["requests_per_s"]), 1),
        "cpu_ms_per_request": round(on["cpu_ms_per_request"] - off["cpu_ms_per_request"], 3),
        "p50_ms": round(on["p50_ms"] - off["p50_ms"], 2),
    }
    result.update(
        concurrency=concurrency,
        duration_s_each=duration,
        rounds=rounds,
        python=sys.version.split()[0],
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per variant")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of off/on")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--profile", default=None, help="write a cProfile of the run here")
    parser.add_argument(
        "--path", default=PATH, help="the GET to measure (e.g. /v1/account, the lightest)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with ExitStack() as stack:
        database_url = os.environ.get("ZG_DATABASE_URL")
        if not database_url:
            state = Path(".zerogate") / f"bench-rest-{os.getpid()}"
            pg = PostgresServer(state / "pg")
            # Removed after the server stops (an ExitStack unwinds last-in first-out);
            # as root the data directory may live outside ``state``.
            stack.callback(shutil.rmtree, state, ignore_errors=True)
            stack.callback(shutil.rmtree, pg.data_dir, ignore_errors=True)
            stack.callback(pg.log_file.unlink, missing_ok=True)
            stack.enter_context(pg)
            database_url = pg.create_database("bench")
        result = asyncio.run(
            run(database_url, args.path, args.duration, args.concurrency, args.rounds, args.profile)
        )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
