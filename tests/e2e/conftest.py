"""Fixtures of the end-to-end tests: a lab per NAT kind, shared by a module's tests.

Each lab runs the whole control plane (NATS, Postgres, the api, the relay
registry, two relays, two signaling instances) in its "internet" namespace;
each test makes its own account, site, gateway and client in it and stops
its agents when done.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from zerogate.testing.lab import NetLab, lab_unavailable_reason
from zerogate.testing.stack import Admin
from zerogate.testing.ztna import Deployment, ZtnaLab, deploy

__all__ = ["Deployment", "deploy"]

if lab_unavailable_reason("iptables", "setpriv") is not None:
    pytest.skip(lab_unavailable_reason("iptables", "setpriv") or "", allow_module_level=True)


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
