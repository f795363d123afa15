"""Flow authorizations per second over NATS against one api process.

Seeds one account with 10,000 resources, 1,000 groups and 10,000 policies
(plus 1,000 actors, each in a few groups, and a client device each), starts a
real ``zerogate-api serve`` on its own nats-server and Postgres, then runs 20
concurrent requesters sending ``zg.v1.api.flow.authorize`` for random
(client, resource) pairs for ``--duration`` seconds. Prints throughput,
latency percentiles and the allow/deny mix. Asserts nothing.

    .venv/bin/python bench/bench_flow_authorize.py [--duration 10] [--requesters 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import nats
import uvloop

from zerogate.api import db
from zerogate.api.accounts.service import bootstrap_account
from zerogate.api.tokens.repository import create_token
from zerogate.common import subjects
from zerogate.common.listen import PORTS_FILE_ENV, wait_for_ports
from zerogate.common.messages.api import FlowAuthorizeRequest, FlowContext
from zerogate.common.servers import NatsServer, PostgresServer, find_executable

RESOURCES = 10_000
GROUPS = 1_000
POLICIES = 10_000
ACTORS = 1_000
GROUPS_PER_ACTOR = 5
GATEWAYS = 4


Seeded = tuple[str, list[tuple[str, str, list[str]]], list[str]]


async def seed(database_url: str) -> Seeded:
    """The account id, (client id, token id, resources its groups reach) and resource ids."""
    await db.migrate_url(database_url)
    pool = await db.create_pool(database_url)
    boot = await bootstrap_account(pool, slug=f"bench-{uuid.uuid4().hex[:6]}", email="a@bench.test")
    acc = boot.account_id
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        site = await conn.fetchval(
            "INSERT INTO sites (account_id, name) VALUES ($1, 'hq') RETURNING id", acc
        )
        await conn.execute(
            """INSERT INTO devices (account_id, type, site_id, external_id, name, public_key,
                                    ipv4, ipv6)
               SELECT $1, 'gateway', $2, 'gw-' || i, 'gw-' || i, 'key-' || i,
                      ('100.64.0.0'::inet + i), ('fd00:2021:1111::'::inet + i)
                 FROM generate_series(1, $3) i""",
            acc,
            site,
            GATEWAYS,
        )
        await conn.execute(
            """INSERT INTO resources (account_id, site_id, type, address, name)
               SELECT $1, $2, 'cidr',
                      '10.' || (i / 256) || '.' || (i % 256) || '.0/24', 'res-' || i
                 FROM generate_series(0, $3 - 1) i""",
            acc,
            site,
            RESOURCES,
        )
        await conn.execute(
            """INSERT INTO groups (account_id, name)
               SELECT $1, 'grp-' || i FROM generate_series(1, $2) i""",
            acc,
            GROUPS,
        )
        await conn.execute(
            """INSERT INTO actors (account_id, type, name)
               SELECT $1, 'service_account', 'sa-' || i FROM generate_series(1, $2) i""",
            acc,
            ACTORS,
        )
        groups = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM groups WHERE account_id = $1 AND kind = 'static'", acc
            )
        ]
        actors = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM actors WHERE account_id = $1 AND type = 'service_account'", acc
            )
        ]
        resources = [
            r["id"] for r in await conn.fetch("SELECT id FROM resources WHERE account_id = $1", acc)
        ]
        rng = random.Random(7)
        memberships = {(g, a) for a in actors for g in rng.sample(groups, GROUPS_PER_ACTOR)}
        await conn.copy_records_to_table(
            "memberships",
            records=[(acc, g, a) for g, a in memberships],
            columns=["account_id", "group_id", "actor_id"],
        )
        # Every resource gets one policy; a fifth of them carry conditions.
        policies = []
        conditions = json.dumps(
            [
                {"property": "remote_ip", "operator": "is_in_cidr", "values": ["198.51.100.0/24"]},
                {
                    "property": "current_time",
                    "operator": "is_in_day_of_week_time_ranges",
                    "values": ["MTWRFSU/00:00-23:59/Europe/Berlin"],
                },
            ]
        )
        for i, resource in enumerate(resources[:POLICIES]):
            policies.append(
                (acc, groups[i % len(groups)], resource, conditions if i % 5 == 0 else "[]")
            )
        await conn.executemany(
            "INSERT INTO policies (account_id, group_id, resource_id, conditions)"
            " VALUES ($1, $2, $3, $4::jsonb)",
            policies,
        )
        reach: dict[object, list[str]] = {}
        for _, group, resource, _ in policies:
            reach.setdefault(group, []).append(str(resource))
        actor_groups: dict[object, list[object]] = {}
        for group, actor in memberships:
            actor_groups.setdefault(actor, []).append(group)
        clients: list[tuple[str, str, list[str]]] = []
        for i, actor in enumerate(actors):
            row, _ = await create_token(
                conn,
                account_id=acc,
                type="client",
                actor_id=actor,
                expires_at=datetime.now(UTC) + timedelta(days=1),
            )
            client = await conn.fetchval(
                """INSERT INTO devices (account_id, type, actor_id, external_id, name, public_key,
                                        ipv4, ipv6)
                   VALUES ($1, 'client', $2, $3, $3, $3, '100.65.0.0'::inet + $4,
                           'fd00:2021:1111::10:0'::inet + $4) RETURNING id""",
                acc,
                actor,
                f"dev-{i}",
                i,
            )
            allowed = [r for g in actor_groups[actor] for r in reach.get(g, [])]
            clients.append((str(client), str(row.id), allowed))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
        await pool.close()
    return str(acc), clients, [str(r) for r in resources]


def payloads(
    account_id: str, clients: list[tuple[str, str, list[str]]], resources: list[str], n: int
) -> list[bytes]:
    """Requests made up front, so the requesters spend their time waiting on the api.
    Half ask for a resource the client's groups reach, half for a random one."""
    rng = random.Random(11)
    out = []
    for i in range(n):
        client, token, allowed = rng.choice(clients)
        resource = rng.choice(allowed) if allowed and i % 2 == 0 else rng.choice(resources)
        msg = FlowAuthorizeRequest(
            account_id=account_id,
            client_id=client,
            resource_id=resource,
            token_id=token,
            context=FlowContext(remote_ip="198.51.100.7", country="DE"),
        )
        out.append(msg.model_dump_json().encode())
    return out


