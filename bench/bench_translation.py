"""The gateway's per-packet check and translation: a DNS resource's flow against a CIDR one.

A gateway with a DNS resource rewrites every packet of a flow to a proxy
address: the destination of what the client sends (``AccessTable.inbound``)
and the source of what the site sends back (``AccessTable.outbound``), with
both checksums patched. A CIDR resource's packets are only checked. This
times both, one full-size TCP packet (1280 bytes, the client's MTU) at a time,
in one process, on a table holding both kinds of grant for one client; the
difference is what translation costs per packet. Prints ns per packet (the
best of ``--repeat`` runs); asserts nothing.

    python bench/bench_translation.py [--packets 300000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import timeit
from collections.abc import Callable

from zerogate.common.messages.api import ResourceView
from zerogate.common.messages.signaling import AuthorizationRef, ClientInfo
from zerogate.gateway.state import AccessTable
from zerogate.proto.dns.proxy import slot_addresses
from zerogate.proto.ip.nat import internet_checksum

CLIENT = ClientInfo(id="c", public_key="k" * 44, ipv4="100.64.0.5", ipv6="fd00:2021:1111::5")
REAL = "172.16.5.10"
MTU = 1280


def tcp_packet(src: str, dst: str, sport: int, dport: int, size: int = MTU) -> bytes:
    """An IPv4 TCP data segment of ``size`` bytes with correct checksums."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    payload = bytes(size - 40)
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x10, 65535, 0, 0))
    pseudo = s + d + struct.pack("!xBH", 6, len(tcp) + len(payload))
    struct.pack_into("!H", tcp, 16, 0xFFFF ^ internet_checksum(pseudo + bytes(tcp) + payload))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0x4000, 64, 6, 0, s, d))
    struct.pack_into("!H", ip, 10, 0xFFFF ^ internet_checksum(bytes(ip)))
    return bytes(ip) + bytes(tcp) + payload


def _resource(rid: str, kind: str, address: str) -> ResourceView:
    return ResourceView(id=rid, type=kind, address=address, name=rid, site_id="s")  # type: ignore[arg-type]


def table() -> tuple[AccessTable, str]:
    """A table with a CIDR grant and a DNS grant whose name is resolved; the proxy address."""
    access = AccessTable()
    access.on_answer = list[bytes]().append
    access.on_resolve = list[str]().append
    access.set_own(("100.64.0.1", "fd00:2021:1111::1"))
    v4, v6 = slot_addresses(4242)
    proxies = [str(a) for a in (*v4, *v6)]
    for rid, kind, address, extra in (
        ("cidr", "cidr", "172.16.5.0/24", {}),
        ("dns", "dns", "app.corp.test", {"domain": "app.corp.test", "proxy_ips": proxies}),
    ):
        ref = AuthorizationRef(
            id=f"c-{rid}", account_id="a", client_id="c", resource_id=rid, token_id="t"
        )
        access.grant(CLIENT, _resource(rid, kind, address), ref, None, **extra)
    access.set_addresses("app.corp.test", [REAL], [])
    return access, str(v4[0])


def best_ns(call: Callable[[bytes], object], packet: bytes, count: int, repeat: int) -> float:
    return min(timeit.repeat(lambda: call(packet), number=count, repeat=repeat)) / count * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    access, proxy = table()
    to_proxy = tcp_packet(CLIENT.ipv4, proxy, 40000, 80)
    to_real = tcp_packet(CLIENT.ipv4, REAL, 40001, 81)
    if access.inbound(to_proxy) is None or access.inbound(to_real) is None:
        raise SystemExit("the table refused a packet it should pass")
    cases = {
        "inbound dns (translated)": (access.inbound, to_proxy),
        "inbound cidr (checked)": (access.inbound, to_real),
        "outbound dns (translated)": (access.outbound, tcp_packet(REAL, CLIENT.ipv4, 80, 40000)),
        "outbound cidr (checked)": (access.outbound, tcp_packet(REAL, CLIENT.ipv4, 81, 40001)),
    }
    results = {
        label: round(best_ns(call, packet, args.packets, args.repeat), 1)
        for label, (call, packet) in cases.items()
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for label, ns in results.items():
        print(f"{label:<28} {ns:8.1f} ns/packet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
