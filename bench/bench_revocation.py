"""Revocation latency: from a REST change to the last packet that gets through.

In the end-to-end lab, the client sends a stream of UDP datagrams (one every
2 ms) to the resource host, which timestamps what arrives. The policy that
grants the resource is then deleted over REST; the latency is the time from
the DELETE being sent to the last datagram the resource host received. The
policy is created again, access re-established, and the change repeated
``--count`` times. Prints p50/p99/max. Asserts nothing. Needs root.

    python bench/bench_revocation.py [--count 20] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import threading
import time
from typing import Any

from zerogate.testing.lab import NetLab, lab_unavailable_reason
from zerogate.testing.ztna import RESOURCE_V4, ZtnaLab, deploy

PORT = 9100
INTERVAL = 0.002


class Receiver:
    """A UDP socket in the resource namespace keeping the arrival time of the last datagram."""

    def __init__(self, lab: ZtnaLab) -> None:
        self.sock = lab.resource.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((RESOURCE_V4, PORT))
        self.sock.settimeout(0.2)
        self.last = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(2048)
            except TimeoutError:
                continue
            self.last = time.monotonic()
            self.count += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Sender:
    """Datagrams from the client namespace to the resource, one every INTERVAL."""

    def __init__(self, lab: ZtnaLab) -> None:
        self.sock = lab.client.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # refused (ICMP prohibited): keep going
                self.sock.sendto(b"x" * 64, (RESOURCE_V4, PORT))
            time.sleep(INTERVAL)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = lab_unavailable_reason("iptables", "setpriv")
    if reason is not None:
        print(f"bench_revocation: skipped: {reason}")
        return 0
    latencies: list[float] = []
    with NetLab() as net:
        lab = ZtnaLab.build(net)
        lab.start_control_plane(signaling=1, relays=1, traces=False).close()
        assert lab.plane is not None
        admin = lab.plane.admin()
        dep = deploy(lab, admin)
        receiver = Receiver(lab)
        sender = Sender(lab)
        try:
            for _ in range(args.count):
                before = receiver.count
                deadline = time.monotonic() + 20
                while receiver.count < before + 50 and time.monotonic() < deadline:
                    time.sleep(0.05)  # flowing again (access set up anew)
                if receiver.count < before + 50:
                    print("access did not come back; stopping")
                    break
                started = time.monotonic()
                admin.delete_policy(dep.policies["v4"])
                time.sleep(2.0)  # long enough for the last packet to be behind us
                latencies.append(max(0.0, receiver.last - started))
                dep.policies["v4"] = admin.policy(dep.group, dep.resources["v4"])
        finally:
            sender.close()
            receiver.close()
            dep.stop()
    result: dict[str, Any] = {"changes": len(latencies)}
    if latencies:
        ordered = sorted(latencies)
        result.update(
            p50_ms=round(statistics.median(ordered) * 1000, 1),
            p99_ms=round(
                ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000, 1
            ),
            max_ms=round(ordered[-1] * 1000, 1),
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(f"revocation, REST DELETE -> last packet through, over {result['changes']} changes:")
        if latencies:
            p50, p99, top = result["p50_ms"], result["p99_ms"], result["max_ms"]
            print(f"  p50 {p50} ms, p99 {p99} ms, max {top} ms (goal: p99 <= 1000 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
