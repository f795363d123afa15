"""One TCP stream from a client to a resource through a gateway, in the end-to-end lab.

Four runs of ``iperf3 -c 172.16.5.10`` from the client host (one stream,
``--duration`` seconds), each on the same topology (client and gateway behind
NATs, the resource on the gateway's LAN; see ``zerogate.testing.ztna``):

* ``agents direct``   ``zerogate up`` and ``zerogate-gateway``, ordinary NATs (ICE: direct)
* ``plain wg``        a plain ``zerogate-wg`` pair instead of the agents, the
                      gateway's NAT forwarding its port: the data plane alone
* ``agents relayed``  the agents with ``--random-fully`` NATs, through our relay
* ``via coturn``      the same, the only relay being coturn (announced to the
                      registry by heartbeats for it), so the same agents relay
                      through coturn instead

It prints Mbit/s and the ratios agents-direct / plain-wg (goal ≥ 0.9) and
ours / coturn relayed (goal ≥ 1.0). Asserts nothing. Needs root, iperf3, coturn.

    python bench/bench_tunnel.py [--duration 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from zerogate.testing.lab import CommandTimeout, Namespace, NetLab, lab_unavailable_reason
from zerogate.testing.wireguard import (
    WgInterfaceConfig,
    WgPeerConfig,
    start_zerogate_wg,
    wg_keypair,
)
from zerogate.testing.ztna import RESOURCE_NET_V4, RESOURCE_V4, ZtnaLab, deploy

IPERF_PORT = 5201
WG_PORT = 51820
COTURN_IP = "198.18.0.13"
COTURN_SECRET = secrets.token_hex(16)
COTURN_EXTRA: list[str] = []
HEARTBEAT = """
import asyncio, datetime, sys
from pydantic import SecretStr
from zerogate.common.bus import Bus
from zerogate.common import subjects
from zerogate.common.messages.relay import RelayHeartbeat
async def main():
    bus = await Bus.connect(sys.argv[1], name="coturn-heartbeat")
    while True:
        await bus.publish(subjects.RELAY_HEARTBEAT, RelayHeartbeat(
            relay_id="coturn", public_ipv4=[sys.argv[2]], port=int(sys.argv[3]),
            realm="zerogate", auth_secret=SecretStr(sys.argv[4]), interval_s=5.0,
            sent_at=datetime.datetime.now(datetime.UTC)))
        await asyncio.sleep(5)
