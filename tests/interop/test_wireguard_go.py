"""Our WireGuard interface (``zerogate-wg up``) against stock wireguard-go and wg(8).

Every test builds its own namespaces with the lab; the "ours" namespace runs
``zerogate-wg up NAME.conf``, the "go" namespace runs ``wireguard-go -f NAME``
configured with ``wg setconf``. Our side is treated as a black box: it is
configured only through its wg-quick file and the stock ``wg`` tool speaking
to its UAPI socket.

Underlay (veth):   ours 10.210.0.1/24 :51820  <->  go 10.210.0.2/24 :51821
Tunnel:            ours 10.99.0.1, fd00:99::1  <->  go 10.99.0.2, fd00:99::2
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from zerogate.testing.impair import Impairment, UdpImpairProxy
from zerogate.testing.lab import Link, Namespace, NetLab, lab_unavailable_reason
from zerogate.testing.transfer import TcpTransfer, tcp_transfer
from zerogate.testing.wireguard import (
    WgInterface,
    WgInterfaceConfig,
    WgPeerConfig,
    render_wg_setconf,
    start_wireguard_go,
    start_zerogate_wg,
    wg_keypair,
    wg_preshared_key,
    zerogate_wg_command,
)

if lab_unavailable_reason() is not None:
    pytest.skip(lab_unavailable_reason() or "", allow_module_level=True)
if shutil.which("wireguard-go") is None or shutil.which("wg") is None:
    pytest.skip("wireguard-go and wg (wireguard-tools) are not installed", allow_module_level=True)

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OURS_UNDER, GO_UNDER = "10.210.0.1", "10.210.0.2"
OURS_PORT, GO_PORT = 51820, 51821
OURS_TUN4, GO_TUN4 = "10.99.0.1", "10.99.0.2"
OURS_TUN6, GO_TUN6 = "fd00:99::1", "fd00:99::2"
MTU = 1420
BIG = 100 * 1000 * 1000  # 100 MB each way
MIB = 1024 * 1024
REKEY_TIMEOUT = 5  # whitepaper §6.1: a lost initiation is retried after 5 s
WG_MESSAGE_OVERHEAD = 32  # whitepaper §5.4.6: 16-byte header + 16-byte Poly1305 tag


@dataclass
class Pair:
    lab: NetLab
    ours_ns: Namespace
    go_ns: Namespace
    link: Link
    ours: WgInterface
    go: WgInterface


def _build_pair(
    lab: NetLab,
    *,
    ours_knows_endpoint: bool = True,
    go_knows_endpoint: bool = False,
    ours_psk: str | None = None,
    go_psk: str | None = None,
    before_ours: Callable[[Namespace, Namespace], object] | None = None,
    ours_peer_endpoint: str = f"{GO_UNDER}:{GO_PORT}",
) -> Pair:
    ours_ns, go_ns = lab.namespace("ours"), lab.namespace("go")
    link = lab.link(ours_ns, go_ns, [f"{OURS_UNDER}/24"], [f"{GO_UNDER}/24"])
    ours_keys, go_keys = wg_keypair(), wg_keypair()
    go_cfg = WgInterfaceConfig(
        private_key=go_keys.private,
        addresses=(f"{GO_TUN4}/24", f"{GO_TUN6}/64"),
        listen_port=GO_PORT,
        mtu=MTU,
        peers=(
            WgPeerConfig(
                ours_keys.public,
                (f"{OURS_TUN4}/32", f"{OURS_TUN6}/128"),
                endpoint=f"{OURS_UNDER}:{OURS_PORT}" if go_knows_endpoint else None,
                preshared_key=go_psk,
            ),
        ),
    )
    ours_cfg = WgInterfaceConfig(
        private_key=ours_keys.private,
        addresses=(f"{OURS_TUN4}/24", f"{OURS_TUN6}/64"),
        listen_port=OURS_PORT,
        mtu=MTU,
        peers=(
            WgPeerConfig(
                go_keys.public,
                (f"{GO_TUN4}/32", f"{GO_TUN6}/128"),
                endpoint=ours_peer_endpoint if ours_knows_endpoint else None,
                preshared_key=ours_psk,
            ),
        ),
    )
    go = start_wireguard_go(go_ns, go_cfg)
    if before_ours is not None:
        before_ours(ours_ns, go_ns)
    ours = start_zerogate_wg(ours_ns, ours_cfg)
    return Pair(lab, ours_ns, go_ns, link, ours, go)


@pytest.fixture
def lab():
    with NetLab() as the_lab:
        yield the_lab


@pytest.fixture
def pair(lab):
    """Ours knows go's endpoint (ours initiates); go learns ours from the handshake."""
    return _build_pair(lab)


