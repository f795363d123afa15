"""REST list throughput in-process: ``GET /v1/resources?limit=50`` over httpx's ASGITransport.

Seeds one account with 200 resources on a real Postgres (``ZG_DATABASE_URL`` if
set, else one started under ``.zerogate/``), builds the app as the tests do (no
bus handlers), and issues the request from ``--concurrency`` tasks for
``--duration`` seconds. Prints requests/s, latency percentiles and
the process's CPU time per request; with
``--profile FILE`` it also writes a cProfile of the measured run. Asserts nothing.

    .venv/bin/python bench/bench_rest_list.py [--duration 5] [--concurrency 4]
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


async def run(
    database_url: str, duration: float, concurrency: int, profile: str | None
) -> dict[str, Any]:
    await db.migrate_url(database_url)
    pool = await db.create_pool(database_url, min_size=concurrency, max_size=concurrency)
    try:
        token = await seed(pool)
        settings = ApiSettings(database_url=SecretStr(database_url), nats_url=None)
        app = create_app(settings, pool=pool, bus=None, bus_handlers=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://api.bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            first = await http.get(PATH)
            assert first.status_code == 200, first.text
            latencies: list[float] = []

            async def worker(until: float) -> None:
                while time.perf_counter() < until:
                    t0 = time.perf_counter()
                    await http.get(PATH)
                    latencies.append(time.perf_counter() - t0)

            await asyncio.gather(*(worker(time.perf_counter() + 1.0) for _ in range(concurrency)))
            latencies.clear()
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            cpu0 = time.process_time()
            start = time.perf_counter()
            await asyncio.gather(*(worker(start + duration) for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu0
            if profiler is not None and profile is not None:
                profiler.disable()
                profiler.dump_stats(profile)
    finally:
        await pool.close()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "path": PATH,
        "requests": len(ms),
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
        # CPU of this process (app and client, not Postgres) per request: steadier
        # than requests/s on a shared machine.
        "cpu_ms_per_request": round(1000 * cpu / max(len(ms), 1), 3),
        "concurrency": concurrency,
        "python": sys.version.split()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--profile", default=None, help="write a cProfile of the run here")
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
        result = asyncio.run(run(database_url, args.duration, args.concurrency, args.profile))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
