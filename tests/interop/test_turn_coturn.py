"""Interop: coturn's ``turnutils_uclient`` against our relay (``zerogate-relay`` process).

uclient authenticates with the TURN REST scheme (``-W <secret>``), allocates,
creates permissions and either binds channels (ChannelData) or uses Send/Data
indications (``-s``), and sends ``-n`` messages per allocation to coturn's
echo peer ``turnutils_peer``, which echoes them back through the relay. uclient
counts what returns; we require no errors and under 1 % loss.

The echo peer lives on loopback, so the relay runs with ``--allow-peer
127.0.0.0/8`` (and ``::1/128``): every address involved is on this machine.
``-c`` gives one allocation per client (no RTCP pair: that would need
EVEN-PORT reservations, which our relay does not offer and answers with 508).
coturn 4.6's uclient picks channel numbers in the RFC 5766 range
0x4000-0x7FFF, so the channel runs start the relay with
``--rfc5766-channel-numbers``.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

import pytest

from zerogate.testing.turn import RelayProcess, TurnPeer, UclientReport, run_uclient

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("turnutils_uclient") is None or shutil.which("turnutils_peer") is None,
        reason="coturn's turnutils_uclient/turnutils_peer are not installed",
    ),
]

SECRET = "coturn-interop-secret"
MESSAGES = 200  # per allocation (-n)
ALLOCATIONS = 4  # -m
MAX_LOSS_PERCENT = 1.0
RUN_TIMEOUT = 60.0


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def peer_v4() -> Iterator[TurnPeer]:
    with TurnPeer("127.0.0.1") as peer:
        yield peer


def _relay(host: str, *extra: str) -> RelayProcess:
    return RelayProcess(
        host=host,
        secret=SECRET,
        allow_peers=("127.0.0.0/8", "::1/128"),
        extra_args=list(extra),
    )


def _uclient(relay: RelayProcess, peer: TurnPeer, *flags: str, size: int = 100) -> UclientReport:
    args = [
        *flags,
        "-c",
        "-W", SECRET,
        "-u", "interop",
        "-p", str(relay.port),
        "-e", peer.host,
        "-r", str(peer.port),
        "-n", str(MESSAGES),
        "-m", str(ALLOCATIONS),
        "-l", str(size),
        "-z", "5",
        relay.host,
    ]  # fmt: skip
    return run_uclient(args, timeout=RUN_TIMEOUT)


def _assert_clean(report: UclientReport, relay: RelayProcess) -> None:
    detail = (
        f"\n--- uclient ---\n{report.output[-3000:]}\n--- relay ---\n{relay.log_text()[-3000:]}"
    )
    assert report.returncode == 0, detail
    assert report.errors == [], detail
    assert report.lost is not None, detail
    assert report.send_msgs == MESSAGES * ALLOCATIONS, detail
    assert report.lost_percent is not None
    assert report.lost_percent < MAX_LOSS_PERCENT, detail
    assert report.recv_msgs >= report.send_msgs * (1 - MAX_LOSS_PERCENT / 100), detail


@pytest.mark.parametrize("size", [100, 1200])
def test_uclient_channels_ipv4(peer_v4: TurnPeer, size: int) -> None:
    with _relay("127.0.0.1", "--rfc5766-channel-numbers") as relay:
        report = _uclient(relay, peer_v4, size=size)
        _assert_clean(report, relay)


def test_uclient_send_and_data_indications_ipv4(peer_v4: TurnPeer) -> None:
    with _relay("127.0.0.1") as relay:
        report = _uclient(relay, peer_v4, "-s")
        _assert_clean(report, relay)


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
@pytest.mark.parametrize("mode", ["channels", "indications"])
def test_uclient_ipv6(mode: str) -> None:
    flags = ["-x"] + (["-s"] if mode == "indications" else [])
    extra = ["--rfc5766-channel-numbers"] if mode == "channels" else []
    with TurnPeer("::1") as peer, _relay("::1", *extra) as relay:
        report = _uclient(relay, peer, *flags)
        _assert_clean(report, relay)


def test_uclient_with_a_wrong_secret_cannot_allocate(peer_v4: TurnPeer) -> None:
    with _relay("127.0.0.1") as relay:
        args = [
            "-c", "-W", "not-the-secret", "-u", "interop",
            "-p", str(relay.port), "-e", peer_v4.host, "-r", str(peer_v4.port),
            "-n", "5", "-m", "1", "-z", "5", relay.host,
        ]  # fmt: skip
        report = run_uclient(args, timeout=RUN_TIMEOUT)
        assert report.returncode != 0
        assert any("Cannot complete Allocation" in line for line in report.errors)