_BAD_LOG = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")


def _assert_healthy(*ifaces: WgInterface) -> None:
    """Each interface's process still runs, and ours logged no traceback or error."""
    for iface in ifaces:
        output = iface.process.output()
        assert iface.process.alive(), (
            f"{iface.kind} exited {iface.process.returncode}:\n{output[-3000:]}"
        )
        if iface.kind == "zerogate":
            bad = [line for line in output.splitlines() if _BAD_LOG.search(line)]
            assert not bad, f"our interface logged:\n{output[-3000:]}"


# ------------------------------------------------------------------ handshake and ping


@pytest.mark.parametrize("ours_initiates", [True, False], ids=["ours-initiator", "ours-responder"])
def test_ping_both_ways(lab, ours_initiates):
    # Only the initiator knows the other's endpoint, so the other can only respond.
    p = _build_pair(lab, ours_knows_endpoint=ours_initiates, go_knows_endpoint=not ours_initiates)
    first, second = (p.ours_ns, p.go_ns) if ours_initiates else (p.go_ns, p.ours_ns)
    first_dst, second_dst = (GO_TUN4, OURS_TUN4) if ours_initiates else (OURS_TUN4, GO_TUN4)
    assert first.ping(first_dst, count=3, timeout=2), "initiator's ping got no reply"
    assert second.ping(second_dst, count=3, timeout=2), "responder's ping got no reply"
    # The responder learnt the initiator's endpoint from the authenticated handshake.
    responder = p.go if ours_initiates else p.ours
    initiator = p.ours if ours_initiates else p.go
    peer = responder.wait_handshake(initiator.public_key)
    if ours_initiates:
        assert peer.endpoint == f"{OURS_UNDER}:{OURS_PORT}"
    else:
        assert peer.endpoint == f"{GO_UNDER}:{GO_PORT}"
    ours_view = p.ours.wait_handshake(p.go.public_key)
    assert ours_view.rx_bytes > 0
    assert ours_view.tx_bytes > 0
    _assert_healthy(p.ours, p.go)


def test_ipv6_inside_the_tunnel(pair):
    assert pair.ours_ns.ping(GO_TUN6, count=3, timeout=2)
    assert pair.go_ns.ping(OURS_TUN6, count=3, timeout=2)
    result = tcp_transfer(pair.go_ns, pair.ours_ns, OURS_TUN6, 5006, 8 * MIB, timeout=60)
    assert result.intact, result
    result = tcp_transfer(pair.ours_ns, pair.go_ns, GO_TUN6, 5007, 8 * MIB, timeout=60)
    assert result.intact, result
    _assert_healthy(pair.ours, pair.go)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["ours-to-go", "go-to-ours"])
def test_100mb_tcp_transfer_sha256(pair, direction):
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    if direction == "ours-to-go":
        sender, receiver, dst = pair.ours_ns, pair.go_ns, GO_TUN4
    else:
        sender, receiver, dst = pair.go_ns, pair.ours_ns, OURS_TUN4
    result = tcp_transfer(sender, receiver, dst, 5001, BIG, timeout=100)
    assert result.sent_bytes == BIG
    assert result.received_bytes == BIG
    assert result.received_sha256 == result.sent_sha256
    # The counters on both sides account for at least the payload.
    ours_peer = pair.ours.dump().peer(pair.go.public_key)
    assert ours_peer is not None
    moved = ours_peer.tx_bytes if direction == "ours-to-go" else ours_peer.rx_bytes
    assert moved >= BIG
    _assert_healthy(pair.ours, pair.go)


