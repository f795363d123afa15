"""Connection set-up latency: from a client's first packet to its first reply.

In the end-to-end lab (client and gateway each behind a NAT, control plane and
two relays on the "internet"; see ``zerogate.testing.ztna``), a fresh client
(new keys, so a new connection) pings an address inside a resource once; the
round-trip time of that first echo covers everything: the authorization
request through signaling, the api's decision, the gateway's confirmation,
ICE, the WireGuard handshake and the echo itself. Repeated ``--count`` times
with ordinary NATs (the path ends up direct) and with ``--random-fully`` NATs
(relayed). Prints p50/p90/p99/max per kind. Asserts nothing. Needs root.

    python bench/bench_setup.py [--count 50] [--kinds direct,relayed] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from zerogate.testing.lab import NetLab, lab_unavailable_reason
from zerogate.testing.ztna import RESOURCE_V4, ZtnaLab, deploy


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(kind: str, count: int) -> dict[str, Any]:
    samples: list[float] = []
    paths: dict[str, int] = {}
    failures = 0
    with NetLab() as net:
        lab = ZtnaLab.build(net, random_fully=kind == "relayed")
        lab.start_control_plane(signaling=1, relays=2, traces=False).close()
        assert lab.plane is not None
        admin = lab.plane.admin()
        dep = deploy(lab, admin)
        try:
            assert dep.client is not None
            for i in range(count):
                if i:  # a fresh client: new keys, a new connection
                    dep.client.process.stop()
                    token = admin.client_token(dep.account)
                    dep.client = lab.start_client(token)
                    dep.wait_ready()
                result = dep.client.ping(RESOURCE_V4, count=1, timeout=5)
                rtt = (result.get("replies") or [None])[0]
                if rtt is None:
                    failures += 1
                    continue
                samples.append(float(rtt))
                path = (result.get("path") or {}).get("path") or "?"
                paths[path] = paths.get(path, 0) + 1
        finally:
            dep.stop()
    out: dict[str, Any] = {"kind": kind, "setups": len(samples), "failures": failures,
                           "paths": paths}  # fmt: skip
    if samples:
        out.update(
            p50_ms=round(statistics.median(samples), 1),
            p90_ms=round(percentile(samples, 90), 1),
            p99_ms=round(percentile(samples, 99), 1),
            max_ms=round(max(samples), 1),
            min_ms=round(min(samples), 1),
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--kinds", default="direct,relayed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = lab_unavailable_reason("iptables", "setpriv")
    if reason is not None:
        print(f"bench_setup: skipped: {reason}")
        return 0
    started = time.monotonic()
    results = [measure(kind, args.count) for kind in args.kinds.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{'path':<9} {'setups':>6} {'fail':>4} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  paths"
    )
    for r in results:
        if not r["setups"]:
            print(f"{r['kind']:<9} {0:>6} {r['failures']:>4}")
            continue
        print(
            f"{r['kind']:<9} {r['setups']:>6} {r['failures']:>4} {r['p50_ms']:>6.1f}ms "
            f"{r['p90_ms']:>6.1f}ms {r['p99_ms']:>6.1f}ms {r['max_ms']:>6.1f}ms  {r['paths']}"
        )
    print(f"(goal: p50 <= 100 ms, p99 <= 300 ms; {time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
