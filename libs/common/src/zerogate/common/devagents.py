"""``make dev AGENTS=1``: a gateway, a client and a sample resource in namespaces of their own.

Run as root. Builds, next to the dev stack::

    host  lo 10.203.0.1/32 (every service of the stack listens here)
      ├─ zgdev-c ── zgdev-client   10.203.1.2   zerogate up
      └─ zgdev-g ── zgdev-gateway  10.203.2.2   zerogate-gateway
                        └─ lan ── zgdev-resource 172.31.99.10:8000 (a web page)

and configures an account over the REST API: a site with the resource
``172.31.99.0/24``, a policy for a service account, a gateway token and a
client token. The host does not forward between the namespaces, so the
client reaches the gateway through the dev relay. Everything is removed when
the stack stops (and any leftover of a crashed run when it starts).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerogate.common.errors import ConfigError
from zerogate.common.servers import find_executable

BIND_IP = "10.203.0.1"
NETWORK = "10.203.0.0/16"
CLIENT_NS, GATEWAY_NS, RESOURCE_NS = "zgdev-client", "zgdev-gateway", "zgdev-resource"
HOST_LINKS = ("zgdev-c", "zgdev-g")
RESOURCE_IP = "172.31.99.10"
RESOURCE_NET = "172.31.99.0/24"
RESOURCE_PORT = 8000
COMMAND_TIMEOUT = 15.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        raise ConfigError(f"dev agents: ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _in(ns: str, *args: str) -> None:
    _ip("netns", "exec", ns, *args)


def available() -> str | None:
    """Why the dev agents cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "the dev gateway and client need root (network namespaces, TUN devices)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            return f"{tool} is missing: install the Debian package {package}"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing: the kernel's TUN driver is needed"
    return None


def remove_network() -> None:
    """Delete our namespaces and host links (leftovers of a crashed run too)."""
    for ns in (CLIENT_NS, GATEWAY_NS, RESOURCE_NS):
        pids = _ip("netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        _ip("netns", "del", ns, check=False)
    for link in HOST_LINKS:
        _ip("link", "del", link, check=False)
    _ip("addr", "del", f"{BIND_IP}/32", "dev", "lo", check=False)


def build_network() -> None:
    remove_network()
    # On the host's loopback: local to the host, reached from the namespaces
    # through their uplinks, never announced anywhere else.
    _ip("addr", "add", f"{BIND_IP}/32", "dev", "lo")
    for ns in (CLIENT_NS, GATEWAY_NS, RESOURCE_NS):
        _ip("netns", "add", ns)
        _in(ns, "ip", "link", "set", "lo", "up")
    for host_if, ns, subnet in (
        ("zgdev-c", CLIENT_NS, "10.203.1"),
        ("zgdev-g", GATEWAY_NS, "10.203.2"),
    ):
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("addr", "add", f"{subnet}.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _in(ns, "ip", "addr", "add", f"{subnet}.2/24", "dev", "eth0")
        _in(ns, "ip", "link", "set", "eth0", "up")
        _in(ns, "ip", "route", "add", "default", "via", f"{subnet}.1")
    _ip("link", "add", "lan0", "netns", GATEWAY_NS, "type", "veth", "peer", "name", "eth0",
        "netns", RESOURCE_NS)  # fmt: skip
    _in(GATEWAY_NS, "ip", "addr", "add", "172.31.99.1/24", "dev", "lan0")
    _in(GATEWAY_NS, "ip", "link", "set", "lan0", "up")
    _in(RESOURCE_NS, "ip", "addr", "add", f"{RESOURCE_IP}/24", "dev", "eth0")
    _in(RESOURCE_NS, "ip", "link", "set", "eth0", "up")


class _Rest:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=COMMAND_TIMEOUT) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ConfigError(
                f"dev agents: {method} {path}: {exc.code} {exc.read()[:300]!r}"
            ) from exc
        return json.loads(raw) if raw else None


@dataclass
class DevAgents:
    state: Path
    api_url: str
    signaling_url: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def configure(self) -> tuple[str, str]:
        """Bootstrap an account and everything the agents need; returns (gateway, client) tokens."""
        slug = f"dev-{int(time.time())}"
        boot = subprocess.run(
            [find_executable("zerogate-api"), "bootstrap", "--account-slug", slug,
             "--email", f"admin@{slug}.test"],
            env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if boot.returncode != 0:
            raise ConfigError(f"dev agents: bootstrap failed: {boot.stderr.strip()[-300:]}")
        admin = json.loads(boot.stdout.strip().splitlines()[-1])
        (self.state / "dev-admin.json").write_text(json.dumps(admin))
        (self.state / "dev-admin.json").chmod(0o600)
        rest = _Rest(self.api_url, admin["token"])
        site = rest.call("POST", "/v1/sites", {"name": "dev-site"})
        gateway_token = rest.call("POST", f"/v1/sites/{site['id']}/gateway_tokens", {})["token"]
        resource = rest.call("POST", "/v1/resources", {
            "type": "cidr", "address": RESOURCE_NET, "name": "dev web", "site_id": site["id"],
        })  # fmt: skip
        account = rest.call("POST", "/v1/actors", {"type": "service_account", "name": "dev client"})
        group = rest.call("POST", "/v1/groups", {"name": "dev"})
        rest.call("PUT", f"/v1/groups/{group['id']}/members", {"actor_ids": [account["id"]]})
        rest.call("POST", "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]})
        client_token = rest.call("POST", f"/v1/actors/{account['id']}/client_tokens", {})["token"]
        return gateway_token, client_token

    def start(self) -> str:
        """Network, account, resource, gateway, client; returns the command that reaches it."""
        build_network()
        gateway_token, client_token = self.configure()
        web = self.state / "dev-web"
        web.mkdir(exist_ok=True)
        (web / "index.html").write_text("Hello from a Zerogate resource.\n")
        serve = [sys.executable, "-m", "http.server", str(RESOURCE_PORT)]
        self._spawn(
            RESOURCE_NS, "resource", [*serve, "--bind", RESOURCE_IP, "--directory", str(web)], {}
        )
        common = {
            "ZG_SIGNALING_URL": self.signaling_url,
            "ZG_STATE_DIR": str(self.state / "agents"),
            "ZG_TRACES_FILE": self.env.get("ZG_TRACES_FILE", ""),
        }
        self._spawn(GATEWAY_NS, "gateway", [find_executable("zerogate-gateway")],
                    {**common, "ZG_TOKEN": gateway_token, "ZG_ID": "dev-gateway"})  # fmt: skip
        control = self.state / "run" / "client.sock"
        self._spawn(CLIENT_NS, "client", [find_executable("zerogate"), "up"],
                    {**common, "ZG_TOKEN": client_token, "ZG_ID": "dev-client",
                     "ZG_CONTROL_SOCKET": str(control)})  # fmt: skip
        return f"ip netns exec {CLIENT_NS} curl http://{RESOURCE_IP}:{RESOURCE_PORT}/"

    def _spawn(self, ns: str, name: str, argv: list[str], extra: dict[str, str]) -> None:
        env = {k: v for k, v in self.env.items() if not k.startswith("ZG_") or k == "ZG_LOG_LEVEL"}
        env.update({k: v for k, v in extra.items() if v})
        with (self.state / "logs" / f"{name}.log").open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, *argv],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        remove_network()