def test_ipv6_underlay_endpoint(lab):
    ours_ns, go_ns = lab.namespace("ours"), lab.namespace("go")
    lab.link(ours_ns, go_ns, ["fd00:210::1/64"], ["fd00:210::2/64"])
    ours_keys, go_keys = wg_keypair(), wg_keypair()
    go = start_wireguard_go(
        go_ns,
        WgInterfaceConfig(
            go_keys.private,
            (f"{GO_TUN4}/24",),
            GO_PORT,
            MTU,
            (WgPeerConfig(ours_keys.public, (f"{OURS_TUN4}/32",)),),
        ),
    )
    ours = start_zerogate_wg(
        ours_ns,
        WgInterfaceConfig(
            ours_keys.private,
            (f"{OURS_TUN4}/24",),
            OURS_PORT,
            MTU,
            (WgPeerConfig(go_keys.public, (f"{GO_TUN4}/32",), f"[fd00:210::2]:{GO_PORT}"),),
        ),
    )
    assert ours_ns.ping(GO_TUN4, count=3, timeout=2)
    assert go_ns.ping(OURS_TUN4, count=3, timeout=2)
    go_peer = go.wait_handshake(ours.public_key)
    assert go_peer.endpoint == f"[fd00:210::1]:{OURS_PORT}"
    ours_peer = ours.dump().peer(go.public_key)
    assert ours_peer is not None
    assert ours_peer.endpoint == f"[fd00:210::2]:{GO_PORT}"
    _assert_healthy(ours, go)


def test_behind_nat_with_persistent_keepalive(lab):
    internet = lab.namespace("inet")
    site = lab.nat_site(
        "ours",
        internet,
        wan=("198.18.5.2/24", "198.18.5.1/24"),
        lan=("192.168.50.2/24", "192.168.50.1/24"),
    )
    ours_keys, go_keys = wg_keypair(), wg_keypair()
    go = start_wireguard_go(
        internet,
        WgInterfaceConfig(
            go_keys.private,
            (f"{GO_TUN4}/24",),
            GO_PORT,
            MTU,
            (WgPeerConfig(ours_keys.public, (f"{OURS_TUN4}/32",)),),
        ),
    )
    ours = start_zerogate_wg(
        site.host,
        WgInterfaceConfig(
            ours_keys.private,
            (f"{OURS_TUN4}/24",),
            OURS_PORT,
            MTU,
            (
                WgPeerConfig(
                    go_keys.public,
                    (f"{GO_TUN4}/32",),
                    "198.18.5.1:51821",
                    persistent_keepalive=1,
                ),
            ),
        ),
    )
    assert site.host.ping(GO_TUN4, count=3, timeout=2)
    go_peer = go.wait_handshake(ours.public_key)
    # wireguard-go sees us as the NAT's public address, and can reach us through the mapping.
    assert go_peer.endpoint is not None
    assert go_peer.endpoint.rsplit(":", 1)[0] == site.public_ip
    assert internet.ping(OURS_TUN4, count=3, timeout=2)
    assert "persistent keepalive: every 1 second" in ours.show()
    # With no traffic, keepalives (32-byte messages) keep arriving about once a second.
    time.sleep(0.5)
    snapshot = go.dump().peer(ours.public_key)
    assert snapshot is not None
    before = snapshot.rx_bytes
    time.sleep(3.5)
    after_peer = go.dump().peer(ours.public_key)
    assert after_peer is not None
    assert after_peer.rx_bytes - before >= 2 * WG_MESSAGE_OVERHEAD
    _assert_healthy(ours, go)


def test_lost_initiation_is_retried(pair):
    # Drop everything our side sends over UDP, so the first initiation is lost.
    pair.ours_ns.add_loss(1.0, chain="OUTPUT", protocol="udp")
    assert not pair.ours_ns.ping(GO_TUN4, count=1, timeout=0.5)
    time.sleep(0.5)
    pair.ours_ns.clear_loss(chain="OUTPUT")
    # No more traffic from us: the retransmission timer alone must complete the
    # handshake, REKEY_TIMEOUT (plus up to 333 ms jitter) after the first attempt.
    go_peer = pair.go.wait_handshake(pair.ours.public_key, timeout=3 * REKEY_TIMEOUT)
    assert go_peer.endpoint == f"{OURS_UNDER}:{OURS_PORT}"
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    _assert_healthy(pair.ours, pair.go)