async def load(
    nats_url: str, requests: list[bytes], requesters: int, duration: float
) -> dict[str, object]:
    nc = await nats.connect(nats_url)
    latencies: list[float] = []
    decisions = {"allow": 0, "deny": 0}
    errors = 0
    stop_at = time.monotonic() + duration
    rng = random.Random(13)

    async def requester() -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            payload = rng.choice(requests)
            t0 = time.perf_counter()
            try:
                raw = await nc.request(subjects.FLOW_AUTHORIZE, payload, timeout=5)
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if raw.headers and raw.headers.get("Zg-Error"):
                errors += 1
                continue
            decisions[json.loads(raw.data)["decision"]] += 1

    started = time.monotonic()
    await asyncio.gather(*(requester() for _ in range(requesters)))
    elapsed = time.monotonic() - started
    await nc.close()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "requests": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "errors": errors,
        "allow": decisions["allow"],
        "deny": decisions["deny"],
    }


def wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--requesters", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    state = Path(".zerogate") / f"bench-flow-{os.getpid()}"
    api: subprocess.Popen[bytes] | None = None
    try:
        with NatsServer(state / "nats") as nats_server, PostgresServer(state / "pg") as pg:
            database_url = pg.create_database("bench")
            t0 = time.monotonic()
            account_id, clients, resources = asyncio.run(seed(database_url))
            seeded = time.monotonic() - t0
            env = {
                **os.environ,
                "ZG_DATABASE_URL": database_url,
                "ZG_NATS_URL": nats_server.url,
                "ZG_API_PORT": "0",
                PORTS_FILE_ENV: str((state / "api.ports.json").resolve()),
                "ZG_LOG_LEVEL": "WARNING",
            }
            env.pop("ZG_TRACES_FILE", None)
            api = subprocess.Popen(
                [find_executable("zerogate-api"), "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            api_port = wait_for_ports(state / "api.ports.json", api, name="api", timeout=60)["http"]
            wait_healthy(f"http://127.0.0.1:{api_port}/healthz", timeout=60)
            requests = payloads(account_id, clients, resources, 20_000)
            # Warm up connections and caches, then measure.
            uvloop.run(load(nats_server.url, requests, args.requesters, 2))
            cpu0 = cpu_seconds(api.pid)
            result = uvloop.run(load(nats_server.url, requests, args.requesters, args.duration))
            result["api_cpu_percent"] = round(
                100 * (cpu_seconds(api.pid) - cpu0) / args.duration, 1
            )
            pg.stop()
            pg.remove_data()
            result.update(
                resources=RESOURCES,
                groups=GROUPS,
                policies=POLICIES,
                actors=ACTORS,
                requesters=args.requesters,
                duration_s=args.duration,
                seed_s=round(seeded, 1),
                python=sys.version.split()[0],
                cores=os.cpu_count(),
            )
    finally:
        if api is not None and api.poll() is None:
            api.terminate()
            api.wait(10)
        shutil.rmtree(state, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print("flow.authorize over NATS, one api process")
        for key, value in result.items():
            print(f"  {key:<16} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
