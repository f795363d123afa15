"""The ``zerogate-relay`` process: signals, and the ``registry`` subcommand on a real bus."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from zerogate.common import subjects
from zerogate.common.bus import Bus, BusError
from zerogate.common.messages.relay import RelaySelectReply, RelaySelectRequest
from zerogate.testing.turn import RelayProcess


def test_sigterm_stops_the_relay_cleanly() -> None:
    relay = RelayProcess(secret="sigterm-secret")
    relay.start()
    try:
        assert relay.proc is not None
        relay.proc.send_signal(signal.SIGTERM)
        assert relay.proc.wait(10) == 0
        assert "relay stopped" in relay.log_text()
    finally:
        relay.stop()


@pytest.mark.slow
async def test_registry_subcommand_offers_a_heartbeating_relay(nats_url: str, bus: Bus) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZG_")}
    registry = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "zerogate.relay.main", "registry", "--nats-url", nats_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    relay = RelayProcess(
        secret="registry-cli-secret",
        nats_url=nats_url,
        extra_args=["--relay-id", "relay-cli-test", "--heartbeat-interval", "0.5"],
    )
    try:
        await asyncio.to_thread(relay.start)
        request = RelaySelectRequest(for_id="agent-cli-test", count=16)
        offers: list[str] = []
        deadline = time.monotonic() + 20
        while "relay-cli-test" not in offers and time.monotonic() < deadline:
            try:
                reply = await bus.request(
                    subjects.RELAY_SELECT, request, RelaySelectReply, timeout=1.0
                )
                offers = [offer.relay_id for offer in reply.offers]
            except BusError:
                pass  # the registry is still starting
            await asyncio.sleep(0.2)
        assert "relay-cli-test" in offers
        assert registry.poll() is None
    finally:
        await asyncio.to_thread(relay.stop)
        registry.send_signal(signal.SIGTERM)
        code, stderr = await asyncio.to_thread(_reap, registry)
    assert code == 0, stderr


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        code = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(5)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return code, stderr
