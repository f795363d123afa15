"""The compose stack brought up for real, once per module, on a dockerd of the test's own.

Order of events (every step bounded):

1. lock the cache (``ZG_COMPOSE_CACHE``, default ``.zerogate/compose``), clear
   what a crashed run left in its data root (inside a lab namespace);
2. dockerd in the host namespace without networking of its own: pull or make
   offline the base, NATS and Postgres images, build every target;
3. dockerd again, inside a lab namespace with Docker's networking, where the
   stack runs: ``docker-compose up`` of the default services under a project
   name of this run. The namespace's iptables rules are recorded first, so
   ``down -v`` can be shown to leave none behind.

Teardown: ``down -v`` (if the tests did not), dockerd stopped by PID, the
namespace and the socket directory removed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zerogate.testing.lab import Namespace, NetLab

from .engine import (
    REPO,
    DockerEngine,
    image_sizes,
    locked,
    missing_tools,
    prepare_images,
    write_figures,
)

if missing_tools() is not None:
    pytest.skip(missing_tools() or "", allow_module_level=True)

#: Every service of the default profile reports healthy (or, the one-shot, exits 0) by then.
HEALTHY_TIMEOUT = 240.0
COMPOSE_TIMEOUT = 300.0
PROFILES = ("site", "client")


def iptables_rules(ns: Namespace | None = None) -> list[str]:
    """Rules of every table (IPv4 and IPv6), without counters and comments."""
    rules = []
    for tool in ("iptables-save", "ip6tables-save"):
        argv = [tool] if ns is None else ns.exec_argv([tool])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        rules += [
            f"{tool}: {line}" for line in done.stdout.splitlines() if not line.startswith("#")
        ]
    return rules


@dataclass
class Stack:
    """The running compose project and the means to drive it."""

    engine: DockerEngine
    ns: Namespace
    project: str
    env: dict[str, str]
    baseline_rules: list[str]
    host_rules: list[str]
    figures: dict[str, Any]
    up_started: float = 0.0
    down_done: bool = False
    started_profiles: set[str] = field(default_factory=set)

    def compose(
        self,
        *args: str,
        profiles: Sequence[str] = (),
        env: dict[str, str] | None = None,
        timeout: float = COMPOSE_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "docker-compose",
            "--project-name",
            self.project,
            "--file",
            str(REPO / "docker-compose.yml"),
        ]
        for profile in profiles:
            argv += ["--profile", profile]
        done = subprocess.run(
            [*argv, *args],
            capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
            env={**self.engine.env(self.env), **(env or {})},
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker-compose {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}\n{self.logs()}"
            )
        return done

    def logs(self, tail: int = 30) -> str:
        done = self.compose(
            "logs", "--no-color", f"--tail={tail}", profiles=PROFILES, timeout=60, check=False
        )
        return done.stdout[-12000:]

    def containers(self) -> list[dict[str, Any]]:
        """``docker inspect`` of every container of this project."""
        ids = self.engine.docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"
        ).stdout.split()
        if not ids:
            return []
        return list(json.loads(self.engine.docker("inspect", *ids).stdout))

    def container(self, service: str) -> dict[str, Any]:
        for info in self.containers():
            if info["Config"]["Labels"].get("com.docker.compose.service") == service:
                return info
        raise AssertionError(f"no container of {service}")

    def ip(self, service: str, network: str) -> str:
        nets = self.container(service)["NetworkSettings"]["Networks"]
        return str(nets[f"{self.project}_{network}"]["IPAddress"])

    def exec(self, service: str, *argv: str, timeout: float = 60.0, check: bool = True,
             profiles: Sequence[str] = PROFILES) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.compose(
            "exec", "-T", service, *argv, profiles=profiles, timeout=timeout, check=check
        )

    def wait_healthy(self, services: Sequence[str], timeout: float = HEALTHY_TIMEOUT) -> None:
        """Until each service's container is healthy (running, where it has no health check)."""
        deadline = time.monotonic() + timeout
        state: dict[str, str] = {}
        while time.monotonic() < deadline:
            by_service = {
                c["Config"]["Labels"].get("com.docker.compose.service"): c
                for c in self.containers()
            }
            state = {}
            for service in services:
                info = by_service.get(service)
                if info is None:
                    state[service] = "missing"
                    continue
                health = info["State"].get("Health")
                state[service] = health["Status"] if health else info["State"]["Status"]
            # a service with a health check must be healthy; one without, running
            if all(s in ("healthy", "running") for s in state.values()):
                return
            time.sleep(1.0)
        raise AssertionError(f"not healthy within {timeout:.0f}s: {state}\n{self.logs()}")


def _cache() -> Path:
    return Path(os.environ.get("ZG_COMPOSE_CACHE") or REPO / ".zerogate" / "compose").resolve()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    cache = _cache()
    figures: dict[str, Any] = {}
    with locked(cache), NetLab(prefix="zgct") as lab:
        engine = DockerEngine(cache, lab.tag)
        try:
            ns = lab.namespace("dk")
            started = time.monotonic()
            if engine.leftovers():
                engine.start_in(ns)
                engine.remove_everything_but_images()
                engine.stop()
            host_rules = iptables_rules()
            engine.start_for_builds()
            prepare_images(engine, figures)
            figures["image_bytes"] = image_sizes(engine)
            engine.stop()
            assert iptables_rules() == host_rules, "building touched the host's iptables"
            figures["prepare_s"] = round(time.monotonic() - started, 1)

            engine.start_in(ns)
            env = {
                # letters and digits: they go into a database URL as they are
                "ZG_POSTGRES_PASSWORD": secrets.token_hex(16),
                "ZG_RELAY_AUTH_SECRET": secrets.token_hex(32),
                "ZG_IMAGE_TAG": "latest",
            }
            # Docker adds its own chains (DOCKER-USER, ...) with the first network and
            # keeps them while it runs: make them now, so the baseline holds them and
            # only what compose adds and removes shows.
            engine.docker("network", "create", f"{lab.tag}-probe")
            engine.docker("network", "rm", f"{lab.tag}-probe")
            stack = Stack(engine, ns, lab.tag, env, iptables_rules(ns), host_rules, figures)
            stack.up_started = time.monotonic()
            try:
                stack.compose("up", "--detach", "--no-build")
                yield stack
            finally:
                if not stack.down_done:
                    stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10",
                                  profiles=PROFILES, check=False)  # fmt: skip
                engine.stop()
                write_figures(cache, figures)
        finally:
            engine.close()
