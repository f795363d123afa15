"""Idle agent sessions one signaling process holds: memory per session, CPU on heartbeats.

Starts nats-server, Postgres, the api, the relay registry and one signaling
process on loopback, then opens ``--sessions`` client WebSockets (each a
client device of one service account, so each a real ``client.init``), keeps
them heartbeating every 10 s as agents do, and reports: connect rate,
signaling's resident memory before and after (per session), and the CPU
signaling spends over ``--idle`` seconds of heartbeats alone. Asserts
nothing.

    python bench/bench_signaling_sessions.py [--sessions 10000] [--idle 60] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from zerogate.common.messages.signaling import HEARTBEAT_INTERVAL
from zerogate.common.servers import NatsServer, PostgresServer
from zerogate.signaling import __version__
from zerogate.testing.stack import ControlPlane

CONNECT_CONCURRENCY = 64


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _session(url: str, token: str, ready: list[ClientConnection]) -> None:
    query = urlencode({
        "public_key": base64.b64encode(os.urandom(32)).decode(),
        "id": f"bench-{uuid.uuid4().hex}",
        "name": "bench",
        "version": __version__,
    })  # fmt: skip
    ws = await websockets.connect(
        f"{url}/v1/client?{query}",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=60,
        ping_interval=None,
        max_size=None,
        compression=None,  # as agents connect
    )
    async with asyncio.timeout(60):
        while json.loads(await ws.recv())["type"] != "init":
            pass
    ready.append(ws)


async def _heartbeats(sessions: list[ClientConnection], stop: asyncio.Event) -> None:
    """Each session heartbeats every HEARTBEAT_INTERVAL, spread evenly.

    Runs from the first connect on, as agents heartbeat from theirs: a session
    opened while others still connect must not fall silent for the server's
    30 s. A session that joins during a round gets its first beat next round.
    """
    frame = json.dumps({"type": "heartbeat"}, separators=(",", ":"))  # as agents send it
    while not stop.is_set():
        started = time.monotonic()
        round_ = list(sessions)
        step = HEARTBEAT_INTERVAL / max(1, len(round_))
        for i, ws in enumerate(round_):
            if stop.is_set():
                return
            try:
                await ws.send(frame)
            except websockets.ConnectionClosed:
                continue
            due = started + (i + 1) * step
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
        rest = started + HEARTBEAT_INTERVAL - time.monotonic()
        if rest > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rest)


async def _drain(ws: ClientConnection) -> None:
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass


async def run(count: int, idle: float, url: str, token: str, pid: int) -> dict[str, Any]:
    before_rss = _rss_kib(pid)
    sessions: list[ClientConnection] = []
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> None:
        async with limit:
            await _session(url, token, sessions)

    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeats(sessions, stop))
    started = time.monotonic()
    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    connect_s = time.monotonic() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    readers = [asyncio.create_task(_drain(ws)) for ws in sessions]
    await asyncio.sleep(HEARTBEAT_INTERVAL)  # settle: a full round of heartbeats
    after_rss = _rss_kib(pid)
    cpu0, t0 = _cpu_s(pid), time.monotonic()
    await asyncio.sleep(idle)
    cpu1, t1 = _cpu_s(pid), time.monotonic()
    alive = sum(1 for ws in sessions if ws.close_code is None)
    closed = Counter(str(ws.close_code) for ws in sessions if ws.close_code is not None)
    beats = (t1 - t0) * len(sessions) / HEARTBEAT_INTERVAL
    stop.set()
    await beat
    for ws in sessions:
        await ws.close()
    for task in readers:
        task.cancel()
    return {
        "sessions": len(sessions),
        "alive_after_idle": alive,
        "close_codes": dict(closed),
        "failures": len(failures),
        "first_failure": repr(failures[0])[:200] if failures else None,
        "connect_seconds": round(connect_s, 1),
        "connects_per_second": round(len(sessions) / connect_s, 1) if connect_s else None,
        "rss_before_mib": round(before_rss / 1024, 1),
        "rss_after_mib": round(after_rss / 1024, 1),
        "kib_per_session": round((after_rss - before_rss) / max(1, len(sessions)), 1),
        "idle_seconds": round(t1 - t0, 1),
        "heartbeats_per_second": round(len(sessions) / HEARTBEAT_INTERVAL, 1),
        "signaling_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "cpu_us_per_heartbeat": round(1e6 * (cpu1 - cpu0) / max(1.0, beats), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.sessions * 2 + 1024)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    with tempfile.TemporaryDirectory(prefix="zg-bench-sessions-") as tmp:
        state = Path(tmp)
        with NatsServer(state / "nats") as nats, PostgresServer(state / "pg") as pg:
            database = pg.create_database("bench")
            with ControlPlane(nats_url=nats.url, database_url=database, workdir=state) as plane:
                plane.api()
                plane.registry()
                signaling = plane.signaling()
                admin = plane.admin()
                token = admin.client_token(admin.service_account())
                admin.close()
                url = f"ws://127.0.0.1:{signaling.ports['http']}"
                assert signaling.pid is not None
                result = asyncio.run(run(args.sessions, args.idle, url, token, signaling.pid))
            pg.remove_data()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"idle sessions on one signaling process (goal >= 10,000): {result['sessions']} open, "
          f"{result['alive_after_idle']} alive after {result['idle_seconds']} s, "
          f"{result['failures']} failed to open")  # fmt: skip
    if result["close_codes"]:
        print(f"  closed during the run, by close code: {result['close_codes']}")
    print(f"  connect: {result['connect_seconds']} s ({result['connects_per_second']}/s)")
    print(f"  memory: {result['rss_before_mib']} -> {result['rss_after_mib']} MiB "
          f"({result['kib_per_session']} KiB per session)")  # fmt: skip
    each = result["cpu_us_per_heartbeat"]
    print(f"  heartbeats: {result['heartbeats_per_second']}/s cost signaling "
          f"{result['signaling_cpu_percent']} % of a core ({each} us each)")  # fmt: skip
    if result["first_failure"]:
        print(f"  first failure: {result['first_failure']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
