"""The end-to-end lab: a client and a gateway behind NATs; control plane and relays outside.

::

    client host ── client NAT ──┐                 ┌── gateway NAT ── gateway host ── resource host
    10.10.1.2        198.18.1.2 │   "internet"    │ 198.18.2.2         10.20.1.2    172.16.5.10
                                └── inet ns ──────┘                    172.16.5.1   fd00:5::10
                                    198.18.0.2  NATS, Postgres, api, registry, signaling
                                    198.18.0.11 relay-a   198.18.0.12 relay-b

Everything runs for real: nats-server and Postgres (inside the internet
namespace), ``zerogate-api``, ``zerogate-relay registry``, ``zerogate-relay``,
``zerogate-signaling``, ``zerogate-gateway`` and ``zerogate up``. The NATs are
iptables MASQUERADE (``random_fully`` makes them endpoint-dependent, which
defeats hole punching and forces the relay). Addresses come from the
benchmarking range 198.18.0.0/15 (which relays refuse unless allowed: the lab
allows it) and private ranges; nothing leaves the namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerogate.common.servers import NatsServer, PostgresServer
from zerogate.testing.lab import Namespace, NatSite, NetLab
from zerogate.testing.stack import Admin, ControlPlane, ServiceProcess, script

INTERNET = "198.18.0.0/15"
SERVER_IP = "198.18.0.2"
RELAY_IPS = ("198.18.0.11", "198.18.0.12")
RESOURCE_V4 = "172.16.5.10"
RESOURCE_V6 = "fd00:5::10"
RESOURCE_NET_V4 = "172.16.5.0/24"
RESOURCE_NET_V6 = "fd00:5::/64"


@dataclass
class Agent:
    """A gateway or a client process in its namespace."""

    process: ServiceProcess
    ns: Namespace
    interface: str
    control_socket: Path | None = None

    def status(self, *, verbose: bool = False) -> dict[str, Any]:
        """``zerogate status --json`` of a client."""
        assert self.control_socket is not None
        done = self.ns.run(
            script("zerogate"), "--control-socket", str(self.control_socket), "status", "--json",
            *(["--verbose"] if verbose else []), check=False, timeout=20,
        )  # fmt: skip
        if done.returncode != 0:
            return {"error": done.stderr.strip()}
        return dict(json.loads(done.stdout))

    def ping(self, address: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        assert self.control_socket is not None
        done = self.ns.run(
            script("zerogate"), "--control-socket", str(self.control_socket), "ping", address,
            "-c", str(count), "--timeout", str(timeout), "--json",
            check=False, timeout=timeout + count + 20,
        )  # fmt: skip
        if done.stdout.strip():
            return dict(json.loads(done.stdout))
        return {"error": done.stderr.strip(), "replies": []}


@dataclass
class ZtnaLab:
    """Build with :func:`build`; :meth:`close` (or the NetLab's close) removes everything."""

    lab: NetLab
    inet: Namespace
    client_site: NatSite
    gateway_site: NatSite
    resource: Namespace
    workdir: Path
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None
    plane: ControlPlane | None = None
    signalings: list[ServiceProcess] = field(default_factory=list)
    relays: dict[str, ServiceProcess] = field(default_factory=dict)
    agents: list[Agent] = field(default_factory=list)

    @property
    def client(self) -> Namespace:
        return self.client_site.host

    @property
    def gateway(self) -> Namespace:
        return self.gateway_site.host

    @classmethod
    def build(cls, lab: NetLab, *, random_fully: bool = False) -> ZtnaLab:
        inet = lab.namespace("inet")
        inet.enable_forwarding()
        for ip in (SERVER_IP, *RELAY_IPS):
            inet.add_address("lo", f"{ip}/32")
        client = lab.nat_site(
            "cli", inet, wan=("198.18.1.2/24", "198.18.1.1/24"),
            lan=("10.10.1.2/24", "10.10.1.1/24"), random_fully=random_fully,
        )  # fmt: skip
        gateway = lab.nat_site(
            "gw", inet, wan=("198.18.2.2/24", "198.18.2.1/24"),
            lan=("10.20.1.2/24", "10.20.1.1/24"), random_fully=random_fully,
        )  # fmt: skip
        resource = lab.namespace("res")
        lab.link(
            gateway.host, resource,
            ["172.16.5.1/24", "fd00:5::1/64"], [f"{RESOURCE_V4}/24", f"{RESOURCE_V6}/64"],
        )  # fmt: skip
        workdir = lab.workdir / "ztna"
        workdir.mkdir()
        return cls(lab, inet, client, gateway, resource, workdir)

    # -- the control plane ---------------------------------------------------------------
    def start_control_plane(
        self,
        *,
        signaling: int = 1,
        relays: int = 2,
        credential_ttl: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        traces: bool = True,
    ) -> Admin:
        self.nats = NatsServer(self.workdir / "nats", host=SERVER_IP, netns=self.inet.name)
        self.nats.start()
        self.lab.on_close(self.nats.stop)
        self.postgres = PostgresServer(self.workdir / "pg", host=SERVER_IP, netns=self.inet.name)
        self.postgres.start()
        self.lab.on_close(self._stop_postgres)
        database = self.postgres.create_database("zerogate")
        self.plane = ControlPlane(
            nats_url=self.nats.url,
            database_url=database,
            workdir=self.workdir,
            ns=self.inet,
            host=SERVER_IP,
            traces_file=self.workdir / "traces.jsonl" if traces else None,
            extra_env=extra_env,
        )
        self.lab.on_close(self.plane.stop)
        self.plane.api()
        self.plane.registry(credential_ttl=credential_ttl)
        for i in range(relays):
            self.start_relay(f"relay-{'ab'[i]}", RELAY_IPS[i])
        for _ in range(signaling):
            self.signalings.append(self.plane.signaling())
        admin = self.plane.admin()
        self.wait_relays(admin, set(self.relays))
        return admin

    def wait_relays(self, admin: Admin, wanted: set[str], timeout: float = 20.0) -> None:
        """Until the registry offers exactly ``wanted`` (relays heartbeat every 5 s)."""
        deadline = time.monotonic() + timeout
        offered: set[str] = set()
        while time.monotonic() < deadline:
            reply = admin.call("GET", f"/v1/relays/nearest?count={max(1, len(wanted))}")
            offered = {offer["relay_id"] for offer in reply.get("data", reply.get("offers", []))}
            if offered == wanted:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the registry offers {sorted(offered)}, not {sorted(wanted)}")

    def _stop_postgres(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres.remove_data()

    def start_relay(self, relay_id: str, ip: str) -> ServiceProcess:
        assert self.plane is not None
        proc = self.plane.relay(relay_id=relay_id, listen_ip=ip, allow_peers=[INTERNET])
        self.relays[relay_id] = proc
        return proc

    def signaling_urls(self) -> list[str]:
        return [f"ws://{SERVER_IP}:{s.ports['http']}" for s in self.signalings if s.alive()]

    # -- agents ------------------------------------------------------------------------------
    def _agent_env(self, token: str, urls: list[str] | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZG_")}
        env.update(
            ZG_TOKEN=token,
            ZG_SIGNALING_URL=",".join(urls or self.signaling_urls()),
            ZG_ID=f"dev-{uuid.uuid4().hex[:8]}",
            ZG_LOG_LEVEL="INFO",
            ZG_STATE_DIR=str(self.workdir / "state"),
        )
        if self.plane is not None and self.plane.traces_file is not None:
            env["ZG_TRACES_FILE"] = str(self.plane.traces_file)
        env.update(extra)
        return env

    def start_gateway(self, token: str, *, urls: list[str] | None = None, **extra: str) -> Agent:
        interface = self.lab.ifname()
        env = self._agent_env(token, urls, ZG_GATEWAY_INTERFACE=interface, **extra)
        proc = ServiceProcess(
            "gateway", [script("zerogate-gateway")], env=env, workdir=self.workdir,
            ns=self.gateway, reports_ports=False,
        ).start()  # fmt: skip
        agent = Agent(proc, self.gateway, interface)
        self.agents.append(agent)
        self.lab.on_close(proc.stop)
        return agent

    def start_client(
        self,
        token: str,
        *,
        urls: list[str] | None = None,
        interface: str | None = None,
        args: Sequence[str] = (),
        **extra: str,
    ) -> Agent:
        """``zerogate up [args]`` in the client namespace (``interface``: reuse a name,
        as a restart on the same host does)."""
        interface = interface or self.lab.ifname()
        control = self.workdir / f"client-{interface}.sock"
        env = self._agent_env(
            token, urls, ZG_CLIENT_INTERFACE=interface, ZG_CONTROL_SOCKET=str(control), **extra
        )
        proc = ServiceProcess(
            "client", [script("zerogate"), "up", *args], env=env, workdir=self.workdir,
            ns=self.client, reports_ports=False,
        ).start()  # fmt: skip
        agent = Agent(proc, self.client, interface, control)
        self.agents.append(agent)
        self.lab.on_close(proc.stop)
        return agent

    def spans(self) -> list[dict[str, Any]]:
        """Every span the processes exported so far (JSON lines)."""
        if self.plane is None or self.plane.traces_file is None:
            return []
        out = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.plane.traces_file.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


# --------------------------------------------------------------------------- deployments


@dataclass
class Deployment:
    """One account's site, resources, policies and agents in a lab."""

    lab: ZtnaLab
    admin: Admin
    site: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    group: dict[str, Any]
    account: dict[str, Any]
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    gateway: Agent | None = None
    client: Agent | None = None

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Until the client has its init (interface and resources)."""
        assert self.client is not None
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.client.status()
            if status.get("client_id") and status.get("resources"):
                return status
            time.sleep(0.2)
        raise AssertionError(f"client not ready: {status}\n{self.client.process.output()[-3000:]}")

    def gateway_path(self, status: dict[str, Any] | None = None) -> dict[str, Any]:
        status = status or (self.client.status() if self.client else {})
        gateways = status.get("gateways") or []
        assert gateways, status
        return dict(gateways[0])

    def stop(self) -> None:
        for agent in (self.client, self.gateway):
            if agent is not None:
                agent.process.stop()
        self.admin.close()


def deploy(
    lab: ZtnaLab,
    admin: Admin,
    *,
    policies: bool = True,
    conditions: list[dict[str, Any]] | None = None,
    client_urls: list[str] | None = None,
    gateway_urls: list[str] | None = None,
) -> Deployment:
    """A site with the v4 and v6 resource networks, a gateway and a client."""
    site = admin.site()
    resources = {
        "v4": admin.resource(site, RESOURCE_NET_V4),
        "v6": admin.resource(site, RESOURCE_NET_V6),
    }
    account = admin.service_account()
    group = admin.group()
    admin.members(group, [account["id"]])
    dep = Deployment(lab, admin, site, resources, group, account)
    if policies:
        for key, resource in resources.items():
            dep.policies[key] = admin.policy(group, resource, conditions=conditions or [])
    dep.gateway = lab.start_gateway(admin.gateway_token(site), urls=gateway_urls)
    dep.client = lab.start_client(admin.client_token(account), urls=client_urls)
    dep.wait_ready()
    return dep
