"""Zerogate's own services as processes, and an admin that configures them over REST.

:class:`ServiceProcess` starts one of our console scripts (the api,
signaling, the relay registry, a relay, a gateway, a client) on the host or
inside a lab namespace, with port 0 for every listener and ``ZG_PORTS_FILE``
to learn the ports it got; it is stopped by PID. :class:`ControlPlane` starts
the api, the registry, relays and signaling instances against a given NATS
and Postgres; :class:`Admin` drives the REST API as an administrator would
(sites, gateway tokens, resources, groups, policies, service accounts and
their client tokens).

Example::

    plane = ControlPlane(nats_url=..., database_url=..., workdir=tmp)
    api = plane.api(); plane.registry(); sig = plane.signaling()
    admin = plane.admin()
    site = admin.site(); token = admin.gateway_token(site)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from zerogate.common.errors import ConfigError
from zerogate.common.listen import PORTS_FILE_ENV, wait_for_ports
from zerogate.testing.lab import LabProcess, Namespace

START_TIMEOUT = 30.0
STOP_GRACE = 10.0


def script(name: str) -> str:
    """A console script installed beside this interpreter (the venv's bin)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed beside {sys.executable}: make install")
    return str(path)


class ServiceProcess:
    """One of our services as a child process (on the host, or in ``ns``)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        ns: Namespace | None = None,
        reports_ports: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.ns = ns
        self.reports_ports = reports_ports
        self.workdir = workdir
        self.ports: dict[str, int] = {}
        self.log_path = workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._lab: LabProcess | None = None

    def __repr__(self) -> str:
        return f"ServiceProcess({self.name!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        if self._lab is not None:
            return self._lab.pid
        return self._popen.pid if self._popen else None

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        if self._lab is not None:
            return self._lab.popen
        assert self._popen is not None
        return self._popen

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        ports_file = self.workdir / f"{self.name}-{uuid.uuid4().hex[:6]}.ports.json"
        env = {**self.env}
        if self.reports_ports:
            env[PORTS_FILE_ENV] = str(ports_file)
        if self.ns is not None:
            self._lab = self.ns.spawn(self.argv, env=env, label=self.name)
            self.log_path = self._lab.log_path
        else:
            with self.log_path.open("wb") as log:
                self._popen = subprocess.Popen(
                    self.argv,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        if self.reports_ports:
            try:
                self.ports = wait_for_ports(
                    ports_file, self.popen, name=self.name, timeout=timeout, log_file=self.log_path
                )
            except ConfigError as exc:
                self.stop()
                raise RuntimeError(f"{exc.detail}\n{self.output()[-3000:]}") from None
        return self

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL now: a crash, not a shutdown."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_GRACE)

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        if self._lab is not None:
            return self._lab.stop(grace)
        proc = self._popen
        if proc is None:
            return None
        if proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                proc.wait(5)
        return proc.poll()

    def url(self, key: str = "http", *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        bracket = f"[{host}]" if ":" in host else host
        return f"{scheme}://{bracket}:{self.ports[key]}"


def wait_http(url: str, timeout: float = START_TIMEOUT, ns: Namespace | None = None) -> None:
    """Wait until ``url`` answers 200 (from inside ``ns`` when given)."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own URL
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ns.call(probe) if ns is not None else probe():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


class ControlPlane:
    """The api, the registry, relays and signaling, as processes, all stopped together."""

    def __init__(
        self,
        *,
        nats_url: str,
        database_url: str,
        workdir: Path,
        ns: Namespace | None = None,
        host: str = "127.0.0.1",
        traces_file: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.database_url = database_url
        self.workdir = workdir
        self.ns = ns
        self.host = host
        self.traces_file = traces_file
        self.extra_env = dict(extra_env or {})
        self.processes: list[ServiceProcess] = []
        self._api: ServiceProcess | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZG_")}
        env.update(ZG_NATS_URL=self.nats_url, ZG_LOG_LEVEL="INFO")
        if self.traces_file is not None:
            env["ZG_TRACES_FILE"] = str(self.traces_file)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def _start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        reports_ports: bool = True,
    ) -> ServiceProcess:
        proc = ServiceProcess(
            name,
            argv,
            env=self._env(**(env or {})),
            workdir=self.workdir,
            ns=self.ns,
            reports_ports=reports_ports,
        )
        self.processes.append(proc)
        return proc.start()

    def api(self) -> ServiceProcess:
        proc = self._start(
            "api",
            [script("zerogate-api"), "serve"],
            {
                "ZG_DATABASE_URL": self.database_url,
                "ZG_API_HOST": self.host,
                "ZG_API_PORT": "0",
            },
        )
        wait_http(proc.url(host=self.host) + "/healthz", ns=self.ns)
        self._api = proc
        return proc

    def registry(self, credential_ttl: float | None = None) -> ServiceProcess:
        argv = [script("zerogate-relay"), "registry"]
        if credential_ttl is not None:
            argv += ["--credential-ttl", str(credential_ttl)]
        return self._start("registry", argv, reports_ports=False)

    def relay(
        self,
        *,
        relay_id: str,
        listen_ip: str,
        allow_peers: Sequence[str] = (),
        extra: Sequence[str] = (),
    ) -> ServiceProcess:
        argv = [
            script("zerogate-relay"),
            "--relay-id", relay_id,
            "--listen-ip", listen_ip,
            "--public-ip", listen_ip,
            "--port", "0",
            "--http-ip", listen_ip,
            "--http-port", "0",
            *(a for net in allow_peers for a in ("--allow-peer", net)),
            *extra,
        ]  # fmt: skip
        return self._start(f"relay-{relay_id}", argv)

    def signaling(self, *, instance: str | None = None, **env: str) -> ServiceProcess:
        proc = self._start(
            "signaling",
            [script("zerogate-signaling")],
            {
                "ZG_SIGNALING_HOST": self.host,
                "ZG_SIGNALING_PORT": "0",
                "ZG_SIGNALING_INSTANCE_ID": instance or f"sig-{uuid.uuid4().hex[:6]}",
                **env,
            },
        )
        wait_http(proc.url(host=self.host) + "/healthz", ns=self.ns)
        return proc

    def admin(self, slug: str | None = None) -> Admin:
        """Bootstrap a fresh account and return its admin."""
        assert self._api is not None, "start the api first"
        slug = slug or f"acct-{uuid.uuid4().hex[:10]}"
        env = self._env(ZG_DATABASE_URL=self.database_url)
        argv = [script("zerogate-api"), "bootstrap", "--account-slug", slug,
                "--email", f"admin@{slug}.test"]  # fmt: skip
        full = {**os.environ, **env}
        if self.ns is not None:
            done = self.ns.run("env", f"ZG_DATABASE_URL={self.database_url}", *argv, timeout=60)
            out = done.stdout
        else:
            out = subprocess.run(
                argv, env=full, capture_output=True, text=True, timeout=60, check=True
            ).stdout
        boot = {**json.loads(out.strip().splitlines()[-1]), "account_slug": slug}
        return Admin(self._api.url(host=self.host), boot["token"], boot, ns=self.ns)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Admin:
    """An account administrator talking to the REST API (synchronous, for tests and benches)."""

    def __init__(self, base_url: str, token: str, boot: Mapping[str, Any], *,
                 ns: Namespace | None = None) -> None:  # fmt: skip
        self.base_url = base_url
        self.token = token
        self.boot = dict(boot)
        self.ns = ns
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15.0
        )

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        def go() -> httpx.Response:
            return self.http.request(method, path, json=body)

        response = self.ns.call(go) if self.ns is not None else go()
        if expect is not None and response.status_code != expect:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        if response.status_code >= 400 and expect is None:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    # objects ------------------------------------------------------------------------
    def site(self, name: str | None = None) -> dict[str, Any]:
        return dict(self.call("POST", "/v1/sites", {"name": name or f"site-{_suffix()}"}, 201))

    def gateway_token(self, site: Mapping[str, Any]) -> str:
        created = self.call("POST", f"/v1/sites/{site['id']}/gateway_tokens", {}, 201)
        return str(created["token"])

    def resource(self, site: Mapping[str, Any], address: str, *, type: str = "cidr",
                 name: str | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
        body = {"type": type, "address": address, "name": name or f"res-{_suffix()}",
                "site_id": site["id"], **extra}  # fmt: skip
        return dict(self.call("POST", "/v1/resources", body, 201))

    def group(self, name: str | None = None) -> dict[str, Any]:
        return dict(self.call("POST", "/v1/groups", {"name": name or f"grp-{_suffix()}"}, 201))

    def members(self, group: Mapping[str, Any], actor_ids: Sequence[str]) -> None:
        self.call("PUT", f"/v1/groups/{group['id']}/members", {"actor_ids": list(actor_ids)}, 200)

    def policy(self, group: Mapping[str, Any], resource: Mapping[str, Any],
               **extra: Any) -> dict[str, Any]:  # fmt: skip
        body = {"group_id": group["id"], "resource_id": resource["id"], **extra}
        return dict(self.call("POST", "/v1/policies", body, 201))

    def delete_policy(self, policy: Mapping[str, Any]) -> None:
        self.call("DELETE", f"/v1/policies/{policy['id']}", expect=204)

    def service_account(self, name: str | None = None) -> dict[str, Any]:
        body = {"type": "service_account", "name": name or f"svc-{_suffix()}"}
        return dict(self.call("POST", "/v1/actors", body, 201))

    def client_token(self, actor: Mapping[str, Any], **extra: Any) -> str:
        created = self.call("POST", f"/v1/actors/{actor['id']}/client_tokens", extra, 201)
        return str(created["token"])

    def close(self) -> None:
        self.http.close()


def _suffix() -> str:
    return uuid.uuid4().hex[:8]
