"""A client reaches a resource through a gateway, direct or relayed, in namespaces with NATs.

All real processes: nats-server, Postgres, the api, the relay registry, two
relays, two signaling instances, ``zerogate-gateway`` and ``zerogate up``
(see :mod:`zerogate.testing.ztna` for the lab's picture).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from zerogate.testing.transfer import TcpTransfer
from zerogate.testing.ztna import RESOURCE_V4, RESOURCE_V6, ZtnaLab

from .conftest import deploy

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TRANSFER_BYTES = 50 * 1024 * 1024
#: What "quickly" means for a refusal the user sees (the api answers in ms).
REFUSAL_SECONDS = 2.0
#: Revocation must stop packets within this long (the issue: 1 s).
REVOCATION_SECONDS = 1.0


def _download(dep: Any, address: str, size: int, *, port: int = 9000) -> TcpTransfer:
    """The client fetches ``size`` bytes from the resource host over TCP."""
    return TcpTransfer(
        dep.client.ns, dep.lab.resource, address, port, size, download=True, idle_timeout=60.0
    ).start()


def _ping_ok(dep: Any, address: str, count: int = 1) -> dict[str, Any]:
    result = dep.client.ping(address, count=count, timeout=10)
    assert any(r is not None for r in result.get("replies", [])), result
    return result


# --------------------------------------------------------------------------- (a) (b)


def test_ordinary_nats_give_a_direct_path(direct_lab: ZtnaLab, admin_of: Any) -> None:
    dep = deploy(direct_lab, admin_of(direct_lab))
    try:
        result = _ping_ok(dep, RESOURCE_V4, count=3)
        path = result["path"]
        assert path["path"] == "direct", path
        assert path["relay_id"] is None
        # the remote end is the gateway NAT's public address, not a relay's
        assert path["remote"].startswith("198.18.2.2:"), path
        status = dep.client.status()
        gateway = dep.gateway_path(status)
        assert gateway["path"] == "direct"
        assert gateway["latest_handshake"]
        assert gateway["rx_bytes"] > 0
        assert gateway["tx_bytes"] > 0
        assert {r["access"] for r in status["resources"]} >= {"authorized"}
    finally:
        dep.stop()


def test_endpoint_dependent_nats_give_a_relayed_path(relayed_lab: ZtnaLab, admin_of: Any) -> None:
    dep = deploy(relayed_lab, admin_of(relayed_lab))
    try:
        result = _ping_ok(dep, RESOURCE_V4, count=3)
        path = result["path"]
        assert path["path"] == "relayed", path
        assert path["relay_id"] in relayed_lab.relays, path
        relay_ips = ("198.18.0.11", "198.18.0.12")
        ends = {path["local"].rsplit(":", 1)[0], path["remote"].rsplit(":", 1)[0]}
        assert ends & set(relay_ips), path
    finally:
        dep.stop()


# --------------------------------------------------------------------------- (c)


@pytest.mark.parametrize("lab_name", ["direct_lab", "relayed_lab"])
def test_a_50_mb_download_arrives_intact_over_ipv4_and_ipv6(
    lab_name: str, request: pytest.FixtureRequest, admin_of: Any
) -> None:
    lab: ZtnaLab = request.getfixturevalue(lab_name)
    dep = deploy(lab, admin_of(lab))
    try:
        for address in (RESOURCE_V4, RESOURCE_V6):
            result = _download(dep, address, TRANSFER_BYTES).wait(timeout=180)
            assert result.intact, result
            assert result.received_bytes == TRANSFER_BYTES
        expected = "direct" if lab_name == "direct_lab" else "relayed"
        assert dep.gateway_path()["path"] == expected
    finally:
        dep.stop()


# --------------------------------------------------------------------------- (d)


def test_without_a_policy_that_holds_access_is_refused_quickly_and_status_says_why(
    direct_lab: ZtnaLab, admin_of: Any
) -> None:
    """The resource is visible (a policy names it) but no policy holds for this client.

    A resource no policy names at all is not even routed into the tunnel (the
    client does not see it); here the only policy asks for a source network
    the client is not in, so the api refuses with the violated property.
    """
    elsewhere = [{"property": "remote_ip", "operator": "is_in_cidr", "values": ["192.0.2.0/24"]}]
    dep = deploy(direct_lab, admin_of(direct_lab), conditions=elsewhere)
    try:
        started = time.monotonic()
        result = dep.client.ping(RESOURCE_V4, count=1, timeout=REFUSAL_SECONDS)
        assert result["replies"] == [None]
        deadline = time.monotonic() + 5
        refused: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = dep.client.status()
            refused = next(r for r in status["resources"] if r["id"] == dep.resources["v4"]["id"])
            if refused["access"] == "refused":
                break
            time.sleep(0.1)
        assert refused["access"] == "refused", refused
        assert refused["reason"] == "forbidden"
        assert "remote_ip" in refused["violated_properties"]
        assert time.monotonic() - started < REFUSAL_SECONDS + 5
        assert status["gateways"] == []  # no gateway was ever connected
        # the gateway never heard of this client
        assert "access granted" not in dep.gateway.process.output()
    finally:
        dep.stop()


# --------------------------------------------------------------------------- (e)


def test_deleting_the_policy_mid_transfer_stops_packets_within_a_second(
    direct_lab: ZtnaLab, admin_of: Any
) -> None:
    admin = admin_of(direct_lab)
    dep = deploy(direct_lab, admin)
    try:
        _ping_ok(dep, RESOURCE_V4)
        transfer = _download(dep, RESOURCE_V4, 10 * 1024 * 1024 * 1024, port=9001)
        transfer.wait_received(5 * 1024 * 1024, timeout=30)
        admin.delete_policy(dep.policies["v4"])
        deleted = time.monotonic()
        time.sleep(REVOCATION_SECONDS)
        after_deadline = transfer.received
        time.sleep(2.0)
        assert transfer.received == after_deadline, (
            f"{transfer.received - after_deadline} bytes still arrived after "
            f"{time.monotonic() - deleted:.1f} s"
        )
        transfer.abort()
        # and the gateway refuses the client's packets from now on
        assert dep.client.ping(RESOURCE_V4, count=1, timeout=1)["replies"] == [None]
    finally:
        dep.stop()


# --------------------------------------------------------------------------- (f)


def test_the_relay_in_use_dies_mid_transfer_and_the_transfer_completes(
    relayed_lab: ZtnaLab, admin_of: Any
) -> None:
    dep = deploy(relayed_lab, admin_of(relayed_lab))
    try:
        path = _ping_ok(dep, RESOURCE_V4)["path"]
        assert path["path"] == "relayed"
        victim = path["relay_id"]
        transfer = _download(dep, RESOURCE_V4, TRANSFER_BYTES, port=9002)
        transfer.wait_received(2 * 1024 * 1024, timeout=30)
        relayed_lab.relays[victim].kill()
        result = transfer.wait(timeout=180)
        assert result.intact, result
        now = dep.gateway_path()
        assert now["path"] == "relayed"
        assert now["relay_id"] != victim
    finally:
        relayed_lab.start_relay(victim, _relay_ip(relayed_lab, victim))
        dep.stop()


def _relay_ip(lab: ZtnaLab, relay_id: str) -> str:
    from zerogate.testing.ztna import RELAY_IPS

    return RELAY_IPS["ab".index(relay_id[-1])]


# --------------------------------------------------------------------------- (g)


def test_one_of_two_signaling_instances_dies_and_everything_carries_on(
    direct_lab: ZtnaLab, admin_of: Any
) -> None:
    first, second = direct_lab.signaling_urls()[:2]
    dying = next(s for s in direct_lab.signalings if first.endswith(f":{s.ports['http']}"))
    dep = deploy(
        direct_lab,
        admin_of(direct_lab),
        client_urls=[first, second],
        gateway_urls=[second, first],
    )
    try:
        _ping_ok(dep, RESOURCE_V4)
        transfer = _download(dep, RESOURCE_V4, TRANSFER_BYTES, port=9003)
        transfer.wait_received(2 * 1024 * 1024, timeout=30)
        dying.signal(signal.SIGKILL)
        result = transfer.wait(timeout=180)
        assert result.intact, result
        # the client reconnected to the other instance and can still set up access
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = dep.client.status()
            if status.get("signaling") == second and status.get("state") == "connected":
                break
            time.sleep(0.5)
        assert status.get("signaling") == second, status
        _ping_ok(dep, RESOURCE_V6)
    finally:
        dep.stop()
        dying.start()  # the lab's other tests want two instances again


# --------------------------------------------------------------------------- one trace


def test_a_connection_setup_is_one_trace_across_every_service(
    direct_lab: ZtnaLab, admin_of: Any
) -> None:
    dep = deploy(direct_lab, admin_of(direct_lab))
    try:
        _ping_ok(dep, RESOURCE_V4)
    finally:
        dep.stop()  # the agents flush their spans as they exit
    # Services export spans in batches (every few seconds): wait for them.
    wanted = {
        "zerogate-client": {"client.connect", "ice.connect", "wireguard.handshake"},
        "zerogate-signaling": {"signaling.authorize"},
        "zerogate-api": {"process zg.v1.api.flow.authorize"},
        "zerogate-relay-registry": {"process zg.v1.relay.select"},
        "zerogate-gateway": {"gateway.create_authorization", "ice.connect"},
    }
    deadline = time.monotonic() + 20
    while True:
        spans = direct_lab.spans()
        connects = [
            s for s in spans
            if s["name"] == "client.connect"
            and s["attributes"].get("zerogate.resource_id") == dep.resources["v4"]["id"]
        ]  # fmt: skip
        by_service: dict[str, set[str]] = {}
        in_trace: list[dict[str, Any]] = []
        if len(connects) == 1:
            trace_id = connects[0]["context"]["trace_id"]
            in_trace = [s for s in spans if s["context"]["trace_id"] == trace_id]
            for span in in_trace:
                service = span["resource"]["attributes"]["service.name"]
                by_service.setdefault(service, set()).add(span["name"])
        if all(names <= by_service.get(svc, set()) for svc, names in wanted.items()):
            break
        assert time.monotonic() < deadline, (by_service, len(connects))
        time.sleep(0.5)
    root = connects[0]
    assert root["parent_id"] is None
    assert root["attributes"]["zerogate.path"] == "direct"
    assert " -> " in root["attributes"]["zerogate.pair"]
    assert root["attributes"]["zerogate.setup_ms"] > 0
    # every span but the root has its parent in the same trace
    ids = {s["context"]["span_id"] for s in in_trace}
    assert all(s["parent_id"] in ids for s in in_trace if s is not root)
