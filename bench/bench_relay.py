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

``--profile`` runs our relay under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="two short loads only")
    parser.add_argument("--profile", action="store_true", help="cProfile our relay")
    parser.add_argument(
        "--indications", action="store_true", help="Send/Data indications instead of channels"
    )
    args = parser.parse_args()
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
