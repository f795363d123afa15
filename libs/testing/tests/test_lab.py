"""Tests of the network-namespace lab itself (zerogate.testing.lab and friends)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.testing.impair import Impairment, UdpImpairProxy
from zerogate.testing.lab import (
    CommandFailed,
    CommandTimeout,
    NetLab,
    NetLabError,
    StartupFailed,
    existing_namespaces,
    lab_unavailable_reason,
)
from zerogate.testing.wireguard import (
    WgInterfaceConfig,
    WgPeerConfig,
    parse_wg_dump,
    render_wg_quick,
    render_wg_setconf,
    start_wireguard_go,
    start_zerogate_wg,
    wg_keypair,
    wg_preshared_key,
)

IFNAMSIZ = 16  # linux/if.h: names hold at most 15 characters plus NUL
NO_LAB = lab_unavailable_reason("iptables", "tc")
needs_lab = pytest.mark.skipif(NO_LAB is not None, reason=NO_LAB or "")


@pytest.fixture
def lab():
    with NetLab() as the_lab:
        yield the_lab


def _pid_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"  # a zombie is dead, only not reaped yet


# ----------------------------------------------------------------- pure helpers


def test_render_wg_quick_and_setconf():
    me, peer = wg_keypair(), wg_keypair()
    psk = wg_preshared_key()
    cfg = WgInterfaceConfig(
        private_key=me.private,
        addresses=("10.99.0.1/24", "fd00:99::1/64"),
        listen_port=51820,
        mtu=1380,
        peers=(
            WgPeerConfig(
                peer.public,
                ("10.99.0.2/32", "fd00:99::2/128"),
                endpoint="192.0.2.1:51821",
                preshared_key=psk,
                persistent_keepalive=25,
            ),
        ),
    )
    quick = render_wg_quick(cfg)
    assert f"PrivateKey = {me.private}" in quick
    assert "Address = 10.99.0.1/24, fd00:99::1/64" in quick
    assert "MTU = 1380" in quick
    assert "ListenPort = 51820" in quick
    assert f"[Peer]\nPublicKey = {peer.public}" in quick
    assert f"PresharedKey = {psk}" in quick
    assert "AllowedIPs = 10.99.0.2/32, fd00:99::2/128" in quick
    assert "Endpoint = 192.0.2.1:51821" in quick
    assert "PersistentKeepalive = 25" in quick
    setconf = render_wg_setconf(cfg)
    assert "Address" not in setconf
    assert "MTU" not in setconf
    assert f"PresharedKey = {psk}" in setconf
    # whitepaper: 32-byte keys, base64 of 32 bytes is 44 characters
    assert len(me.private) == len(me.public) == len(psk) == 44
    assert me.private not in repr(me)


def test_parse_wg_dump():
    text = (
        "cHJpdg==\tcHVi\t51820\toff\n"
        "UEVFUg==\t(none)\t10.0.0.2:51821\t10.99.0.2/32,fd00::2/128\t1700000000\t100\t200\t25\n"
        "UEVFUjI=\tcHNr\t(none)\t(none)\t0\t0\t0\toff\n"
    )
    dump = parse_wg_dump(text)
    assert dump.public_key == "cHVi"
    assert dump.listen_port == 51820
    first = dump.peer("UEVFUg==")
    assert first is not None
    assert first.endpoint == "10.0.0.2:51821"
    assert first.allowed_ips == ("10.99.0.2/32", "fd00::2/128")
    assert (first.latest_handshake, first.rx_bytes, first.tx_bytes) == (1700000000, 100, 200)
    assert first.persistent_keepalive == 25
    second = dump.peer("UEVFUjI=")
    assert second is not None
    assert second.endpoint is None
    assert second.allowed_ips == ()
    assert second.persistent_keepalive is None
    assert second.preshared_key == "cHNr"


@given(st.text(alphabet="ab0123456789\t\n()nofe-", max_size=200))
@settings(max_examples=300, deadline=None)
def test_parse_wg_dump_bad_input_raises_our_error(text):
    with contextlib.suppress(NetLabError):
        parse_wg_dump(text)


# ----------------------------------------------------------------- names


@needs_lab
def test_names_are_unique_and_fit_ifnamsiz(lab):
    names = [lab.ifname() for _ in range(200)]
    assert len(set(names)) == len(names)
    assert all(len(n) <= IFNAMSIZ - 1 for n in names)
    assert all(n.startswith("zg" + str(os.getpid())) for n in names)
    assert len(lab.tag) == 12
    assert lab.tag[2 + len(str(os.getpid())) :].isalpha()  # PID digits, then letters
    with NetLab() as other:
        assert other.tag != lab.tag
        assert not set(names) & {other.ifname() for _ in range(50)}


# ----------------------------------------------------------------- namespaces


@needs_lab
@pytest.mark.netns
def test_ping_across_veth_both_families(lab):
    a, b = lab.namespace("a"), lab.namespace("b")
    link = lab.link(a, b, ["10.201.0.1/24", "fd00:201::1/64"], ["10.201.0.2/24", "fd00:201::2/64"])
    assert a.ping(link.b_ip(4))
    assert b.ping(link.a_ip(4))
    assert a.ping(link.b_ip(6))
    rtts = a.ping_rtts(link.b_ip(6), count=5, interval=0.05)
    assert len(rtts) == 5
    assert all(0 < r < 1000 for r in rtts)
    # An address nobody has: no reply, and ping says so.
    assert not a.ping("10.201.0.9", timeout=0.3)
    # Namespaces are isolated: b's address is not reachable from a fresh namespace.
    c = lab.namespace("c")
    assert not c.ping(link.b_ip(4), timeout=0.3)


@needs_lab
@pytest.mark.netns
def test_commands_fail_loudly_and_are_bounded(lab):
    a = lab.namespace("a")
    with pytest.raises(CommandFailed) as info:
        a.run("ip", "link", "show", "dev", "nosuchif0")
    assert info.value.returncode != 0
    assert "nosuchif0" in str(info.value)
    start = time.monotonic()
    with pytest.raises(CommandTimeout):
        a.run("sleep", "5", timeout=0.3)
    assert time.monotonic() - start < 4


def _accept_peer(server: socket.socket, out: list[tuple[str, int]]) -> None:
    conn, peer = server.accept()
    with conn:
        out.append((peer[0], peer[1]))
        conn.sendall(b"ok")


def _connect_from(site_host, upstream, server_ip: str, port: int, src_port: int) -> tuple[str, int]:
    """Connect from ``src_port`` and return the (address, port) the server saw."""
    server = upstream.socket(socket.AF_INET, socket.SOCK_STREAM)
    with server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((server_ip, port))
        server.listen(1)
        server.settimeout(5)
        seen: list[tuple[str, int]] = []
        t = threading.Thread(target=_accept_peer, args=(server, seen))
        t.start()
        client = site_host.socket(socket.AF_INET, socket.SOCK_STREAM)
        with client:
            client.settimeout(5)
            client.bind(("0.0.0.0", src_port))
            client.connect((server_ip, port))
            assert client.recv(2) == b"ok"
        t.join(6)
    assert seen, "server saw no connection"
    return seen[0]


@needs_lab
@pytest.mark.netns
def test_nat_masquerade_shows_router_address(lab):
    internet = lab.namespace("inet")
    site = lab.nat_site(
        "home",
        internet,
        wan=("198.18.1.2/24", "198.18.1.1/24"),
        lan=("192.168.77.2/24", "192.168.77.1/24"),
    )
    assert site.public_ip == "198.18.1.2"
    # The host reaches the internet side only through the NAT.
    assert site.host.ping("198.18.1.1")
    seen_ip, seen_port = _connect_from(site.host, internet, "198.18.1.1", 7001, 40001)
    assert seen_ip == site.public_ip
    # Plain MASQUERADE keeps the source port when it is free.
    assert seen_port == 40001
    # The internet side cannot reach the private LAN address.
    assert not internet.ping("192.168.77.2", timeout=0.3)


@needs_lab
@pytest.mark.netns
def test_nat_random_fully_randomises_ports(lab):
    internet = lab.namespace("inet")
    site = lab.nat_site(
        "strict",
        internet,
        wan=("198.18.2.2/24", "198.18.2.1/24"),
        lan=("192.168.78.2/24", "192.168.78.1/24"),
        random_fully=True,
    )
    seen = [_connect_from(site.host, internet, "198.18.2.1", 7002, 41000 + i) for i in range(3)]
    assert all(ip == site.public_ip for ip, _ in seen)
    # Each mapping gets a random port: keeping all three would be a 1-in-10^13 event.
    assert any(port != 41000 + i for i, (_, port) in enumerate(seen))


@needs_lab
@pytest.mark.netns
def test_loss_rules_drop_packets(lab):
    a, b = lab.namespace("a"), lab.namespace("b")
    link = lab.link(a, b, ["10.202.0.1/24"], ["10.202.0.2/24"])
    b.add_loss(1.0, chain="INPUT", protocol="icmp")
    assert not a.ping(link.b_ip(), count=3, interval=0.05, timeout=0.3)
    b.clear_loss(chain="INPUT")
    assert a.ping(link.b_ip())
    b.add_loss(0.5, chain="INPUT", protocol="icmp")
    replies = a.ping_each(link.b_ip(), count=60, interval=0.005, timeout=0.5)
    got = sum(r is not None for r in replies)
    # Binomial(60, 0.5): outside [10, 50] has probability below 1e-7.
    assert 10 <= got <= 50
    with pytest.raises(ValueError):
        b.add_loss(1.5)


@needs_lab
@pytest.mark.netns
def test_rate_limit_slows_a_transfer(lab):
    a, b = lab.namespace("a"), lab.namespace("b")
    link = lab.link(a, b, ["10.203.0.1/24"], ["10.203.0.2/24"])
    size = 256 * 1024

    def transfer() -> float:
        server = b.socket()
        with server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((link.b_ip(), 7003))
            server.listen(1)
            server.settimeout(10)
            received = []

            def sink() -> None:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(10)
                    n = 0
                    while chunk := conn.recv(65536):
                        n += len(chunk)
                    received.append(n)

            t = threading.Thread(target=sink)
            t.start()
            start = time.monotonic()
            client = a.socket()
            with client:
                client.settimeout(10)
                client.connect((link.b_ip(), 7003))
                client.sendall(os.urandom(size))
            t.join(15)
            elapsed = time.monotonic() - start
        assert received == [size]
        return elapsed

    transfer()  # unshaped: works
    a.rate_limit(link.a_if, "1mbit", burst="16kb")
    # 256 KiB at 1 Mbit/s needs about 2.1 s; a shaper can only make it slower.
    assert transfer() > 1.0


@needs_lab
@pytest.mark.netns
def test_close_removes_namespaces_processes_and_files():
    lab = NetLab()
    a = lab.namespace("a")
    b = lab.namespace("b")
    names = {a.name, b.name}
    assert names <= existing_namespaces()
    tracked = a.spawn(["sleep", "60"])
    # A process started by a tracked one is not tracked itself; close finds it by namespace.
    spawner = b.spawn(["sh", "-c", "sleep 60 & echo $!; wait"])
    deadline = time.monotonic() + 5
    while not spawner.output().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    untracked_pid = int(spawner.output().split()[0])
    assert untracked_pid in b.pids()
    # A process outside our namespaces must survive.
    bystander = subprocess.Popen(["sleep", "60"])
    marker = lab.workdir / "marker"
    marker.write_text("x")
    extra = Path(lab.workdir.parent) / f"{lab.tag}-extra"
    extra.write_text("y")
    lab.remove_on_close(extra)
    try:
        lab.close()
        assert not names & existing_namespaces()
        assert not tracked.alive()
        assert not spawner.alive()
        deadline = time.monotonic() + 5
        while not _pid_gone(untracked_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pid_gone(untracked_pid)
        assert bystander.poll() is None
        assert not lab.workdir.exists()
        assert not extra.exists()
        lab.close()  # idempotent
        with pytest.raises(NetLabError):
            lab.namespace("c")
    finally:
        bystander.kill()
        bystander.wait(5)


@needs_lab
@pytest.mark.netns
def test_context_manager_cleans_up_after_an_error():
    made: list[str] = []

    def build_then_fail() -> None:
        with NetLab() as lab:
            made.append(lab.namespace("x").name)
            assert made[0] in existing_namespaces()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        build_then_fail()
    assert len(made) == 1
    assert made[0] not in existing_namespaces()


@needs_lab
@pytest.mark.netns
def test_startup_failure_is_reported(lab):
    a = lab.namespace("a")
    cfg = WgInterfaceConfig(private_key=wg_keypair().private, addresses=("10.99.0.1/24",))
    with pytest.raises(StartupFailed, match="exited 3"):
        start_zerogate_wg(
            a, cfg, command=[sys.executable, "-c", "import sys; print('nope'); sys.exit(3)"]
        )


@pytest.mark.skipif(
    NO_LAB is not None or shutil.which("wireguard-go") is None or shutil.which("wg") is None,
    reason=NO_LAB or "wireguard-go/wg not installed",
)
@pytest.mark.netns
@pytest.mark.interop
def test_two_wireguard_go_interfaces_talk(lab):
    a, b = lab.namespace("a"), lab.namespace("b")
    link = lab.link(a, b, ["10.204.0.1/24"], ["10.204.0.2/24"])
    ka, kb = wg_keypair(), wg_keypair()
    wa = start_wireguard_go(
        a,
        WgInterfaceConfig(
            ka.private,
            ("10.99.1.1/24",),
            51820,
            1420,
            (WgPeerConfig(kb.public, ("10.99.1.2/32",), f"{link.b_ip()}:51821"),),
        ),
    )
    wb = start_wireguard_go(
        b,
        WgInterfaceConfig(
            kb.private,
            ("10.99.1.2/24",),
            51821,
            1420,
            (WgPeerConfig(ka.public, ("10.99.1.1/32",)),),
        ),
    )
    assert a.ping("10.99.1.2", count=3, timeout=2)
    peer = wb.wait_handshake(ka.public)
    assert peer.endpoint == f"{link.a_ip()}:51820"
    assert peer.rx_bytes > 0
    assert wa.dump().listen_port == 51820
    assert wa.uapi_path.exists()
    wa.stop()
    assert not wa.uapi_path.exists()  # wireguard-go removes its socket on SIGTERM


# ----------------------------------------------------------------- UDP impairment proxy


def _udp_pair(lab):
    a, b = lab.namespace("a"), lab.namespace("b")
    link = lab.link(a, b, ["10.205.0.1/24"], ["10.205.0.2/24"])
    server = b.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((link.b_ip(), 9000))
    server.settimeout(1.0)
    client = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(1.0)
    return a, b, link, server, client


def _drain(sock) -> list[bytes]:
    out = []
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(sock.recv(2048))
    return out


@needs_lab
@pytest.mark.netns
def test_impair_proxy_duplicates_and_drops(lab):
    _a, b, link, server, client = _udp_pair(lab)
    with server, client:
        dup = UdpImpairProxy(
            b, (link.b_ip(), 9100), (link.b_ip(), 9000), forward=Impairment(duplicate=1.0)
        )
        for i in range(20):
            client.sendto(i.to_bytes(2, "big"), (link.b_ip(), 9100))
        got = _drain(server)
        assert sorted(got) == sorted([i.to_bytes(2, "big") for i in range(20)] * 2)
        assert dup.stats_forward.duplicated == 20
        # Answers go back to the client, unimpaired here.
        server.sendto(b"back", dup._upstream_sock.getsockname())
        assert client.recv(16) == b"back"
        dup.close()
        lossy = UdpImpairProxy(
            b, (link.b_ip(), 9101), (link.b_ip(), 9000), forward=Impairment(loss=1.0)
        )
        for i in range(10):
            client.sendto(bytes([i]), (link.b_ip(), 9101))
        assert _drain(server) == []
        assert lossy.stats_forward.dropped == 10
    with pytest.raises(ValueError):
        Impairment(loss=2.0)


@needs_lab
@pytest.mark.netns
def test_impair_proxy_delays_and_reorders(lab):
    _a, b, link, server, client = _udp_pair(lab)
    with server, client:
        proxy = UdpImpairProxy(
            b,
            (link.b_ip(), 9100),
            (link.b_ip(), 9000),
            forward=Impairment(delay=0.15, jitter=0.05),
            seed=7,
        )
        start = time.monotonic()
        client.sendto(b"x", (link.b_ip(), 9100))
        assert server.recv(16) == b"x"
        assert time.monotonic() - start >= 0.15  # a delay can only add time
        for i in range(100):
            client.sendto(i.to_bytes(2, "big"), (link.b_ip(), 9100))
        got = [int.from_bytes(d, "big") for d in _drain(server)]
        assert sorted(got) == list(range(100))  # nothing lost
        assert got != sorted(got)  # but reordered by the jitter
        assert proxy.stats_forward.reordered > 0


@needs_lab
@pytest.mark.netns
def test_interpreter_exit_cleans_up_a_lab_left_open():
    script = (
        "from zerogate.testing.lab import NetLab\n"
        "lab = NetLab()\n"
        "ns = lab.namespace('left')\n"
        "proc = ns.spawn(['sleep', '60'])\n"
        "print(ns.name, proc.pid, flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    name, pid = out.stdout.split()
    assert name not in existing_namespaces()
    assert _pid_gone(int(pid))
