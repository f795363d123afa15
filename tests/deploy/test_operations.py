"""What every service does for its operator: ``--version``, and a graceful stop on SIGTERM.

Real processes against the real NATS and Postgres of the test session. The
images run these same console scripts (``deploy/Dockerfile``); an orchestrator
sends SIGTERM and waits 10 s (Docker's and our manifests' grace) before SIGKILL.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from zerogate.common import subjects
from zerogate.common.bus import Bus, BusError
from zerogate.common.messages.relay import RelaySelectReply, RelaySelectRequest
from zerogate.testing.stack import ControlPlane, ServiceProcess, script

#: Seconds between SIGTERM and SIGKILL in compose (stop_grace_period) and k8s.
GRACE_S = 10.0
#: A graceful stop exits 0, or re-raises SIGTERM once done as uvicorn does (-15
#: here; a container's PID 1 ignores it and exits 0); -9 would be the SIGKILL.
CLEAN_EXITS = (0, -signal.SIGTERM)
#: A relay announces a heartbeat every 5 s by default and the registry drops it
#: after three missed ones (15 s); going away must beat that by far.
GOING_AWAY_S = 2.0

CONSOLE_SCRIPTS = [
    (["zerogate-api"], "zerogate-api"),
    (["zerogate-relay"], "zerogate-relay"),
    (["zerogate-relay", "registry"], "zerogate-relay"),
    (["zerogate-signaling"], "zerogate-signaling"),
    (["zerogate-gateway"], "zerogate-gateway"),
    (["zerogate"], "zerogate"),
]


@pytest.mark.parametrize(
    ("argv", "name"), CONSOLE_SCRIPTS, ids=lambda v: "-".join(v) if isinstance(v, list) else v
)
def test_every_console_script_prints_its_version(argv: list[str], name: str) -> None:
    done = subprocess.run(
        [script(argv[0]), *argv[1:], "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[0] == name, done.stdout
    assert words[1][0].isdigit(), done.stdout


def _stop_timed(proc: ServiceProcess) -> tuple[int | None, float]:
    started = time.monotonic()
    code = proc.stop(grace=GRACE_S + 5)
    return code, time.monotonic() - started


@pytest.fixture
def plane(nats_url: str, database_url: str, tmp_path: Path):
    with ControlPlane(nats_url=nats_url, database_url=database_url, workdir=tmp_path) as cp:
        yield cp


def test_api_signaling_and_registry_stop_cleanly_on_sigterm(plane: ControlPlane) -> None:
    procs = [plane.api(), plane.signaling(), plane.registry()]
    time.sleep(1.0)  # the registry has joined the bus
    for proc in procs:
        assert proc.alive(), proc.output()[-2000:]
        code, took = _stop_timed(proc)
        assert code in CLEAN_EXITS, (proc.name, code, proc.output()[-2000:])
        assert took < GRACE_S, (proc.name, took)


async def _offered(bus: Bus, relay_id: str) -> bool:
    request = RelaySelectRequest(for_id="ops-test", count=16)
    try:
        reply = await bus.request(subjects.RELAY_SELECT, request, RelaySelectReply, timeout=2.0)
    except BusError:  # the registry has not joined the bus yet
        return False
    return any(offer.relay_id == relay_id for offer in reply.offers)


async def test_a_relay_told_to_stop_is_no_longer_offered_at_once(
    plane: ControlPlane, bus: Bus
) -> None:
    plane.registry()
    relay_id = f"ops-{uuid.uuid4().hex[:6]}"
    relay = plane.relay(relay_id=relay_id, listen_ip="127.0.0.1")
    deadline = time.monotonic() + 20
    while not await _offered(bus, relay_id):
        assert time.monotonic() < deadline, relay.output()[-2000:]
        await asyncio.sleep(0.2)

    started = time.monotonic()
    code, took = await asyncio.to_thread(_stop_timed, relay)
    assert code in CLEAN_EXITS, relay.output()[-2000:]
    assert took < GRACE_S
    while await _offered(bus, relay_id):
        assert time.monotonic() - started < GOING_AWAY_S, "the registry still offers the relay"
        await asyncio.sleep(0.05)
    assert "going away" in relay.output()
