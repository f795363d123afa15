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
* throughput: ``--window`` queries in flight for ``--seconds`` seconds (each
  answer lets the next query go), answered queries per second.

The load comes from one Python thread in the client namespace (so on two
cores: the load on one, the server on the other); dnsmasq's figure shows how
far that load reaches. Prints a table and stub/dnsmasq ratios. Asserts
nothing. Needs root and dnsmasq.

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
from typing import Any

import dns.message

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


def throughput(ns: Namespace, server: str, name: str, window: int, seconds: float) -> float:
    """Answers per second with ``window`` queries in flight."""
    queries = _queries(name)

    def go() -> float:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((server, 53))
        sock.setblocking(False)
        sent: dict[int, float] = {}
        answered = 0
        index = 0
        deadline = time.perf_counter() + seconds
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        try:
            while (now := time.perf_counter()) < deadline:
                while len(sent) < window:
                    query = queries[index % len(queries)]
                    index += 1
                    try:
                        sock.send(query)
                    except BlockingIOError:
                        break
                    sent[int.from_bytes(query[:2], "big")] = now
                for _fd, _ in poller.poll(100):
                    while True:
                        try:
                            answer = sock.recv(4096)
                        except BlockingIOError:
                            break
                        if sent.pop(int.from_bytes(answer[:2], "big"), None) is not None:
                            answered += 1
                stale = [k for k, t in sent.items() if now - t > 1.0]
                for key in stale:  # lost: let another query take its place
                    del sent[key]
        finally:
            sock.close()
        return answered / seconds

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
        for server, label in ((STUB, "stub"), (BASELINE, "dnsmasq")):
            for kind, name in (("resource", RESOURCE_NAME), ("upstream", UPSTREAM_NAME)):
                latency(ns, server, name, 200)  # warm: the name is known, the cache filled
                rtts = latency(ns, server, name, args.latency)
                qps = throughput(ns, server, name, args.window, args.seconds)
                results[f"{label}/{kind}"] = {
                    "p50_us": round(percentile(rtts, 50), 1),
                    "p99_us": round(percentile(rtts, 99), 1),
                    "mean_us": round(statistics.fmean(rtts), 1),
                    "qps": round(qps),
                }
        baseline.stop()
        assert dep.client is not None
        results["stub_stats"] = (dep.client.status().get("dns") or {}).get("stats")
    for kind in ("resource", "upstream"):
        stub, base = results[f"stub/{kind}"], results[f"dnsmasq/{kind}"]
        results[f"ratio/{kind}"] = {
            "qps": round(stub["qps"] / base["qps"], 2) if base["qps"] else None,
            "p50": round(stub["p50_us"] / base["p50_us"], 2) if base["p50_us"] else None,
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'server/kind':<20} {'p50 µs':>9} {'p99 µs':>9} {'queries/s':>10}")
    for key, value in results.items():
        if key.startswith(("stub/", "dnsmasq/")):
            print(f"{key:<20} {value['p50_us']:>9} {value['p99_us']:>9} {value['qps']:>10}")
    for kind in ("resource", "upstream"):
        ratio = results[f"ratio/{kind}"]
        print(f"stub/dnsmasq {kind}: queries/s x{ratio['qps']}, p50 x{ratio['p50']}")
    print(f"cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
