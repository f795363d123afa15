"""Fixtures of the end-to-end tests: a lab per NAT kind, shared by a module's tests.

Each lab runs the whole control plane (NATS, Postgres, the api, the relay
registry, two relays, two signaling instances) in its "internet" namespace;
each test makes its own account, site, gateway and client in it and stops
its agents when done.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from zerogate.testing.lab import NetLab, lab_unavailable_reason
from zerogate.testing.stack import Admin
from zerogate.testing.ztna import (
    RESOURCE_NET_V4,
    RESOURCE_NET_V6,
    Agent,
    ZtnaLab,
)

if lab_unavailable_reason("iptables", "setpriv") is not None:
    pytest.skip(lab_unavailable_reason("iptables", "setpriv") or "", allow_module_level=True)


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


def _lab(random_fully: bool) -> Iterator[ZtnaLab]:
    with NetLab() as net:
        lab = ZtnaLab.build(net, random_fully=random_fully)
        lab.start_control_plane(signaling=2, relays=2).close()
        yield lab


@pytest.fixture(scope="module")
def direct_lab() -> Iterator[ZtnaLab]:
    """Ordinary NATs on both sides: hole punching works."""
    yield from _lab(False)


@pytest.fixture(scope="module")
def relayed_lab() -> Iterator[ZtnaLab]:
    """Endpoint-dependent NATs (``--random-fully``) on both sides: only relays work."""
    yield from _lab(True)


@pytest.fixture
def admin_of() -> Iterator[Any]:
    made: list[Admin] = []

    def make(lab: ZtnaLab) -> Admin:
        assert lab.plane is not None
        admin = lab.plane.admin()
        made.append(admin)
        return admin

    yield make
    for admin in made:
        admin.close()
