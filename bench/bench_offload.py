"""Cutting a TCP super-packet from the TUN, with and without the gateway's translation.

A gateway with a DNS resource rewrites the source of every packet the site
sends back to a client (``zerogate.proto.ip.nat``). With TUN offloads the
kernel hands it TCP super-packets of up to 64 KiB, which
``zerogate.dataplane.offload.split_packet`` cuts into MTU-sized segments. This
times, per super-packet, in one process: cutting alone; cutting and then
translating each segment (``rewrite_v4``, the per-packet fast path); and
cutting with the translation applied once to the shared header
(``split_packet(buffer, rewrite)``, what the interface does). Prints µs per
super-packet by CPU time; asserts nothing.

    python bench/bench_offload.py [--payload 63000] [--mss 1380] [--seconds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Callable

from zerogate.dataplane.offload import VIRTIO_NET_HDR_F_NEEDS_CSUM, split_packet
from zerogate.proto.ip.nat import PROTO_TCP, Flow, rewrite_v4

RESOURCE = bytes([172, 16, 5, 10])
CLIENT = bytes([100, 64, 0, 2])
PROXY = bytes([100, 96, 0, 9])
GSO_TCPV4 = 1


def super_packet(payload_size: int, mss: int) -> bytes:
    """A vnet header and an IPv4/TCP super-packet from the resource host to the client."""
    tcp = struct.pack("!HHIIBBHHH", 5201, 40000, 1000, 77, 5 << 4, 0x18, 500, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + payload_size, 0x1234, 0x4000, 64, PROTO_TCP, 0,
        RESOURCE, CLIENT,
    )  # fmt: skip
    vnet = struct.pack("<BBHHHH", VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_TCPV4, 40, mss, 20, 16)
    return vnet + ip + tcp + bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256)


def per_call_us(work: Callable[[], object], seconds: float) -> float:
    calls = 0
    started = time.process_time()
    while time.process_time() - started < seconds:
        for _ in range(100):
            work()
        calls += 100
    return (time.process_time() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payload", type=int, default=63_000)
    parser.add_argument("--mss", type=int, default=1380)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    buffer = super_packet(args.payload, args.mss)
    out_key = CLIENT + PROXY + struct.pack("!HH", 40000, 5201)
    back_key = RESOURCE + CLIENT + struct.pack("!HH", 5201, 40000)
    flow = Flow(PROTO_TCP, out_key, back_key, PROXY, RESOURCE, 0.0)

    def translate(packet: bytes) -> bytes:
        return rewrite_v4(packet, flow, dst=False)

    segments = len(split_packet(buffer))
    result = {
        "segments": segments,
        "cut_us": round(per_call_us(lambda: split_packet(buffer), args.seconds), 1),
        "cut_then_translate_each_us": round(
            per_call_us(lambda: [translate(s) for s in split_packet(buffer)], args.seconds), 1
        ),
        "cut_translating_header_once_us": round(
            per_call_us(lambda: split_packet(buffer, translate), args.seconds), 1
        ),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"one {args.payload}-byte TCP super-packet, {segments} segments of {args.mss} bytes:")
    print(f"  cut only:                          {result['cut_us']} us")
    print(f"  cut, then translate each segment:  {result['cut_then_translate_each_us']} us")
    print(f"  cut, header translated once:       {result['cut_translating_header_once_us']} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
