"""``make dev``: the whole stack on this machine, real NATS and real Postgres.

Starts nats-server (JetStream), Postgres (or uses ``ZG_DATABASE_URL``), then
each Zerogate service as its own process, prints every address, writes
``.zerogate/dev.env`` with ``export`` lines, and runs until Ctrl-C or SIGTERM,
when it stops everything it started (by PID, newest first).

Ports: ``ZG_API_PORT`` (default 8080), ``ZG_NATS_PORT`` (default 4222),
``ZG_RELAY_PORT`` (default 3478), ``ZG_RELAY_HTTP_PORT`` (default 8081).
Traces of every service go to ``.zerogate/traces.jsonl`` unless
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from zerogate.common.errors import ConfigError
from zerogate.common.servers import NatsServer, PostgresServer, find_executable


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None
    address: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None


def _port(env: str, default: int) -> int:
    raw = os.environ.get(env, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"invalid setting {env}: {raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"invalid setting {env}: {port} is not a port number")
    return port


def _wait_healthy(svc: Service, timeout: float) -> None:
    if svc.health_url is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc is not None and svc.proc.poll() is not None:
            raise ConfigError(f"{svc.name} exited with code {svc.proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(svc.health_url, timeout=1) as resp:  # noqa: S310 - our own URL
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ConfigError(f"{svc.name} did not answer {svc.health_url} within {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _services(env: dict[str, str]) -> list[Service]:
    api_port = _port("ZG_API_PORT", 8080)
    relay_port = _port("ZG_RELAY_PORT", 3478)
    relay_http = _port("ZG_RELAY_HTTP_PORT", 8081)
    out: list[Service] = []
    try:
        out.append(
            Service(
                "api",
                [find_executable("zerogate-api"), "serve"],
                f"http://127.0.0.1:{api_port}/healthz",
                f"http://127.0.0.1:{api_port} (docs at /docs)",
                {"ZG_API_PORT": str(api_port), "ZG_API_HOST": "127.0.0.1"},
            )
        )
        out.append(
            Service(
                "relay-registry",
                [find_executable("zerogate-relay"), "registry"],
                None,
                "on the bus (zg.v1.relay.select)",
            )
        )
        secret = env.get("ZG_RELAY_AUTH_SECRET") or os.urandom(16).hex()
        out.append(
            Service(
                "relay",
                [
                    find_executable("zerogate-relay"),
                    "--listen-ip",
                    "127.0.0.1",
                    "--public-ip",
                    "127.0.0.1",
                    "--port",
                    str(relay_port),
                    "--http-port",
                    str(relay_http),
                    "--allow-peer",
                    "127.0.0.0/8",
                ],
                f"http://127.0.0.1:{relay_http}/healthz",
                f"turn:127.0.0.1:{relay_port} (metrics at http://127.0.0.1:{relay_http}/metrics)",
                {"ZG_RELAY_AUTH_SECRET": secret},
            )
        )
    except ConfigError:
        raise
    return out


def run_dev(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started: list[Service] = []
    nats = NatsServer(state / "nats", port=_port("ZG_NATS_PORT", 4222))
    postgres: PostgresServer | None = None
    try:
        nats.start()
        print(f"nats       {nats.url} (JetStream on)", flush=True)  # noqa: T201
        database_url = os.environ.get("ZG_DATABASE_URL")
        if not database_url:
            pg_port = _port("ZG_PG_PORT", 0) if os.environ.get("ZG_PG_PORT") else 0
            postgres = PostgresServer(state / "postgres", port=pg_port)
            postgres.start()
            database_url = postgres.create_database("zerogate")
        print(f"postgres   {database_url}", flush=True)  # noqa: T201
        api_port = _port("ZG_API_PORT", 8080)
        env = {
            **os.environ,
            "ZG_DATABASE_URL": database_url,
            "ZG_NATS_URL": nats.url,
            "ZG_API_URL": f"http://127.0.0.1:{api_port}",
        }
        if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            env.setdefault("ZG_TRACES_FILE", str(state / "traces.jsonl"))
        (state / "dev.env").write_text(
            "".join(
                f"export {k}={json.dumps(env[k])}\n"
                for k in ("ZG_DATABASE_URL", "ZG_NATS_URL", "ZG_API_URL")
            )
        )
        logs = state / "logs"
        logs.mkdir(exist_ok=True)
        for svc in _services(env):
            if stopping:
                break
            with (logs / f"{svc.name}.log").open("ab") as log:
                svc.proc = subprocess.Popen(
                    svc.argv,
                    env={**env, **svc.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            started.append(svc)
            _wait_healthy(svc, 60)
            print(f"{svc.name:<10} {svc.address}", flush=True)  # noqa: T201
        print(  # noqa: T201
            f"environment written to {state / 'dev.env'}; logs in {logs}; press Ctrl-C to stop",
            flush=True,
        )
        while not stopping:
            for svc in started:
                if svc.proc is not None and svc.proc.poll() is not None:
                    raise ConfigError(f"{svc.name} exited with code {svc.proc.returncode}")
            time.sleep(0.5)
        return 0
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        for svc in reversed(started):
            _stop(svc.proc)
        if postgres is not None:
            postgres.stop()
        nats.stop()
        print("stopped", flush=True)  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zerogate-devstack", description="Run the whole Zerogate stack on this machine."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="start NATS, Postgres and every service; stop on Ctrl-C")
    dev.add_argument("--state-dir", default=".zerogate", help="where data and logs go")
    args = parser.parse_args(argv)
    if args.command == "dev":
        return run_dev(Path(args.state_dir))
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
