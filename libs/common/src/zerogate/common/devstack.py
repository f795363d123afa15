"""``make dev``: the whole stack on this machine, real NATS and real Postgres.

Starts nats-server (JetStream), Postgres (or uses ``ZG_DATABASE_URL``), then
each Zerogate service as its own process, prints every address, writes
``.zerogate/dev.env`` with ``export`` lines, and runs until Ctrl-C or SIGTERM,
when it stops everything it started (by PID, newest first).

Every listener binds ``ZG_BIND_IP`` (default ``127.0.0.1``; ``0.0.0.0`` serves
other hosts and namespaces). Ports: ``ZG_API_PORT`` (8080), ``ZG_NATS_PORT``
(4222), ``ZG_PG_PORT`` (any free one), ``ZG_RELAY_PORT`` (3478),
``ZG_RELAY_HTTP_PORT`` (8081), ``ZG_SIGNALING_PORT`` (8090); 0 picks a free
port, and every service reports the port it bound (``ZG_PORTS_FILE``), so
``dev.env`` always holds the real ones. The relay advertises
``ZG_RELAY_PUBLIC_IP`` (default: the bind address) and relays to
``ZG_RELAY_ALLOW_PEERS`` (comma-separated networks; default loopback, which a
stack on one machine needs). Traces of every service go to
``.zerogate/traces.jsonl`` unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from zerogate.common import devagents
from zerogate.common.errors import ConfigError
from zerogate.common.listen import PORTS_FILE_ENV, wait_for_ports
from zerogate.common.servers import NatsServer, PostgresServer, find_executable

#: (variable, default) of every port ``make dev`` listens on.
PORTS = {
    "ZG_API_PORT": 8080,
    "ZG_NATS_PORT": 4222,
    "ZG_PG_PORT": 0,
    "ZG_RELAY_PORT": 3478,
    "ZG_RELAY_HTTP_PORT": 8081,
    "ZG_SIGNALING_PORT": 8090,
}
START_TIMEOUT = 60.0


@dataclass
class Service:
    """A Zerogate process ``make dev`` runs.

    ``ports`` maps the key the process reports in its ports file to the
    variable that chose it; ``health`` builds the health URL from those ports,
    ``describe`` the line printed once it answers.
    """

    name: str
    argv: list[str]
    ports: dict[str, str]
    health: Callable[[dict[str, int]], str] | None
    describe: Callable[[dict[str, int]], str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    bound: dict[str, int] = field(default_factory=dict)


def _port(env: str) -> int:
    raw = os.environ.get(env, str(PORTS[env]))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"invalid setting {env}: {raw!r} is not a port number") from None
    if not 0 <= port < 65536:
        raise ConfigError(f"invalid setting {env}: {port} is not a port number")
    return port


def _ip_setting(name: str, default: str) -> str:
    raw = os.environ.get(name, default)
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ConfigError(f"invalid setting {name}: {raw!r} is not an IP address") from None


def _url_host(ip: str) -> str:
    """Where a client on this machine reaches a listener bound to ``ip``."""
    if ip in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard listener is reached on loopback here
        return "127.0.0.1"
    return f"[{ip}]" if ":" in ip else ip


def _wait_healthy(svc: Service, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc is not None and svc.proc.poll() is not None:
            raise ConfigError(f"{svc.name} exited with code {svc.proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own URL
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ConfigError(f"{svc.name} did not answer {url} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _optional_executable(name: str) -> str | None:
    try:
        return find_executable(name)
    except ConfigError:
        return None


def _services(bind: str, env: dict[str, str], *, agents: bool = False) -> list[Service]:
    host = _url_host(bind)
    public_ip = _ip_setting("ZG_RELAY_PUBLIC_IP", "127.0.0.1" if host == "127.0.0.1" else bind)
    default_allow = "127.0.0.0/8,::1/128" + (f",{devagents.NETWORK}" if agents else "")
    allow = [
        net.strip()
        for net in os.environ.get("ZG_RELAY_ALLOW_PEERS", default_allow).split(",")
        if net.strip()
    ]
    secret = env.get("ZG_RELAY_AUTH_SECRET") or os.urandom(16).hex()
    out = [
        Service(
            "api",
            [find_executable("zerogate-api"), "serve"],
            {"http": "ZG_API_PORT"},
            lambda p: f"http://{host}:{p['http']}/healthz",
            lambda p: f"http://{host}:{p['http']} (docs at /docs)",
            {"ZG_API_PORT": str(_port("ZG_API_PORT")), "ZG_API_HOST": bind},
        ),
        Service(
            "registry",
            [find_executable("zerogate-relay"), "registry"],
            {},
            None,
            lambda _p: "on the bus (zg.v1.relay.select)",
        ),
        Service(
            "relay",
            [
                find_executable("zerogate-relay"),
                "--listen-ip",
                bind,
                "--public-ip",
                public_ip,
                "--port",
                str(_port("ZG_RELAY_PORT")),
                "--http-ip",
                bind,
                "--http-port",
                str(_port("ZG_RELAY_HTTP_PORT")),
                *(arg for net in allow for arg in ("--allow-peer", net)),
            ],
            {"turn": "ZG_RELAY_PORT", "http": "ZG_RELAY_HTTP_PORT"},
            lambda p: f"http://{host}:{p['http']}/healthz",
            lambda p: (
                f"turn:{public_ip}:{p['turn']} (metrics at http://{host}:{p['http']}/metrics)"
            ),
            {"ZG_RELAY_AUTH_SECRET": secret},
        ),
    ]
    signaling = _optional_executable("zerogate-signaling")
    if signaling is not None:
        out.append(
            Service(
                "signaling",
                [signaling],
                {"http": "ZG_SIGNALING_PORT"},
                lambda p: f"http://{host}:{p['http']}/healthz",
                lambda p: f"ws://{host}:{p['http']}/v1/client, /v1/gateway",
                {"ZG_SIGNALING_PORT": str(_port("ZG_SIGNALING_PORT")), "ZG_SIGNALING_HOST": bind},
            )
        )
    return out


def _start(svc: Service, env: dict[str, str], state: Path) -> None:
    logs = state / "logs"
    ports_file = state / "run" / f"{svc.name}.ports.json"
    ports_file.unlink(missing_ok=True)
    log_file = logs / f"{svc.name}.log"
    with log_file.open("ab") as log:
        svc.proc = subprocess.Popen(
            svc.argv,
            env={**env, **svc.env, PORTS_FILE_ENV: str(ports_file)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    if svc.ports:
        svc.bound = wait_for_ports(
            ports_file, svc.proc, name=svc.name, timeout=START_TIMEOUT, log_file=log_file
        )
    if svc.health is not None:
        _wait_healthy(svc, svc.health(svc.bound), START_TIMEOUT)


def run_dev(state: Path, *, agents: bool = False) -> int:
    state.mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    (state / "run").mkdir(exist_ok=True)
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started: list[Service] = []
    dev_agents: devagents.DevAgents | None = None
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None
    try:
        if agents and (why := devagents.available()) is not None:
            raise ConfigError(f"AGENTS=1: {why}")
        # With the dev agents, everything listens on an address their namespaces reach.
        bind = _ip_setting("ZG_BIND_IP", devagents.BIND_IP if agents else "127.0.0.1")
        if agents:
            devagents.build_network()
        host = _url_host(bind)
        nats = NatsServer(state / "nats", host=bind, port=_port("ZG_NATS_PORT"))
        nats.start()
        nats_url = f"nats://{host}:{nats.port}"
        print(f"nats       {nats_url} (JetStream on)", flush=True)  # noqa: T201
        database_url = os.environ.get("ZG_DATABASE_URL")
        if not database_url:
            postgres = PostgresServer(state / "postgres", port=_port("ZG_PG_PORT"))
            postgres.start()
            database_url = postgres.create_database("zerogate")
        print(f"postgres   {database_url}", flush=True)  # noqa: T201
        env = {**os.environ, "ZG_DATABASE_URL": database_url, "ZG_NATS_URL": nats_url}
        if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            env.setdefault("ZG_TRACES_FILE", str(state / "traces.jsonl"))
        exported: dict[str, str] = {"ZG_DATABASE_URL": database_url, "ZG_NATS_URL": nats_url}
        for svc in _services(bind, env, agents=agents):
            if stopping:
                break
            started.append(svc)
            _start(svc, env, state)
            print(f"{svc.name:<10} {svc.describe(svc.bound)}", flush=True)  # noqa: T201
            if svc.name == "api":
                exported["ZG_API_URL"] = f"http://{host}:{svc.bound['http']}"
            elif svc.name == "signaling":
                exported["ZG_SIGNALING_URL"] = f"ws://{host}:{svc.bound['http']}"
        (state / "dev.env").write_text(
            "".join(f"export {k}={json.dumps(v)}\n" for k, v in exported.items())
        )
        if agents and not stopping:
            dev_agents = devagents.DevAgents(
                state, exported["ZG_API_URL"], exported["ZG_SIGNALING_URL"], env
            )
            command = dev_agents.start()
            lines = [
                f"gateway    in namespace {devagents.GATEWAY_NS}",
                f"client     in namespace {devagents.CLIENT_NS}",
                f"resource   http://{devagents.RESOURCE_IP}:{devagents.RESOURCE_PORT}/",
                f"try:       {command}",
            ]
            print("\n".join(lines), flush=True)  # noqa: T201
        print(  # noqa: T201
            f"environment written to {state / 'dev.env'}; logs in {state / 'logs'}; "
            "press Ctrl-C to stop",
            flush=True,
        )
        while not stopping:
            for svc in started:
                if svc.proc is not None and svc.proc.poll() is not None:
                    raise ConfigError(
                        f"{svc.name} exited with code {svc.proc.returncode}; "
                        f"see {state / 'logs' / (svc.name + '.log')}"
                    )
            time.sleep(0.5)
        return 0
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        if dev_agents is not None:
            dev_agents.stop()
        elif agents:
            devagents.remove_network()
        for svc in reversed(started):
            _stop(svc.proc)
        if postgres is not None:
            postgres.stop()
        if nats is not None:
            nats.stop()
        print("stopped", flush=True)  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zerogate-devstack", description="Run the whole Zerogate stack on this machine."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="start NATS, Postgres and every service; stop on Ctrl-C")
    dev.add_argument("--state-dir", default=".zerogate", help="where data and logs go")
    dev.add_argument(
        "--agents",
        action="store_true",
        help="as root: also a gateway, a client and a sample resource in namespaces",
    )
    args = parser.parse_args(argv)
    if args.command == "dev":
        return run_dev(Path(args.state_dir), agents=args.agents)
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