asyncio.run(main())
"""


def iperf(
    client: Namespace, resource: Namespace, duration: int, explain: Any = None
) -> float | None:
    server = resource.spawn(["iperf3", "-s", "-B", RESOURCE_V4, "-p", str(IPERF_PORT)],
                            label="iperf3-server")  # fmt: skip
    try:
        time.sleep(0.5)
        try:
            done = client.run(
                "iperf3", "-c", RESOURCE_V4, "-p", str(IPERF_PORT), "-t", str(duration), "-J",
                timeout=duration + 30, check=False,
            )  # fmt: skip
        except CommandTimeout:
            print(f"iperf3 hung; server: {server.output()[-500:]}")
            if explain is not None:
                explain()
            return None
        if done.returncode != 0:
            print(f"iperf3 failed: {done.stderr.strip()[-300:]}\n{server.output()[-500:]}")
            return None
        end = json.loads(done.stdout)["end"]
        return round(float(end["sum_received"]["bits_per_second"]) / 1e6, 1)
    finally:
        server.stop()


def agents(random_fully: bool, duration: int, *, coturn: bool = False) -> dict[str, Any]:
    with NetLab() as net:
        lab = ZtnaLab.build(net, random_fully=random_fully)
        lab.start_control_plane(signaling=1, relays=0 if coturn else 1, traces=False).close()
        assert lab.plane is not None
        assert lab.nats is not None
        if coturn:
            _start_coturn(lab)
        admin = lab.plane.admin()
        if coturn:
            lab.wait_relays(admin, {"coturn"})
        dep = deploy(lab, admin)
        try:
            assert dep.client is not None
            ping = dep.client.ping(RESOURCE_V4, count=1, timeout=5)
            path = ping.get("path") or {}

            def explain() -> None:
                assert dep.client is not None
                print(json.dumps(dep.client.status(verbose=True), indent=1)[:4000])
                print(dep.client.process.output()[-2000:])
                assert dep.gateway is not None
                print(dep.gateway.process.output()[-2000:])

            mbit = iperf(dep.client.ns, lab.resource, duration, explain)
            return {"mbit_per_s": mbit, "path": path.get("path"), "relay": path.get("relay_id")}
        finally:
            dep.stop()
            admin.close()


def _start_coturn(lab: ZtnaLab) -> Any:
    assert lab.nats is not None
    lab.inet.add_address("lo", f"{COTURN_IP}/32")
    server = lab.inet.spawn(
        [
            shutil.which("turnserver") or "turnserver", "-n", "--use-auth-secret",
            f"--static-auth-secret={COTURN_SECRET}", "--realm=zerogate",
            f"--listening-ip={COTURN_IP}", f"--relay-ip={COTURN_IP}", "--listening-port=3478",
            "--min-port=40000", "--max-port=49000", "--allowed-peer-ip=198.18.0.0-198.19.255.255",
            # No private peers, as our relay by default. With them allowed, coturn relayed
            # one check and then nothing once its sends to the agents' unreachable host
            # candidates had failed (ENETUNREACH), and ICE found no path.
            "--denied-peer-ip=10.0.0.0-10.255.255.255",
            "--denied-peer-ip=172.16.0.0-172.31.255.255",
            "--denied-peer-ip=192.168.0.0-192.168.255.255",
            "--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--no-tcp-relay",
            "--log-file=stdout", "--simple-log", *COTURN_EXTRA,
        ],
        label="coturn",
    )  # fmt: skip
    lab.inet.spawn(
        [sys.executable, "-c", HEARTBEAT, lab.nats.url, COTURN_IP, "3478", COTURN_SECRET],
        label="coturn-heartbeat",
    )
    return server


def plain_wireguard(duration: int) -> dict[str, Any]:
    """The same topology with a plain zerogate-wg pair: what the agents' data path costs."""
    with NetLab() as net:
        lab = ZtnaLab.build(net)
        client, gateway = lab.client, lab.gateway
        router = lab.gateway_site.router
        wan_if = lab.gateway_site.wan.a_if
        router.iptables("-t", "nat", "-A", "PREROUTING", "-i", wan_if, "-p", "udp",
                        "--dport", str(WG_PORT), "-j", "DNAT", "--to-destination",
                        f"10.20.1.2:{WG_PORT}")  # fmt: skip
        router.iptables("-I", "INPUT", "-i", wan_if, "-p", "udp", "--dport", str(WG_PORT),
                        "-j", "ACCEPT")  # fmt: skip
        a, b = wg_keypair(), wg_keypair()
        start_zerogate_wg(gateway, WgInterfaceConfig(
            private_key=b.private, addresses=("100.64.0.1/32",), listen_port=WG_PORT, mtu=1280,
            peers=(WgPeerConfig(public_key=a.public, allowed_ips=("100.64.0.2/32",)),),
        ))  # fmt: skip
        start_zerogate_wg(client, WgInterfaceConfig(
            private_key=a.private, addresses=("100.64.0.2/32",), mtu=1280,
            peers=(WgPeerConfig(public_key=b.public, allowed_ips=(RESOURCE_NET_V4,),
                                endpoint=f"{lab.gateway_site.public_ip}:{WG_PORT}",
                                persistent_keepalive=25),),
        ))  # fmt: skip
        gateway.sysctl("net.ipv4.ip_forward", 1)
        gateway.iptables("-t", "nat", "-A", "POSTROUTING", "-s", "100.64.0.0/24", "-d",
                         RESOURCE_NET_V4, "-j", "MASQUERADE")  # fmt: skip
        client.ping(RESOURCE_V4, count=3, timeout=5)
        return {"mbit_per_s": iperf(client, lab.resource, duration), "path": "direct"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--only", choices=["direct", "plain", "relayed", "coturn"], action="append",
        help="run only these cases (repeatable; default all)",
    )  # fmt: skip
    args = parser.parse_args()
    reason = lab_unavailable_reason("iptables", "setpriv", "iperf3", "turnserver")
    if reason is not None:
        print(f"bench_tunnel: skipped: {reason}")
        return 0
    cases: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "direct": ("agents direct", lambda: agents(False, args.duration)),
        "plain": ("plain wg", lambda: plain_wireguard(args.duration)),
        "relayed": ("agents relayed", lambda: agents(True, args.duration)),
        "coturn": ("via coturn", lambda: agents(True, args.duration, coturn=True)),
    }
    results = {name: run() for key, (name, run) in cases.items() if key in (args.only or cases)}

    def ratio(a: str, b: str) -> float | None:
        if a not in results or b not in results:
            return None
        x, y = results[a]["mbit_per_s"], results[b]["mbit_per_s"]
        return round(x / y, 2) if x and y else None

    summary = {
        "direct_vs_plain_wg": ratio("agents direct", "plain wg"),
        "our_relay_vs_coturn": ratio("agents relayed", "via coturn"),
    }
    if args.json:
        print(json.dumps({"runs": results, **summary}, indent=2))
        return 0
    print(f"one TCP stream client -> resource, iperf3 -t {args.duration}:")
    for name, run in results.items():
        extra = f" via {run['relay']}" if run.get("relay") else ""
        print(f"  {name:<15} {run['mbit_per_s']} Mbit/s  (path {run['path']}{extra})")
    print(f"  agents direct / plain wg: {summary['direct_vs_plain_wg']} (goal >= 0.9)")
    print(f"  our relay / coturn:       {summary['our_relay_vs_coturn']} (goal >= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
