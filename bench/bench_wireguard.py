"""WireGuard data-plane throughput and latency: ours vs wireguard-go vs bare veth.

For each setup, two fresh network namespaces joined by a veth pair:

* ``veth``          no tunnel, the ceiling of this machine;
* ``wireguard-go``  a pair of stock wireguard-go interfaces (the baseline);
* ``zerogate``      a pair of our interfaces (``zerogate-wg up``).

It measures TCP throughput with iperf3 (1 stream and 4 streams, ``-P 4``),
ping round-trip times (ICMP echo, 0.1 s apart) and the CPU time each tunnel
process used during each iperf3 run (utime + stime from /proc/PID/stat, as a
percentage of one core). It prints a table and the ratio ours / wireguard-go.
It asserts nothing. Needs root, iperf3 and wireguard-go.

    python bench/bench_wireguard.py [--duration 10] [--pings 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

from zerogate.testing.lab import LabProcess, Namespace, NetLab, NetLabError, lab_unavailable_reason
from zerogate.testing.wireguard import (
    WgInterfaceConfig,
    WgPeerConfig,
    start_wireguard_go,
    start_zerogate_wg,
    wg_keypair,
)

A_UNDER, B_UNDER = "10.230.0.1", "10.230.0.2"
A_TUN, B_TUN = "10.99.0.1", "10.99.0.2"
A_PORT, B_PORT = 51820, 51821
IPERF_PORT = 5201
MTU = 1420  # wg-quick's default for an IPv4/IPv6 underlay of MTU 1500
SETUPS = ("veth", "wireguard-go", "zerogate")


@dataclass
class IperfRun:
    streams: int
    mbit_per_s: float | None = None
    retransmits: int | None = None
    cpu_sender_pct: float | None = None
    cpu_receiver_pct: float | None = None
    error: str | None = None


@dataclass
class SetupResult:
    setup: str
    ping_avg_ms: float | None = None
    ping_p50_ms: float | None = None
    ping_max_ms: float | None = None
    ping_lost: int | None = None
    iperf: list[IperfRun] = field(default_factory=list)
    error: str | None = None


def _tunnels(a: Namespace, b: Namespace, kind: str) -> tuple[str, list[LabProcess]]:
    """Start the tunnel of ``kind``; return the address to measure to and the tunnel processes."""
    if kind == "veth":
        return B_UNDER, []
    start = start_wireguard_go if kind == "wireguard-go" else start_zerogate_wg
    ka, kb = wg_keypair(), wg_keypair()
    cfg_b = WgInterfaceConfig(
        kb.private, (f"{B_TUN}/24",), B_PORT, MTU, (WgPeerConfig(ka.public, (f"{A_TUN}/32",)),)
    )
    cfg_a = WgInterfaceConfig(
        ka.private,
        (f"{A_TUN}/24",),
        A_PORT,
        MTU,
        (WgPeerConfig(kb.public, (f"{B_TUN}/32",), f"{B_UNDER}:{B_PORT}"),),
    )
    wb = start(b, cfg_b)
    wa = start(a, cfg_a)
    return B_TUN, [wa.process, wb.process]


def _iperf(
    a: Namespace, target: str, streams: int, duration: int, procs: list[LabProcess]
) -> IperfRun:
    run = IperfRun(streams)
    cpu0 = [p.cpu_seconds() for p in procs]
    t0 = time.monotonic()
    proc = a.run(
        "iperf3", "-c", target, "-p", str(IPERF_PORT), "-t", str(duration),
        "-P", str(streams), "-J", "--connect-timeout", "3000",
        check=False, timeout=duration + 20,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    cpu1 = [p.cpu_seconds() for p in procs]
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        run.error = (proc.stderr or proc.stdout).strip()[:200] or f"iperf3 exited {proc.returncode}"
        return run
    if "error" in report:
        run.error = str(report["error"])[:200]
        return run
    end = report["end"]
    run.mbit_per_s = end["sum_received"]["bits_per_second"] / 1e6
    run.retransmits = end["sum_sent"].get("retransmits")
    if procs:
        run.cpu_sender_pct = 100.0 * (cpu1[0] - cpu0[0]) / elapsed
        run.cpu_receiver_pct = 100.0 * (cpu1[1] - cpu0[1]) / elapsed
    return run


def _wait_listening(b: Namespace, deadline_s: float = 5.0) -> None:
    """Wait until the iperf3 server listens (asked of ``ss``, not by connecting to it)."""
    deadline = time.monotonic() + deadline_s
    while True:
        out = b.run("ss", "-Hltn", f"sport = :{IPERF_PORT}", check=False).stdout
        if out.strip():
            return
        if time.monotonic() > deadline:
            raise NetLabError(f"iperf3 server not listening after {deadline_s} s")
        time.sleep(0.05)


def measure(kind: str, duration: int, pings: int) -> SetupResult:
    result = SetupResult(kind)
    try:
        with NetLab() as lab:
            a, b = lab.namespace("a"), lab.namespace("b")
            lab.link(a, b, [f"{A_UNDER}/24"], [f"{B_UNDER}/24"])
            target, procs = _tunnels(a, b, kind)
            if not a.ping(target, count=5, timeout=2):
                result.error = "no ping reply through the tunnel"
                return result
            rtts = a.ping_rtts(target, count=pings, interval=0.1, timeout=1.0)
            result.ping_lost = pings - len(rtts)
            if rtts:
                result.ping_avg_ms = statistics.fmean(rtts)
                result.ping_p50_ms = statistics.median(rtts)
                result.ping_max_ms = max(rtts)
            b.spawn(["iperf3", "-s", "-B", target, "-p", str(IPERF_PORT)], label="iperf3-server")
            _wait_listening(b)
            for streams in (1, 4):
                result.iperf.append(_iperf(a, target, streams, duration, procs))
            for proc in procs:
                if not proc.alive():
                    result.error = f"tunnel process exited {proc.returncode}"
    except (NetLabError, OSError) as exc:
        result.error = str(exc).splitlines()[0][:200]
    return result


def _fmt(value: float | int | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def print_table(results: list[SetupResult], duration: int) -> None:
    print(f"TCP throughput: iperf3 -t {duration}, a -> b; CPU = % of one core per tunnel process")
    header = (
        f"{'setup':<13} {'P':>2} {'Mbit/s':>9} {'retr':>6} {'cpu snd%':>9} {'cpu rcv%':>9}"
        f"   {'rtt avg':>8} {'p50':>7} {'max':>7} {'lost':>4}"
    )
    print(header)
    print("-" * len(header))
    for res in results:
        if res.error and not res.iperf:
            print(f"{res.setup:<13} error: {res.error}")
            continue
        for idx, run in enumerate(res.iperf):
            ping = (
                f"   {_fmt(res.ping_avg_ms, '.3f'):>8} {_fmt(res.ping_p50_ms, '.3f'):>7}"
                f" {_fmt(res.ping_max_ms, '.3f'):>7} {_fmt(res.ping_lost, 'd'):>4}"
                if idx == 0
                else ""
            )
            if run.error:
                print(f"{res.setup:<13} {run.streams:>2} error: {run.error}{ping}")
                continue
            print(
                f"{res.setup:<13} {run.streams:>2} {_fmt(run.mbit_per_s):>9}"
                f" {_fmt(run.retransmits, 'd'):>6} {_fmt(run.cpu_sender_pct):>9}"
                f" {_fmt(run.cpu_receiver_pct):>9}{ping}"
            )
        if res.error:
            print(f"{res.setup:<13} error: {res.error}")
    by_name = {r.setup: r for r in results}
    ours, go = by_name.get("zerogate"), by_name.get("wireguard-go")
    if ours and go:
        print("\nours / wireguard-go:")
        for o_run, g_run in zip(ours.iperf, go.iperf, strict=False):
            print(
                f"  throughput P={o_run.streams}: {_ratio(o_run.mbit_per_s, g_run.mbit_per_s)}"
                f"   sender CPU: {_ratio(o_run.cpu_sender_pct, g_run.cpu_sender_pct)}"
                f"   receiver CPU: {_ratio(o_run.cpu_receiver_pct, g_run.cpu_receiver_pct)}"
            )
        print(f"  ping avg: {_ratio(ours.ping_avg_ms, go.ping_avg_ms)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per iperf3 run")
    parser.add_argument("--pings", type=int, default=20, help="echo requests per setup")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--setups", default=",".join(SETUPS), help=f"comma-separated subset of {SETUPS}"
    )
    args = parser.parse_args(argv)
    reason = lab_unavailable_reason("iperf3", "wireguard-go", "wg")
    if reason is not None:
        print(f"bench_wireguard skipped: {reason}")
        return 0
    setups = [s for s in args.setups.split(",") if s]
    unknown = set(setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown setups: {sorted(unknown)}")
    results = []
    for kind in setups:
        if not args.json:
            print(f"measuring {kind} ...", file=sys.stderr, flush=True)
        results.append(measure(kind, args.duration, args.pings))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print_table(results, args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
