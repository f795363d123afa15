"""The ICE agent core alone: setup time of two agents over a virtual link (simulated
milliseconds until both have a nominated pair) and CPU microseconds per
connectivity check (request encoded, answered, answer verified). Prints
figures, asserts nothing.

    python bench/bench_ice.py [checks]
"""

from __future__ import annotations

import heapq
import itertools
import random
import sys
import time

from zerogate.proto.ice import IceAgent, PairNominated, host_candidate, relayed_candidate
from zerogate.proto.net import Endpoint

UFRAG_A, PWD_A = "cli1", "clientclientclient0001"
UFRAG_B, PWD_B = "gw01", "gatewaygatewaygateway1"


def agents(seed: int = 1) -> tuple[IceAgent, IceAgent]:
    a = IceAgent(
        controlling=True,
        local_ufrag=UFRAG_A,
        local_pwd=PWD_A,
        remote_ufrag=UFRAG_B,
        remote_pwd=PWD_B,
        now=0.0,
        rng=random.Random(seed),
    )
    b = IceAgent(
        controlling=False,
        local_ufrag=UFRAG_B,
        local_pwd=PWD_B,
        remote_ufrag=UFRAG_A,
        remote_pwd=PWD_A,
        now=0.0,
        rng=random.Random(seed + 1),
    )
    return a, b


def setup_ms(latency: float, *, direct_reachable: bool) -> float:
    """Both agents have a host and a relayed candidate; the host pair may be unreachable."""
    a, b = agents()
    hosts = {"a": ("10.0.0.1", 5000), "b": ("10.0.0.2", 6000)}
    relays = {"a": ("203.0.113.1", 50000), "b": ("203.0.113.2", 50001)}
    owner: dict[Endpoint, IceAgent] = {relays["a"]: a, relays["b"]: b}
    if direct_reachable:
        owner |= {hosts["a"]: a, hosts["b"]: b}
    for me, peer, name in ((a, b, "a"), (b, a, "b")):
        for cand in (
            host_candidate(hosts[name]),
            relayed_candidate(relays[name], mapped=hosts[name], server_ip=relays[name][0]),
        ):
            me.add_local_candidate(cand, 0.0)
            peer.add_remote_candidate(cand, 0.0)
    in_flight: list[tuple[float, int, bytes, Endpoint, Endpoint]] = []
    seq = itertools.count()
    now, nominated_at = 0.0, {id(a): -1.0, id(b): -1.0}
    while now < 30.0:
        for agent in (a, b):
            while (tx := agent.poll_transmit()) is not None:
                if tx.destination in owner and (direct_reachable or tx.source in relays.values()):
                    heapq.heappush(
                        in_flight, (now + latency, next(seq), tx.data, tx.source, tx.destination)
                    )
            while (ev := agent.poll_event()) is not None:
                if isinstance(ev, PairNominated) and nominated_at[id(agent)] < 0:
                    nominated_at[id(agent)] = now
        if min(nominated_at.values()) >= 0:
            return max(nominated_at.values()) * 1000
        times = [t for t in (a.poll_timeout(), b.poll_timeout()) if t is not None]
        if in_flight:
            times.append(in_flight[0][0])
        if not times:
            break
        now = max(now, min(times))
        while in_flight and in_flight[0][0] <= now:
            _, _, data, source, destination = heapq.heappop(in_flight)
            owner[destination].handle_stun(data, source, destination, now)
        for agent in (a, b):
            deadline = agent.poll_timeout()
            if deadline is not None and deadline <= now:
                agent.handle_timeout(now)
    return float("nan")


def cpu_per_check(checks: int) -> float:
    """A consent check on a connected pair: encode, answer, verify; CPU µs per round."""
    a, b = agents()
    a_addr, b_addr = ("10.0.0.1", 5000), ("10.0.0.2", 6000)
    a.add_local_candidate(host_candidate(a_addr), 0.0)
    b.add_local_candidate(host_candidate(b_addr), 0.0)
    a.add_remote_candidate(host_candidate(b_addr), 0.0)
    b.add_remote_candidate(host_candidate(a_addr), 0.0)
    now = 0.0
    for _ in range(10):  # connect
        for me, peer, mine, theirs in ((a, b, a_addr, b_addr), (b, a, b_addr, a_addr)):
            while (tx := me.poll_transmit()) is not None:
                peer.handle_stun(tx.data, mine, theirs, now)
        now += 0.02
        a.handle_timeout(now)
    assert a.selected_pair is not None
    start = time.process_time()
    for _ in range(checks):
        now += 6.0  # past the next consent deadline
        a.handle_timeout(now)
        request = a.poll_transmit()
        assert request is not None
        b.handle_stun(request.data, a_addr, b_addr, now)
        response = b.poll_transmit()
        assert response is not None
        a.handle_stun(response.data, b_addr, a_addr, now)
    return (time.process_time() - start) / checks * 1e6


def main() -> None:
    checks = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    for latency_ms in (1, 5, 25, 50):
        direct = setup_ms(latency_ms / 1000, direct_reachable=True)
        relayed = setup_ms(latency_ms / 1000, direct_reachable=False)
        print(
            f"one-way latency {latency_ms:3d} ms: setup {direct:7.1f} ms direct, "
            f"{relayed:7.1f} ms relayed (host pair unreachable)"
        )
    print(f"CPU per check (request, answer, verify): {cpu_per_check(checks):.1f} µs")


if __name__ == "__main__":
    main()
