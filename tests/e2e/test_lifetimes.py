"""Things that end or renew with time: TURN credentials, and access at ``expires_at``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zerogate.testing.lab import NetLab
from zerogate.testing.ztna import RESOURCE_V4, ZtnaLab

from .conftest import deploy

pytestmark = [pytest.mark.netns, pytest.mark.slow]

#: TURN credentials live this long here (24 h in production): agents must get
#: fresh ones from signaling and move their allocations over, again and again.
CREDENTIAL_TTL = 20.0


@pytest.fixture(scope="module")
def short_credentials_lab() -> Iterator[ZtnaLab]:
    with NetLab() as net:
        lab = ZtnaLab.build(net, random_fully=True)
        lab.start_control_plane(signaling=1, relays=2, credential_ttl=CREDENTIAL_TTL).close()
        yield lab


def test_a_relayed_connection_outlives_its_turn_credentials(
    short_credentials_lab: ZtnaLab,
) -> None:
    lab = short_credentials_lab
    assert lab.plane is not None
    admin = lab.plane.admin()
    dep = deploy(lab, admin)
    try:
        first = dep.client.ping(RESOURCE_V4, count=1, timeout=10)
        assert first["replies"][0] is not None, first
        assert first["path"]["path"] == "relayed"
        # Ping once a second for three credential lifetimes; allow the odd loss
        # while an allocation is replaced, never a gap.
        lost_in_a_row = worst = 0
        replies = 0
        deadline = time.monotonic() + 3 * CREDENTIAL_TTL
        while time.monotonic() < deadline:
            rtts = dep.client.ping(RESOURCE_V4, count=1, timeout=1.0)["replies"]
            if rtts and rtts[0] is not None:
                replies += 1
                lost_in_a_row = 0
            else:
                lost_in_a_row += 1
                worst = max(worst, lost_in_a_row)
            time.sleep(0.5)
        assert worst <= 3, f"{worst} pings in a row got no answer"
        assert replies >= 20
        status = dep.client.status()
        assert dep.gateway_path(status)["path"] == "relayed"
        # no new authorization was needed: the gateway granted the resource once
        assert dep.gateway.process.output().count('"access granted"') == 1
    finally:
        dep.stop()
        admin.close()


# --------------------------------------------------------------------------- expiry


@pytest.fixture(scope="module")
def plain_lab() -> Iterator[ZtnaLab]:
    with NetLab() as net:
        lab = ZtnaLab.build(net)
        lab.start_control_plane(signaling=1, relays=1).close()
        yield lab


def test_the_gateway_ends_access_at_expires_at_without_the_control_plane(
    plain_lab: ZtnaLab,
) -> None:
    lab = plain_lab
    assert lab.plane is not None
    admin = lab.plane.admin()
    try:
        expires = datetime.now(UTC) + timedelta(seconds=25)
        dep = _deploy_with_token_expiring(lab, admin, expires)
        try:
            assert dep.client.ping(RESOURCE_V4, count=1, timeout=5)["replies"][0] is not None
            # the control plane goes away: only the gateway knows when access ends
            for signaling in lab.signalings:
                signaling.stop()
            while datetime.now(UTC) < expires - timedelta(seconds=2):
                time.sleep(0.5)
            assert dep.client.ping(RESOURCE_V4, count=1, timeout=2)["replies"][0] is not None
            while datetime.now(UTC) < expires + timedelta(seconds=2):
                time.sleep(0.5)
            assert '"why": "expired"' in dep.gateway.process.output()
            assert dep.client.ping(RESOURCE_V4, count=1, timeout=2)["replies"] == [None]
        finally:
            dep.stop()
            for signaling in lab.signalings:
                signaling.start()
    finally:
        admin.close()


def _deploy_with_token_expiring(lab: ZtnaLab, admin: Any, expires: datetime) -> Any:
    """Like :func:`deploy`, with a client token that expires at ``expires``."""
    from zerogate.testing.ztna import RESOURCE_NET_V4

    from .conftest import Deployment

    site = admin.site()
    resource = admin.resource(site, RESOURCE_NET_V4)
    account = admin.service_account()
    group = admin.group()
    admin.members(group, [account["id"]])
    dep = Deployment(lab, admin, site, {"v4": resource}, group, account)
    dep.policies["v4"] = admin.policy(group, resource)
    dep.gateway = lab.start_gateway(admin.gateway_token(site))
    token = admin.client_token(account, expires_at=expires.isoformat())
    dep.client = lab.start_client(token)
    dep.wait_ready()
    return dep


def test_an_expiring_token_ends_the_tunnels_and_status_says_why(plain_lab: ZtnaLab) -> None:
    lab = plain_lab
    assert lab.plane is not None
    admin = lab.plane.admin()
    try:
        expires = datetime.now(UTC) + timedelta(seconds=15)
        dep = _deploy_with_token_expiring(lab, admin, expires)
        try:
            assert dep.client.ping(RESOURCE_V4, count=1, timeout=5)["replies"][0] is not None
            interface = dep.client.interface
            assert dep.client.ns.link_exists(interface)
            deadline = time.monotonic() + (expires - datetime.now(UTC)).total_seconds() + 10
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                status = dep.client.status()
                if status.get("state") == "stopped":
                    break
                time.sleep(0.5)
            assert status.get("state") == "stopped", status
            assert "token_expired" in (status.get("last_error") or ""), status
            assert "sign in again" in status["last_error"]
            assert not dep.client.ns.link_exists(interface)  # the tunnel is gone
            assert dep.client.process.alive()  # the client still answers status
        finally:
            dep.stop()
    finally:
        admin.close()