def test_transfer_survives_underlay_loss(pair):
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    # 2 % of tunnel datagrams lost in each direction: TCP inside recovers, and the
    # receiver's replay window must accept the counters that follow a gap.
    pair.ours_ns.add_loss(0.02, chain="INPUT", protocol="udp")
    pair.go_ns.add_loss(0.02, chain="INPUT", protocol="udp")
    result = tcp_transfer(pair.ours_ns, pair.go_ns, GO_TUN4, 5008, 8 * MIB, timeout=90)
    assert result.intact, result
    result = tcp_transfer(pair.go_ns, pair.ours_ns, OURS_TUN4, 5009, 8 * MIB, timeout=90)
    assert result.intact, result
    _assert_healthy(pair.ours, pair.go)


# ------------------------------------------------------------------ duplicates and reordering
# A UDP proxy in go's namespace stands between the two (tc netem is not available):
# ours -> GO_UNDER:PROXY_PORT -> proxy -> GO_UNDER:GO_PORT, and back.

PROXY_PORT = 51900


def _pair_through_proxy(lab: NetLab, forward: Impairment, backward: Impairment):
    proxies: list[UdpImpairProxy] = []

    def add_proxy(_ours_ns: Namespace, go_ns: Namespace) -> None:
        proxies.append(
            UdpImpairProxy(
                go_ns,
                (GO_UNDER, PROXY_PORT),
                (GO_UNDER, GO_PORT),
                forward=forward,
                backward=backward,
                seed=1,
            )
        )

    p = _build_pair(lab, before_ours=add_proxy, ours_peer_endpoint=f"{GO_UNDER}:{PROXY_PORT}")
    return p, proxies[0]


def test_duplicated_datagrams_are_dropped_by_the_replay_window(lab):
    # Every datagram in both directions arrives twice, handshake messages included.
    dup = Impairment(duplicate=1.0)
    p, proxy = _pair_through_proxy(lab, dup, dup)
    assert p.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    report = p.ours_ns.ping_report(GO_TUN4, count=20, interval=0.02, timeout=1.0, linger=True)
    assert report.received == 20
    # Our side received every reply twice on the wire (the proxy says so) but must
    # deliver each decrypted packet once: a duplicate counter is a replay.
    assert proxy.stats_backward.duplicated >= 20
    assert report.duplicates == 0
    result = tcp_transfer(p.go_ns, p.ours_ns, OURS_TUN4, 5010, 4 * MIB, timeout=60)
    assert result.intact, result
    _assert_healthy(p.ours, p.go)


def test_reordered_datagrams_are_accepted(lab):
    # Up to 20 ms of random delay per datagram reorders a burst thoroughly; every
    # counter stays well inside the 8128-wide replay window (wireguard-go), so all
    # must be accepted.
    jitter = Impairment(jitter=0.02)
    p, proxy = _pair_through_proxy(lab, Impairment(), jitter)
    assert p.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    count = 300
    sink = p.ours_ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    source = p.go_ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sink, source:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sink.bind((OURS_TUN4, 6000))
        sink.settimeout(2.0)
        for i in range(count):
            source.sendto(i.to_bytes(4, "big") + bytes(96), (OURS_TUN4, 6000))
            if i % 50 == 49:
                time.sleep(0.005)  # keep wireguard-go's and the proxy's queues small
        got: list[int] = []
        with contextlib.suppress(TimeoutError):
            while len(got) < count:
                got.append(int.from_bytes(sink.recv(2048)[:4], "big"))
    assert proxy.stats_backward.reordered > 0, "the proxy did not reorder anything"
    assert proxy.stats_backward.dropped == 0
    assert sorted(got) == list(range(count))
    _assert_healthy(p.ours, p.go)


def test_mtu_sized_packets_cross_both_ways(pair):
    link = json.loads(pair.ours_ns.run("ip", "-j", "link", "show", "dev", pair.ours.ifname).stdout)
    assert link[0]["mtu"] == MTU
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    # Echo payloads that make IP packets of exactly the tunnel MTU (IPv4 header 20,
    # IPv6 header 40, ICMP header 8); their WireGuard datagrams still fit the veth's 1500.
    for src, dst, size in (
        (pair.ours_ns, GO_TUN4, MTU - 28),
        (pair.go_ns, OURS_TUN4, MTU - 28),
        (pair.ours_ns, GO_TUN6, MTU - 48),
        (pair.go_ns, OURS_TUN6, MTU - 48),
    ):
        report = src.ping_report(dst, count=3, interval=0.05, timeout=2, payload_size=size)
        assert report.received == 3, (dst, size)
    _assert_healthy(pair.ours, pair.go)


# ------------------------------------------------------------------ preshared key


