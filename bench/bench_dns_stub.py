"""The client's stub resolver against dnsmasq, answering the same names in the same namespace.

In the end-to-end lab (``zerogate.testing.ztna``, DNS resources deployed by
``zerogate.testing.dnslab``), a real ``zerogate up`` runs its stub on
``100.100.111.1``; beside it, in the same client namespace, a dnsmasq on
``127.0.0.2`` answers the same names: the resource name from a hosts file (4
addresses, as the stub answers 4 proxy addresses) and the upstream name by
forwarding to the same upstream as the stub and caching.

For each server and each kind of name (``resource``: an A query for a DNS
resource's name; ``upstream``: an A query for a name no resource matches,
answered from the cache after the first), it measures

* latency: one query at a time, ``--latency`` queries, p50 and p99 in µs;
* throughput: ``--window`` queries in flight for ``--seconds`` seconds (the
  answers that came in let as many new queries go, in one GSO ``sendmsg``;
  answers are read with ``recvmmsg``), answered queries per second, and the
  server process's CPU time (user + system, from ``/proc/<pid>/stat``) per
  answered query.

The load comes from one Python thread in the client namespace (so on two
cores: the load on one, the server on the other), made cheap per query so
that the server is what runs out first. Prints a table and stub/dnsmasq
ratios. Asserts nothing. Needs root and dnsmasq.

    python bench/bench_dns_stub.py [--seconds 5] [--latency 3000] [--window 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import dns.message

from zerogate.dataplane.udp import SOL_UDP, UDP_SEGMENT, DatagramBatch, raise_buffers
from zerogate.testing.dnsd import Dnsmasq
from zerogate.testing.dnslab import CLIENT_UPSTREAM, dns_deployment
from zerogate.testing.lab import Namespace, NetLab, lab_unavailable_reason
from zerogate.testing.ztna import RESOURCE_V4, ZtnaLab

STUB = "100.100.111.1"
BASELINE = "127.0.0.2"
RESOURCE_NAME = "app.corp.test"
UPSTREAM_NAME = "www.public.test"
PUBLIC_ADDRESS = "198.18.0.80"


def _queries(name: str, count: int = 4096) -> list[bytes]:
    wire = dns.message.make_query(name, "A").to_wire()
    return [i.to_bytes(2, "big") + wire[2:] for i in range(count)]


def latency(ns: Namespace, server: str, name: str, count: int) -> list[float]:
    """Round-trip times (µs) of ``count`` queries, one at a time."""
    queries = _queries(name)

    def go() -> list[float]:
        out: list[float] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((server, 53))
            sock.settimeout(2.0)
            for i in range(count):
                query = queries[i % len(queries)]
                started = time.perf_counter()
                sock.send(query)
                while True:
                    answer = sock.recv(4096)
                    if answer[:2] == query[:2]:
                        break
                out.append((time.perf_counter() - started) * 1e6)
        return out

    return ns.call(go)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(
    ns: Namespace, server: str, name: str, window: int, seconds: float, pid: int
) -> tuple[float, float]:
    """Answers per second with ``window`` queries in flight, and the server's CPU µs per answer.

    The load is cheap so that it is not what is measured: the queries that
    answers make room for go out in one GSO ``sendmsg`` (the server's socket
    still receives them one datagram each), the answers come in through
    ``recvmmsg``.
    """
    queries = _queries(name)
    size = len(queries[0])
    segment = [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]

    def go() -> tuple[float, float]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((server, 53))
        sock.setblocking(False)
        raise_buffers(sock)
        batch = DatagramBatch(sock, count=window, size=4096)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        in_flight = answered = index = 0
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        deadline = started + seconds
        try:
            while time.perf_counter() < deadline:
                room = window - in_flight
                if room:
                    burst = [queries[(index + i) % len(queries)] for i in range(room)]
                    index += room
                    sock.sendmsg([b"".join(burst)], segment)
                    in_flight = window
                if not poller.poll(100):
                    in_flight = 0  # all lost (none seen in 100 ms): send a new window
                    continue
                got = sum(1 for answer in batch.receive() if len(answer) > size)
                answered += got
                in_flight -= got
            elapsed = time.perf_counter() - started
        finally:
            sock.close()
        cpu = cpu_seconds(pid) - cpu_before
        return answered / elapsed, cpu / answered * 1e6 if answered else float("nan")

    return ns.call(go)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--latency", type=int, default=3000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = lab_unavailable_reason("iptables", "dnsmasq")
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 0
    results: dict[str, Any] = {}
    with NetLab() as net:
        lab = ZtnaLab.build(net)
        dep = dns_deployment(
            lab,
            resources={"corp": ("dns", "**.corp.test", {})},
            corp_records={RESOURCE_NAME: [RESOURCE_V4]},
            public_records={UPSTREAM_NAME: [PUBLIC_ADDRESS]},
        )
        ns = lab.client
        ns.add_address("lo", f"{BASELINE}/8")
        baseline = Dnsmasq(
            ns, [BASELINE], hosts={RESOURCE_NAME: [f"172.16.5.{i}" for i in range(10, 14)]},
            servers=[CLIENT_UPSTREAM], log_queries=False, cache_size=10_000,
        ).start()  # fmt: skip
        assert dep.client is not None
        assert baseline.process is not None
        pids = {"stub": dep.client.process.pid, "dnsmasq": baseline.process.pid}
        for server, label in ((STUB, "stub"), (BASELINE, "dnsmasq")):
            for kind, name in (("resource", RESOURCE_NAME), ("upstream", UPSTREAM_NAME)):
                latency(ns, server, name, 200)  # warm: the name is known, the cache filled
                rtts = latency(ns, server, name, args.latency)
                qps, cpu = throughput(ns, server, name, args.window, args.seconds, pids[label])
                results[f"{label}/{kind}"] = {
                    "p50_us": round(percentile(rtts, 50), 1),
                    "p99_us": round(percentile(rtts, 99), 1),
                    "mean_us": round(statistics.fmean(rtts), 1),
                    "qps": round(qps),
                    "cpu_us_per_query": round(cpu, 2),
                }
        baseline.stop()
        results["stub_stats"] = (dep.client.status().get("dns") or {}).get("stats")
    for kind in ("resource", "upstream"):
        stub, base = results[f"stub/{kind}"], results[f"dnsmasq/{kind}"]
        results[f"ratio/{kind}"] = {
            "qps": round(stub["qps"] / base["qps"], 2) if base["qps"] else None,
            "p50": round(stub["p50_us"] / base["p50_us"], 2) if base["p50_us"] else None,
            "cpu": round(stub["cpu_us_per_query"] / base["cpu_us_per_query"], 2)
            if base["cpu_us_per_query"]
            else None,
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'server/kind':<20} {'p50 µs':>9} {'p99 µs':>9} {'queries/s':>10} {'CPU µs/q':>9}")
    for key, value in results.items():
        if key.startswith(("stub/", "dnsmasq/")):
            print(
                f"{key:<20} {value['p50_us']:>9} {value['p99_us']:>9} {value['qps']:>10}"
                f" {value['cpu_us_per_query']:>9}"
            )
    for kind in ("resource", "upstream"):
        ratio = results[f"ratio/{kind}"]
        print(
            f"stub/dnsmasq {kind}: queries/s x{ratio['qps']}, p50 x{ratio['p50']},"
            f" CPU per query x{ratio['cpu']}"
        )
    print(f"cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
