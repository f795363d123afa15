"""One TCP stream to a DNS resource (through the gateway's translation) against a CIDR resource.

In the end-to-end lab (``zerogate.testing.ztna``; client and gateway behind
NATs, a direct path), the resource host ``172.16.5.10`` is both a CIDR
resource (``172.16.5.0/24``) and the address of a DNS resource's name
(``stream.corp.test``). ``iperf3`` runs one TCP stream for ``--seconds`` to
the name's proxy address, whose packets the gateway translates both ways
(``zerogate.proto.ip.nat``), and to ``172.16.5.10`` itself, which it only
checks; rounds alternate, ``--rounds`` of each, download (``-R``, the gateway
rewrites every data packet's source) and upload (it rewrites every data
packet's destination). Prints Mbit/s per round, with the gateway's CPU time
per second of each run, and DNS/CIDR as the ratio of the medians and as the
median of each round's DNS run over the CIDR run right after it (rounds on a
shared 2-core machine swing by ±15%; pairing cancels slow drifts), and the
gateway's CPU time per Gbit carried, which is what the translation costs
whatever the rate. Asserts nothing. Needs root, iperf3 and dnsmasq.

    python bench/bench_dns_nat.py [--seconds 10] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from zerogate.testing.dnslab import dns_deployment
from zerogate.testing.lab import NetLab, lab_unavailable_reason
from zerogate.testing.ztna import RESOURCE_NET_V4, RESOURCE_V4, ZtnaLab

NAME = "stream.corp.test"
PORT = 5201


def _proxy(lab: ZtnaLab) -> str:
    """The name's first IPv4 proxy address, as the host's resolver (the stub) answers it.

    Asked in a process of the client namespace: ``ip netns exec`` gives it the
    namespace's resolv.conf, which names the stub."""
    code = (
        f"import socket; print(socket.getaddrinfo({NAME!r}, {PORT}, socket.AF_INET, "
        "socket.SOCK_STREAM)[0][4][0])"
    )
    return lab.client.run(sys.executable, "-c", code).stdout.strip()


def _iperf(lab: ZtnaLab, address: str, seconds: float, reverse: bool) -> float:
    argv = ["iperf3", "-c", address, "-p", str(PORT), "-t", str(seconds), "-J"]
    if reverse:
        argv.append("-R")
    done = lab.client.run(*argv, timeout=seconds + 30, check=False)
    report = json.loads(done.stdout or "{}")
    end = report.get("end") or {}
    key = "sum_received"
    bits = float((end.get(key) or {}).get("bits_per_second") or 0.0)
    return bits / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = lab_unavailable_reason("iptables", "dnsmasq", "iperf3")
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 0
    results: dict[str, Any] = {}
    with NetLab() as net:
        lab = ZtnaLab.build(net)
        dep = dns_deployment(
            lab,
            resources={
                "cidr": ("cidr", RESOURCE_NET_V4, {}),
                "dns": ("dns", NAME, {"ip_stack": "ipv4_only"}),
            },
            corp_records={NAME: [RESOURCE_V4]},
            public_records={},
        )
        assert dep.gateway is not None
        server = lab.resource.spawn(["iperf3", "-s", "-p", str(PORT)], label="iperf3")
        time.sleep(0.5)
        proxy = _proxy(lab)
        gateway = dep.gateway.process
        for direction, reverse in (("download", True), ("upload", False)):
            runs: dict[str, list[float]] = {"dns": [], "cidr": []}
            cpu: dict[str, list[float]] = {"dns": [], "cidr": []}
            _iperf(lab, proxy, 2, reverse)  # warm: the name is set up, the path chosen
            _iperf(lab, RESOURCE_V4, 2, reverse)
            for _ in range(args.rounds):
                for kind, address in (("dns", proxy), ("cidr", RESOURCE_V4)):
                    before = _cpu(gateway.popen.pid)
                    runs[kind].append(round(_iperf(lab, address, args.seconds, reverse), 1))
                    after = _cpu(gateway.popen.pid)
                    cpu[kind].append(round((after - before) / args.seconds * 100, 1))
            dns_mbit = statistics.median(runs["dns"])
            cidr_mbit = statistics.median(runs["cidr"])
            pairs = [d / c for d, c in zip(runs["dns"], runs["cidr"], strict=True) if c]
            # gateway CPU (ms) per Gbit carried: what the translation costs, whatever the rate
            cost = {
                kind: statistics.median(
                    pct * 10_000 / mbit
                    for pct, mbit in zip(cpu[kind], runs[kind], strict=True)
                    if mbit
                )
                for kind in ("dns", "cidr")
            }
            results[direction] = {
                "dns_mbit_s": runs["dns"],
                "cidr_mbit_s": runs["cidr"],
                "dns_median": dns_mbit,
                "cidr_median": cidr_mbit,
                "ratio": round(dns_mbit / cidr_mbit, 3) if cidr_mbit else None,
                "paired_ratio": round(statistics.median(pairs), 3) if pairs else None,
                "gateway_cpu_pct_dns": cpu["dns"],
                "gateway_cpu_pct_cidr": cpu["cidr"],
                "gateway_cpu_ms_per_gbit_dns": round(cost["dns"], 2),
                "gateway_cpu_ms_per_gbit_cidr": round(cost["cidr"], 2),
            }
        server.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for direction, figures in results.items():
        print(
            f"{direction:<9} DNS {figures['dns_mbit_s']} Mbit/s (gateway CPU "
            f"{figures['gateway_cpu_pct_dns']} %)  CIDR {figures['cidr_mbit_s']} Mbit/s "
            f"(gateway CPU {figures['gateway_cpu_pct_cidr']} %)"
        )
        print(
            f"{'':<9} DNS/CIDR: ratio of medians {figures['ratio']}, median of paired rounds "
            f"{figures['paired_ratio']}; gateway CPU ms per Gbit: DNS "
            f"{figures['gateway_cpu_ms_per_gbit_dns']}, "
            f"CIDR {figures['gateway_cpu_ms_per_gbit_cidr']}"
        )
    return 0


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        stat = handle.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    raise SystemExit(main())
