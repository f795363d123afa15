"""The probe responder, the uclient output parser, and the packet path under random input."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogate.proto.turn import rest_api_credentials
from zerogate.relay.httpd import METRICS_CONTENT_TYPE, HttpProbe
from zerogate.relay.service import RelayService
from zerogate.relay.settings import RelaySettings
from zerogate.testing.turn import TurnTestClient, free_port_range, parse_uclient

SECRET = "fuzz-secret"


def _probe(healthy: bool = True) -> HttpProbe:
    return HttpProbe(lambda: (healthy, "ok" if healthy else "down"), lambda: "m_total 1\n")


def _split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_metrics_are_prometheus_text() -> None:
    status, headers, body = _split(_probe().respond("GET", "/metrics"))
    assert status == 200
    assert headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert int(headers["Content-Length"]) == len(body)
    assert body == b"m_total 1\n"


def test_health_reflects_state() -> None:
    assert _split(_probe(True).respond("GET", "/healthz"))[0] == 200
    assert _split(_probe(False).respond("GET", "/healthz"))[0] == 503


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 404), ("POST", "/metrics", 405), ("GET", "/healthz?x=1", 200)],
)
def test_other_requests(method: str, path: str, status: int) -> None:
    assert _split(_probe().respond(method, path))[0] == status


def test_head_has_no_body() -> None:
    status, headers, body = _split(_probe().respond("HEAD", "/metrics"))
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) == len(b"m_total 1\n")


async def test_garbage_http_requests_get_closed_not_crashed() -> None:
    probe = _probe()
    port = await probe.start("127.0.0.1", 0)
    try:
        for junk in (
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"\x00\xff" * 10 + b"\r\n\r\n",
            b"GET / X\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(junk)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert raw.startswith(b"HTTP/1.1 200 OK")
    finally:
        await probe.close()


UCLIENT_OUTPUT = """\
0: : Total connect time is 0
3: : start_mclient: msz=4, tot_send_msgs=200, tot_recv_msgs=198, \
tot_send_bytes ~ 20000, tot_recv_bytes ~ 19800
6: : start_mclient: tot_send_msgs=800, tot_recv_msgs=796
6: : start_mclient: tot_send_bytes ~ 80000, tot_recv_bytes ~ 79600
6: : Total transmit time is 6
6: : Total lost packets 4 (0.500000%), total send dropped 0 (0.000000%)
"""


def test_parse_uclient_reads_totals_and_loss() -> None:
    report = parse_uclient(UCLIENT_OUTPUT)
    assert (report.send_msgs, report.recv_msgs) == (800, 796)
    assert (report.send_bytes, report.recv_bytes) == (80000, 79600)
    assert (report.lost, report.lost_percent, report.send_dropped) == (4, 0.5, 0)
    assert report.errors == []


def test_parse_uclient_collects_errors() -> None:
    report = parse_uclient(
        "0: : ERROR: Cannot complete Allocation\n0: : channel bind: error 403 (Forbidden)\n"
    )
    assert len(report.errors) == 2
    assert report.lost is None


@given(st.text(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_parse_uclient_never_raises(text: str) -> None:
    report = parse_uclient(text)
    assert report.send_msgs >= 0


# -- the packet path under random datagrams -------------------------------------------

# First bytes that steer a datagram into each branch of the shell and the core:
# STUN (0x00/0x01 with the magic cookie), ChannelData (0x40-0x7F), anything else.
_MAGIC = b"\x21\x12\xa4\x42"
datagrams = st.one_of(
    st.binary(max_size=700),
    st.tuples(st.integers(0x4000, 0x7FFF), st.integers(0, 0xFFFF), st.binary(max_size=300)).map(
        lambda t: t[0].to_bytes(2, "big") + t[1].to_bytes(2, "big") + t[2]
    ),
    st.tuples(
        st.sampled_from([0x0001, 0x0003, 0x0004, 0x0008, 0x0009, 0x0016, 0x0011]),
        st.binary(max_size=200),
    ).map(
        lambda t: (
            t[0].to_bytes(2, "big")
            + (len(t[1]) & 0xFFFC).to_bytes(2, "big")
            + _MAGIC
            + bytes(12)
            + t[1]
        )
    ),
)


class _Harness:
    """A relay in its own event loop, driven step by step from a sync test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list[object] = []
        self.loop.set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))
        low, high = free_port_range(20)
        self.service = RelayService(
            RelaySettings(
                listen_ip=["127.0.0.1"],
                port=0,
                relay_ports=(low, high),
                auth_secret=SECRET,
                allow_peer=["127.0.0.1/32"],
                http_ip="127.0.0.1",
                http_port=0,
            )
        )
        self.loop.run_until_complete(self.service.start())
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def run(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        self.sock.close()
        self.loop.run_until_complete(self.service.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[_Harness]:
    h = _Harness()
    try:
        yield h
    finally:
        h.close()


@given(st.lists(datagrams, min_size=1, max_size=12))
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_random_datagrams_never_break_the_packet_path(
    harness: _Harness, batch: list[bytes]
) -> None:
    port = harness.service.port
    for data in batch:
        harness.sock.sendto(data, ("127.0.0.1", port))
    harness.run(0.005)
    assert harness.errors == []
    # unauthenticated garbage creates no allocation and no relay socket
    assert harness.service.core.stats().allocations == 0
    assert harness.service.shell.relay_sockets == 0


def test_relay_still_serves_after_the_fuzzing(harness: _Harness) -> None:
    async def allocate() -> tuple[str, int]:
        username, password = rest_api_credentials(SECRET.encode(), "after", int(time.time()) + 60)
        client = TurnTestClient(("127.0.0.1", harness.service.port), username, password)
        try:
            return await client.allocate()
        finally:
            client.close()

    relayed = harness.loop.run_until_complete(allocate())
    assert relayed[0] == "127.0.0.1"
    assert harness.errors == []