def test_preshared_key(lab):
    psk = wg_preshared_key()
    p = _build_pair(lab, ours_psk=psk, go_psk=psk)
    assert p.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    assert p.go_ns.ping(OURS_TUN4, count=3, timeout=2)
    go_peer = p.go.dump().peer(p.ours.public_key)
    ours_peer = p.ours.dump().peer(p.go.public_key)
    assert go_peer is not None
    assert ours_peer is not None
    assert go_peer.preshared_key == psk
    assert ours_peer.preshared_key == psk  # our UAPI reports it like wireguard-go does
    result = tcp_transfer(p.ours_ns, p.go_ns, GO_TUN4, 5002, 4 * MIB, timeout=60)
    assert result.intact, result


def test_mismatched_preshared_key_never_completes_a_handshake(lab):
    p = _build_pair(lab, ours_psk=wg_preshared_key(), go_psk=wg_preshared_key())
    assert not p.ours_ns.ping(GO_TUN4, count=3, timeout=1)
    go_peer = p.go.dump().peer(p.ours.public_key)
    ours_peer = p.ours.dump().peer(p.go.public_key)
    assert go_peer is not None
    assert ours_peer is not None
    assert ours_peer.latest_handshake == 0
    assert go_peer.latest_handshake == 0
    _assert_healthy(p.ours, p.go)


# ------------------------------------------------------------------ roaming


