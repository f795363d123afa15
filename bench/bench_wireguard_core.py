"""Throughput of the WireGuard core alone: encrypt and decrypt of 1400-byte
IPv4 packets between two devices in one process. Prints packets/s and
Gbit/s of plaintext, by wall clock and by this process's CPU time (the latter
is steadier on a busy machine); asserts nothing.

    python bench/bench_wireguard_core.py [seconds-per-phase]
"""

from __future__ import annotations

import ipaddress
import struct
import sys
import time

from zerogate.proto.wireguard import Device
from zerogate.proto.wireguard.crypto import generate_private_key

SIZE = 1400


def ipv4_packet(src: str, dst: str, size: int) -> bytes:
    payload = bytes(size - 20)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        size,
        0,
        0,
        64,
        17,
        0,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
    )
    return header + payload


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    now = 0.0
    a = Device(generate_private_key(), now=now, unix_time=1.7e9)
    b = Device(generate_private_key(), now=now, unix_time=1.7e9)
    a.add_peer(
        b.public_key,
        allowed_ips=[ipaddress.ip_network("10.0.0.2/32")],
        endpoint=("192.0.2.2", 51820),
        now=now,
    )
    b.add_peer(
        a.public_key,
        allowed_ips=[ipaddress.ip_network("10.0.0.1/32")],
        endpoint=("192.0.2.1", 51820),
        now=now,
    )
    source_a, source_b = ("192.0.2.1", 51820), ("192.0.2.2", 51820)
    packet = ipv4_packet("10.0.0.1", "10.0.0.2", SIZE)
    a.encrypt(packet, now)
    for _ in range(4):  # handshake and the first (queued) packet
        while (tx := a.poll_transmit()) is not None:
            b.decrypt(tx.data, source_a, now)
        while (tx := b.poll_transmit()) is not None:
            a.decrypt(tx.data, source_b, now)
    first = a.encrypt(packet, now)
    assert first is not None, "no session"

    batch = 2000
    datagrams: list[bytes] = []
    count = 0
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for _ in range(batch):
            out = a.encrypt(packet, now)
            if len(datagrams) < 200_000 and out is not None:
                datagrams.append(out[1])
        count += batch
    report("encrypt", count, time.perf_counter() - start, time.process_time() - cpu, "")

    count = 0
    delivered = 0
    start, cpu = time.perf_counter(), time.process_time()
    for data in datagrams:
        if b.decrypt(data, source_a, now) is not None:
            delivered += 1
        count += 1
        if count % 1000 == 0 and time.perf_counter() - start > seconds:
            break
    report(
        "decrypt",
        count,
        time.perf_counter() - start,
        time.process_time() - cpu,
        f", {delivered} delivered of {count}",
    )


def report(name: str, count: int, wall: float, cpu: float, extra: str) -> None:
    by_wall, by_cpu = count / wall, count / cpu
    print(
        f"{name}: {by_wall:,.0f} packets/s ({by_wall * SIZE * 8 / 1e9:.2f} Gbit/s) wall, "
        f"{by_cpu:,.0f} packets/s ({by_cpu * SIZE * 8 / 1e9:.2f} Gbit/s) per CPU second"
        f" [{SIZE} B{extra}]"
    )


if __name__ == "__main__":
    main()
