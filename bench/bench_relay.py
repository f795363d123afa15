"""Relay throughput: zerogate-relay vs coturn's turnserver under the same load.

Both servers run on loopback with TURN REST auth; coturn's ``turnutils_uclient``
drives them through channels (``-c``: one allocation per client, no RTCP) to
coturn's echo peer ``turnutils_peer``. For 4 and 16 allocations and 100- and
1400-byte payloads it prints the relayed packets/s (both directions), Mbit/s
of payload, loss, the server's CPU use while sending and its CPU time per
relayed packet, and ours/coturn for both.

uclient paces itself (about 50k messages/s in all here), so while a server keeps
up, packets/s measures the load generator and CPU time per packet is the figure
that compares the servers. The box may be shared: loads are interleaved
(coturn, ours, coturn, ours ...) so both see the same background.

Prints figures, asserts nothing. Every load is bounded by its message count
and a timeout; every process is stopped by its PID.

    python bench/bench_relay.py [--quick] [--profile] [--indications]
    python bench/bench_relay.py --core

``--profile`` runs our relay under cProfile and prints the top functions.
``--core`` only times the TURN core's per-packet fast paths in process
(``channel_to_peer``, ``peer_to_client``; nanoseconds per call, best of 5).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pstats
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass

from zerogate.proto import stun
from zerogate.proto.net import ClientAddr, PeerAddr, RelayAddr
from zerogate.proto.stun import Attr, MessageClass, Method
from zerogate.proto.turn import OpenRelaySocket, Server, ServerConfig, long_term_key
from zerogate.testing.turn import (
    Coturn,
    RelayProcess,
    TurnPeer,
    UclientReport,
    cpu_seconds,
    run_uclient,
)

SECRET = "bench-secret"
REALM = "bench.zerogate"
#: (allocations, payload bytes, messages per allocation)
LOADS = [(4, 100, 40_000), (4, 1400, 30_000), (16, 100, 10_000), (16, 1400, 7_500)]
QUICK_LOADS = [(4, 100, 10_000), (16, 1400, 2_000)]
RUN_TIMEOUT = 25.0


@dataclass
class Result:
    server: str
    allocations: int
    size: int
    pps: float | None
    mbit: float | None
    loss: float | None
    cpu: float | None
    error: str | None

    @property
    def us_per_packet(self) -> float | None:
        """Server CPU time per relayed packet, in microseconds."""
        if not self.cpu or not self.pps:
            return None
        return self.cpu / 100 / self.pps * 1e6


def _measure(
    server: str,
    pid: int,
    port: int,
    peer: TurnPeer,
    load: tuple[int, int, int],
    mode: list[str],
) -> Result:
    allocations, size, count = load
    samples: list[tuple[float, float]] = []

    def sample(now: float) -> None:
        with contextlib.suppress(OSError):
            samples.append((now, cpu_seconds(pid)))

    args = [
        *mode,
        "-c",  # one allocation per client, no RTCP
        "-W", SECRET,
        "-u", "bench",
        "-p", str(port),
        "-e", peer.host,
        "-r", str(peer.port),
        "-n", str(count),
        "-m", str(allocations),
        "-l", str(size),
        "-z", "0",
        "127.0.0.1",
    ]  # fmt: skip
    report: UclientReport = run_uclient(args, timeout=RUN_TIMEOUT, on_progress=sample)
    steady = report.steady_rate()
    error = "; ".join(report.errors[:2]) or None
    if steady is None:
        return Result(server, allocations, size, None, None, report.lost_percent, None, error)
    t0, t1, pps, bps = steady
    cpu = None
    window = [s for s in samples if t0 <= s[0] <= t1]
    if len(window) >= 2 and window[-1][0] > window[0][0]:
        cpu = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) * 100
    # Payload bits only: uclient counts application bytes.
    return Result(server, allocations, size, pps, bps / 1e6, report.lost_percent, cpu, error)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _start_ours(python_args: list[str], channels: bool) -> RelayProcess | None:
    relay = RelayProcess(
        secret=SECRET,
        realm=REALM,
        allow_peers=["127.0.0.1/32"],
        relay_ports=400,
        python_args=python_args,
        extra_args=["--rfc5766-channel-numbers"] if channels else [],
    )
    try:
        relay.start()
    except RuntimeError as exc:
        print(f"our relay did not start: {str(exc).strip().splitlines()[-1]}")
        return None
    return relay


def _core_with_a_channel() -> tuple[Server, ClientAddr, RelayAddr, PeerAddr]:
    """A server core with one allocation and one channel, set up as a client would."""
    config = ServerConfig(
        realm=REALM,
        nonce_secret=os.urandom(32),
        static_users={"bench": "bench-password"},
        relay_addresses_v4=["198.51.100.10"],
    )
    server = Server(config, now=1000.0, unix_now=time.time())
    client, peer = ClientAddr(("192.0.2.1", 40000)), PeerAddr(("8.8.8.8", 5000))
    key = long_term_key("bench", REALM, "bench-password")
    nonce: str | None = None

    def request(method: int, attributes: dict[int, object]) -> stun.Message:
        nonlocal nonce
        for _ in range(2):
            attrs = dict(attributes)
            if nonce is not None:
                attrs.update({Attr.USERNAME: "bench", Attr.REALM: REALM, Attr.NONCE: nonce})
            message = stun.Message(method, MessageClass.REQUEST, os.urandom(12), attrs)
            data = stun.encode(message, key=key if nonce else None)
            server.handle_client_datagram(data, client, 1000.0)
            while (command := server.poll_command()) is not None:
                if isinstance(command, OpenRelaySocket):
                    server.handle_relay_bound(command.relay, 1000.0)
            answers = []
            while (transmit := server.poll_transmit()) is not None:
                answers.append(stun.decode(transmit.data))
            if answers[-1].message_class == MessageClass.SUCCESS:
                return answers[-1]
            nonce = answers[-1].get_str(Attr.NONCE)
        raise RuntimeError("the core refused the bench client")

    allocated = request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: 17})
    relay = allocated.get_address(Attr.XOR_RELAYED_ADDRESS)
    assert relay is not None
    request(Method.CHANNEL_BIND, {Attr.CHANNEL_NUMBER: 0x4000, Attr.XOR_PEER_ADDRESS: peer})
    return server, client, RelayAddr(relay), peer


def core_timings() -> None:
    """Nanoseconds per call of the fast paths, for 100- and 1400-byte payloads."""
    server, client, relay, peer = _core_with_a_channel()
    number = 200_000
    print(f"TURN core fast paths, ns per call (best of 5 x {number:,})")
    for size in (100, 1400):
        channel_data = memoryview(bytearray(b"\x40\x00" + size.to_bytes(2, "big") + b"x" * size))
        payload = memoryview(bytearray(b"y" * size))
        assert server.channel_to_peer(channel_data, client) is not None
        assert server.peer_to_client(relay, payload, peer) is not None
        for name, call in (
            ("channel_to_peer", functools.partial(server.channel_to_peer, channel_data, client)),
            ("peer_to_client", functools.partial(server.peer_to_client, relay, payload, peer)),
        ):
            best = min(timeit.repeat(call, number=number, repeat=5)) / number
            print(f"  {name:<16} {size:>5} B  {best * 1e9:6.0f} ns")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--core", action="store_true", help="only the core's fast paths")
    parser.add_argument("--quick", action="store_true", help="two short loads only")
    parser.add_argument("--profile", action="store_true", help="cProfile our relay")
    parser.add_argument(
        "--indications", action="store_true", help="Send/Data indications instead of channels"
    )
    args = parser.parse_args()
    if args.core:
        core_timings()
        return 0
    loads = QUICK_LOADS if args.quick else LOADS
    results: list[Result] = []
    profiles: list[str] = []
    started = time.monotonic()
    # coturn 4.6's uclient binds channels in the RFC 5766 range, which our relay
    # accepts only with --rfc5766-channel-numbers; without it, compare indications.
    channels = not args.indications
    if channels:
        probe = _start_ours([], channels=True)
        if probe is None:
            print("falling back to Send/Data indications for both servers")
            channels = False
        else:
            probe.stop()
    mode = [] if channels else ["-s"]
    with TurnPeer("127.0.0.1") as peer:
        # Fresh servers for every load: uclient leaves its allocations behind, and a
        # new client reusing an old 5-tuple would rightly get 437 Allocation Mismatch.
        # Loads are interleaved (coturn, ours, coturn, ...) so both servers see the
        # same background on a shared box.
        for load in loads:
            with Coturn(secret=SECRET, realm=REALM, relay_ports=400) as coturn:
                results.append(_measure("coturn", coturn.pid, coturn.port, peer, load, mode))
            python_args: list[str] = []
            if args.profile:
                fd, path = tempfile.mkstemp(prefix="zg-relay-", suffix=".prof")
                os.close(fd)
                profiles.append(path)
                python_args = ["-m", "cProfile", "-o", path]
            relay = _start_ours(python_args, channels)
            if relay is None:
                continue
            try:
                results.append(_measure("zerogate", relay.pid, relay.port, peer, load, mode))
            finally:
                relay.stop()

    how = "channels" if channels else "Send/Data indications"
    print(f"relay bench on {os.cpu_count()} CPUs, loopback, {how}, uclient -z 0 -c")
    print(
        f"{'server':<9} {'allocs':>6} {'bytes':>5} {'pkts/s':>9} {'Mbit/s':>8} "
        f"{'loss %':>7} {'CPU %':>6} {'us/pkt':>7}  ours/coturn pkts/s, us/pkt"
    )
    by_key = {(r.server, r.allocations, r.size): r for r in results}
    for r in results:
        ratio = ""
        base = by_key.get(("coturn", r.allocations, r.size))
        if r.server == "zerogate" and base and base.pps and r.pps:
            ratio = f"{r.pps / base.pps:.2f}x"
            if base.us_per_packet and r.us_per_packet:
                ratio += f", {r.us_per_packet / base.us_per_packet:.2f}x"
        print(
            f"{r.server:<9} {r.allocations:>6} {r.size:>5} {_fmt(r.pps, ',.0f'):>9} "
            f"{_fmt(r.mbit, '.1f'):>8} {_fmt(r.loss, '.3f'):>7} {_fmt(r.cpu, '.0f'):>6} "
            f"{_fmt(r.us_per_packet, '.1f'):>7}  {ratio}" + (f"  [{r.error}]" if r.error else "")
        )
    print(f"total {time.monotonic() - started:.0f} s")
    profiles = [p for p in profiles if os.path.getsize(p) > 0]
    if profiles:
        print("\ntop of our relay's profile (all loads, by own time):")
        stats = pstats.Stats(*profiles, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(12)
    for path in profiles:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
