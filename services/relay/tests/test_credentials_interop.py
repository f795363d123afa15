"""Our minted credentials against coturn's own TURN REST check (``--use-auth-secret``).

coturn is the reference for the scheme; aioice (an independent TURN client)
allocates through it with a username/password we minted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aioice import stun, turn

from zerogate.relay.credentials import mint

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed"),
]

REALM = "zerogate"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_udp_listener(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"turnserver exited with {proc.returncode}")
        with open("/proc/net/udp") as f:
            if any(f":{port:04X} " in line.split()[1] + " " for line in f.readlines()[1:]):
                return
        time.sleep(0.05)
    raise RuntimeError("turnserver did not bind in time")


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A coturn on 127.0.0.1 checking TURN REST credentials with a random secret."""
    workdir = tmp_path_factory.mktemp(f"coturn-{os.getpid()}")
    secret = secrets.token_urlsafe(24)
    port = _free_udp_port()
    low = 40000 + (os.getpid() % 200) * 100
    proc = subprocess.Popen(
        [
            "turnserver",
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            f"--min-port={low}",
            f"--max-port={low + 99}",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            f"--realm={REALM}",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
            f"--userdb={workdir / 'turndb'}",
            f"--pidfile={workdir / 'turnserver.pid'}",
            f"--log-file={workdir / 'turn.log'}",
            "--simple-log",
            "--no-stdout-log",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_udp_listener(port, proc, 10.0)
        yield port, secret
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _allocate(port: int, username: str, password: str) -> tuple[str, int]:
    transport, _ = await asyncio.wait_for(
        turn.create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", port),
            username=username,
            password=password,
            lifetime=60,
        ),
        timeout=10,
    )
    try:
        relayed = transport.get_extra_info("sockname")
        return relayed[0], relayed[1]
    finally:
        transport.close()
        await asyncio.sleep(0.05)


async def test_coturn_accepts_minted_credentials(coturn: tuple[int, str]):
    port, secret = coturn
    creds = mint(secret, "client-1", now=datetime.now(UTC), ttl=timedelta(minutes=5))
    host, relayed_port = await _allocate(port, creds.username, creds.password)
    assert host == "127.0.0.1"
    assert 40000 <= relayed_port < 60000


async def test_coturn_refuses_wrong_secret_and_expired(coturn: tuple[int, str]):
    port, secret = coturn
    wrong = mint(secret + "x", "client-1", now=datetime.now(UTC))
    with pytest.raises(stun.TransactionFailed) as err:
        await _allocate(port, wrong.username, wrong.password)
    assert "401" in str(err.value)
    # Minted an hour ago with a 10 minute lifetime: expired now.
    old = mint(
        secret, "client-1", now=datetime.now(UTC) - timedelta(hours=1), ttl=timedelta(minutes=10)
    )
    with pytest.raises(stun.TransactionFailed) as err:
        await _allocate(port, old.username, old.password)
    assert "401" in str(err.value)