def test_roaming_listen_port_change_mid_transfer(pair):
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    new_port = OURS_PORT + 10
    size = 30 * MIB
    transfer = TcpTransfer(pair.ours_ns, pair.go_ns, GO_TUN4, 5003, size).start()
    try:
        transfer.wait_received(size // 4, timeout=60)
        # Change our UDP port through our UAPI, with the stock wg tool.
        pair.ours.wg_set("listen-port", str(new_port))
    except BaseException:
        transfer.abort()
        raise
    result = transfer.wait(timeout=90)
    assert result.intact, result
    assert pair.ours.dump().listen_port == new_port
    # wireguard-go follows us to the new port (whitepaper §2.1, roaming).
    go_peer = pair.go.dump().peer(pair.ours.public_key)
    assert go_peer is not None
    assert go_peer.endpoint == f"{OURS_UNDER}:{new_port}"
    # And traffic the other way reaches the new port too.
    assert pair.go_ns.ping(OURS_TUN4, count=3, timeout=2)
    _assert_healthy(pair.ours, pair.go)


# ------------------------------------------------------------------ two peers


def _two_peers(lab: NetLab) -> tuple[Namespace, WgInterface, WgInterface, WgInterface]:
    """Ours with two wireguard-go peers: peer N owns 10.99.0.N/32 and 10.98.N.0/24."""
    ours_ns = lab.namespace("ours")
    ours_keys = wg_keypair()
    peers = []
    gos = []
    for idx in (2, 3):
        ns = lab.namespace(f"go{idx}")
        lab.link(ours_ns, ns, [f"10.21{idx}.0.1/24"], [f"10.21{idx}.0.2/24"])
        keys = wg_keypair()
        go = start_wireguard_go(
            ns,
            WgInterfaceConfig(
                private_key=keys.private,
                addresses=(f"10.99.0.{idx}/24", f"10.98.{idx}.1/24"),
                listen_port=GO_PORT,
                mtu=MTU,
                peers=(WgPeerConfig(ours_keys.public, (f"{OURS_TUN4}/32",)),),
            ),
        )
        gos.append(go)
        peers.append(
            WgPeerConfig(
                keys.public,
                (f"10.99.0.{idx}/32", f"10.98.{idx}.0/24"),
                endpoint=f"10.21{idx}.0.2:{GO_PORT}",
            )
        )
    ours = start_zerogate_wg(
        ours_ns,
        WgInterfaceConfig(
            private_key=ours_keys.private,
            addresses=(f"{OURS_TUN4}/24",),
            listen_port=OURS_PORT,
            mtu=MTU,
            peers=tuple(peers),
        ),
    )
    return ours_ns, ours, gos[0], gos[1]


def _rx_from(go: WgInterface, ours: WgInterface) -> int:
    peer = go.dump().peer(ours.public_key)
    assert peer is not None
    return peer.rx_bytes


def test_two_peers_with_distinct_allowed_ips(lab):
    ours_ns, ours, go2, go3 = _two_peers(lab)
    # 10.98.N.1 exists only on peer N: a reply proves the packet went to the right peer.
    assert ours_ns.ping("10.98.2.1", count=3, timeout=2)
    assert ours_ns.ping("10.98.3.1", count=3, timeout=2)
    assert go2.ns.ping(OURS_TUN4, count=2, timeout=2)
    assert go3.ns.ping(OURS_TUN4, count=2, timeout=2)

    before2, before3 = _rx_from(go2, ours), _rx_from(go3, ours)
    count = 10
    replies = ours_ns.ping_each("10.98.3.1", count=count, interval=0.02, timeout=2)
    assert all(r is not None for r in replies)
    grown2, grown3 = _rx_from(go2, ours) - before2, _rx_from(go3, ours) - before3
    # Each 84-byte echo request becomes at least 84 + 32 bytes of WireGuard on go3 only;
    # go2 may at most see one keepalive (32 bytes) meanwhile.
    assert grown3 >= count * (84 + WG_MESSAGE_OVERHEAD)
    assert grown2 <= 2 * WG_MESSAGE_OVERHEAD
    dump = ours.dump()
    assert {p.public_key for p in dump.peers} == {go2.public_key, go3.public_key}
    ours2 = dump.peer(go2.public_key)
    assert ours2 is not None
    assert set(ours2.allowed_ips) == {"10.99.0.2/32", "10.98.2.0/24"}
    assert ours2.endpoint == f"10.212.0.2:{GO_PORT}"
    _assert_healthy(ours, go2, go3)


def test_allowed_ip_moves_to_the_peer_that_claims_it(lab):
    ours_ns, ours, go2, go3 = _two_peers(lab)
    assert ours_ns.ping("10.98.3.1", count=3, timeout=2)
    assert ours_ns.ping("10.98.2.1", count=3, timeout=2)
    # wg(8): an allowed IP belongs to one peer; giving it to go2 takes it from go3.
    ours.wg_set("peer", go2.public_key, "allowed-ips", "10.99.0.2/32,10.98.2.0/24,10.98.3.0/24")
    dump = ours.dump()
    ours3 = dump.peer(go3.public_key)
    ours2 = dump.peer(go2.public_key)
    assert ours3 is not None
    assert ours2 is not None
    assert set(ours3.allowed_ips) == {"10.99.0.3/32"}
    assert set(ours2.allowed_ips) == {"10.99.0.2/32", "10.98.2.0/24", "10.98.3.0/24"}
    time.sleep(0.3)
    before2, before3 = _rx_from(go2, ours), _rx_from(go3, ours)
    count = 5
    # go2 does not own 10.98.3.1 and does not forward, so no reply comes back ...
    assert not ours_ns.ping("10.98.3.1", count=count, interval=0.05, timeout=0.5)
    # ... but the requests went to go2, not go3.
    assert _rx_from(go2, ours) - before2 >= count * (84 + WG_MESSAGE_OVERHEAD)
    assert _rx_from(go3, ours) - before3 <= 2 * WG_MESSAGE_OVERHEAD
    _assert_healthy(ours, go2, go3)


def test_wg_setconf_replaces_and_addconf_adds_peers(lab):
    ours_ns, ours, go2, go3 = _two_peers(lab)
    assert ours_ns.ping("10.98.2.1", count=3, timeout=2)
    peer3 = next(p for p in ours.config.peers if p.public_key == go3.public_key)
    peer2 = next(p for p in ours.config.peers if p.public_key == go2.public_key)
    only3 = lab.workdir / "only3.conf"
    only3.write_text(
        render_wg_setconf(WgInterfaceConfig(ours.config.private_key, (), OURS_PORT, None, (peer3,)))
    )
    ours_ns.run("wg", "setconf", ours.ifname, str(only3))
    assert {p.public_key for p in ours.dump().peers} == {go3.public_key}
    assert ours_ns.ping("10.98.3.1", count=3, timeout=2)
    assert not ours_ns.ping("10.98.2.1", count=2, timeout=0.5)
    add2 = lab.workdir / "add2.conf"
    add2.write_text(
        f"[Peer]\nPublicKey = {peer2.public_key}\n"
        f"AllowedIPs = {', '.join(peer2.allowed_ips)}\nEndpoint = {peer2.endpoint}\n"
    )
    ours_ns.run("wg", "addconf", ours.ifname, str(add2))
    assert {p.public_key for p in ours.dump().peers} == {go2.public_key, go3.public_key}
    assert ours_ns.ping("10.98.2.1", count=3, timeout=2)
    assert ours.dump().listen_port == OURS_PORT
    _assert_healthy(ours, go2, go3)


# ------------------------------------------------------------------ wg show / wg set


def test_wg_show_reads_our_interface(pair):
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    text = pair.ours.show()
    assert f"interface: {pair.ours.ifname}" in text
    assert f"public key: {pair.ours.public_key}" in text
    assert "private key: (hidden)" in text
    assert f"listening port: {OURS_PORT}" in text
    assert f"peer: {pair.go.public_key}" in text
    assert f"endpoint: {GO_UNDER}:{GO_PORT}" in text
    assert f"allowed ips: {GO_TUN4}/32, {GO_TUN6}/128" in text
    assert re.search(r"latest handshake: (Now|.*(second|minute)s? ago)", text), text
    assert re.search(r"transfer: [\d.]+ \w*B received, [\d.]+ \w*B sent", text), text
    dump = pair.ours.dump()
    peer = dump.peer(pair.go.public_key)
    assert peer is not None
    assert abs(time.time() - peer.latest_handshake) < 60
    assert peer.rx_bytes > 0
    assert peer.tx_bytes > 0
    assert dump.listen_port == OURS_PORT
    assert dump.public_key == pair.ours.public_key
    assert pair.ours.ifname in pair.ours_ns.run("wg", "show", "interfaces").stdout.split()
    # The private key is readable only through `wg show IF private-key` (root).
    assert pair.ours.show("private-key").strip() == pair.ours.config.private_key


def test_peer_remove_and_readd_while_traffic_flows(pair):
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    log: list[tuple[float, bool]] = []
    stop = threading.Event()

    def pinger() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            ok = pair.ours_ns.ping(GO_TUN4, timeout=0.3)
            log.append((sent, ok))
            time.sleep(0.05)

    thread = threading.Thread(target=pinger, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        removed_at = time.monotonic()
        pair.ours.wg_set("peer", pair.go.public_key, "remove")
        assert pair.go.public_key not in pair.ours.show("peers")
        time.sleep(1.5)
        readded_at = time.monotonic()
        pair.ours.wg_set(
            "peer",
            pair.go.public_key,
            "allowed-ips",
            f"{GO_TUN4}/32,{GO_TUN6}/128",
            "endpoint",
            f"{GO_UNDER}:{GO_PORT}",
        )
        # The re-added peer needs a new handshake; allow for one retry.
        deadline = time.monotonic() + REKEY_TIMEOUT + 5
        while time.monotonic() < deadline:
            if any(ok for sent, ok in log if sent > readded_at):
                break
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(5)
    before = [ok for sent, ok in log if sent < removed_at]
    during = [ok for sent, ok in log if removed_at + 0.2 < sent < readded_at - 0.4]
    after = [ok for sent, ok in log if sent > readded_at]
    assert before, "no pings before the removal"
    assert all(before), "pings failed before the peer was removed"
    assert during, "no pings while the peer was removed"
    assert not any(during), "traffic still reached the removed peer"
    assert any(after), "traffic did not resume after the peer was re-added"
    assert pair.go.public_key in pair.ours.show("peers")
    _assert_healthy(pair.ours, pair.go)


# ------------------------------------------------------------------ CLI contract


def test_sigterm_removes_the_interface(pair):
    assert pair.ours_ns.ping(GO_TUN4, count=3, timeout=2)
    code = pair.ours.stop()
    assert code == 0, pair.ours.process.output()[-2000:]
    assert not pair.ours_ns.link_exists(pair.ours.ifname)
    assert not pair.ours.uapi_path.exists()


def test_bad_config_exits_2_with_one_line(lab, tmp_path):
    ns = lab.namespace("ours")
    conf = tmp_path / f"{lab.ifname()}.conf"
    conf.write_text("[Interface]\nPrivateKey = not-base64!\nAddress = 10.99.0.1/24\n")
    os.chmod(conf, 0o600)
    proc = ns.run(*zerogate_wg_command(), "up", str(conf), check=False, timeout=20)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not-base64!" not in proc.stderr  # never echo key material
