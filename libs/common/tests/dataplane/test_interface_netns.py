"""Two ``zerogate-wg up`` interfaces in two namespaces, driven from outside like an
operator would: wg-quick files, the stock ``wg`` tool, signals, real traffic.

Underlay (veth):  a 10.211.0.1/24 :51830  <->  b 10.211.0.2/24 :51831 (or fd00:211::1/2)
Tunnel:           a 10.98.0.1, fd00:98::1  <->  b 10.98.0.2, fd00:98::2
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zerogate.dataplane.uapi import SOCKET_DIR
from zerogate.testing.lab import Namespace, NetLab, lab_unavailable_reason
from zerogate.testing.transfer import tcp_transfer
from zerogate.testing.wireguard import (
    WgInterface,
    WgInterfaceConfig,
    WgPeerConfig,
    render_wg_quick,
    start_wireguard_go,
    start_zerogate_wg,
    wg_keypair,
)

if lab_unavailable_reason() is not None:
    pytest.skip(lab_unavailable_reason() or "", allow_module_level=True)
if shutil.which("wg") is None:
    pytest.skip("wg (wireguard-tools) is not installed", allow_module_level=True)

pytestmark = [pytest.mark.netns]

A_UNDER, B_UNDER = "10.211.0.1", "10.211.0.2"
A_UNDER6, B_UNDER6 = "fd00:211::1", "fd00:211::2"
A_PORT, B_PORT = 51830, 51831
A4, B4, A6, B6 = "10.98.0.1", "10.98.0.2", "fd00:98::1", "fd00:98::2"
MTU = 1420
MB = 1000 * 1000


# `zerogate-wg up [options] CONFIG`: the lab appends "up CONFIG" to a command;
# this one puts our option between them.
def _command_with(option: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from zerogate.dataplane.cli import main; "
        f"sys.exit(main(['up', '{option}', sys.argv[2]]))",
    ]


MODES = {"offload": None, "plain": _command_with("--no-offload"), "tso": _command_with("--tso")}


@dataclass
class Pair:
    lab: NetLab
    a_ns: Namespace
    b_ns: Namespace
    a: WgInterface
    b: WgInterface


def build_pair(lab: NetLab, *, mode: str = "offload", v6_underlay: bool = False) -> Pair:
    a_ns, b_ns = lab.namespace("a"), lab.namespace("b")
    if v6_underlay:
        lab.link(a_ns, b_ns, [f"{A_UNDER6}/64"], [f"{B_UNDER6}/64"])
        b_endpoint = f"[{B_UNDER6}]:{B_PORT}"
    else:
        lab.link(a_ns, b_ns, [f"{A_UNDER}/24"], [f"{B_UNDER}/24"])
        b_endpoint = f"{B_UNDER}:{B_PORT}"
    a_keys, b_keys = wg_keypair(), wg_keypair()
    a_cfg = WgInterfaceConfig(
        private_key=a_keys.private,
        addresses=(f"{A4}/24", f"{A6}/64"),
        listen_port=A_PORT,
        mtu=MTU,
        peers=(
            WgPeerConfig(
                public_key=b_keys.public,
                allowed_ips=(f"{B4}/32", f"{B6}/128"),
                endpoint=b_endpoint,
            ),
        ),
    )
    # b does not know a's endpoint: it learns it from a's first handshake
    b_cfg = WgInterfaceConfig(
        private_key=b_keys.private,
        addresses=(f"{B4}/24", f"{B6}/64"),
        listen_port=B_PORT,
        mtu=MTU,
        peers=(WgPeerConfig(public_key=a_keys.public, allowed_ips=(f"{A4}/32", f"{A6}/128")),),
    )
    command = MODES[mode]
    a = start_zerogate_wg(a_ns, a_cfg, command=command)
    b = start_zerogate_wg(b_ns, b_cfg, command=command)
    return Pair(lab, a_ns, b_ns, a, b)


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with NetLab() as lab:
        yield lab


@pytest.mark.parametrize("mode", sorted(MODES))
def test_tunnel_carries_ping_and_tcp_in_both_families(lab: NetLab, mode: str) -> None:
    pair = build_pair(lab, mode=mode)
    assert pair.a_ns.ping(B4, count=3, timeout=3)
    assert pair.b_ns.ping(A6, count=3, timeout=3)
    for sender, receiver, address, size in (
        (pair.a_ns, pair.b_ns, B4, 30 * MB),
        (pair.b_ns, pair.a_ns, A4, 10 * MB),
        (pair.a_ns, pair.b_ns, B6, 10 * MB),
    ):
        result = tcp_transfer(sender, receiver, address, 5201, size, timeout=60)
        assert result.intact, result
    a_dump, b_dump = pair.a.dump(), pair.b.dump()
    assert a_dump.listen_port == A_PORT
    peer_b = a_dump.peer(pair.b.public_key)
    peer_a = b_dump.peer(pair.a.public_key)
    assert peer_b is not None
    assert peer_a is not None
    assert peer_b.latest_handshake > 0
    assert peer_b.endpoint == f"{B_UNDER}:{B_PORT}"
    assert peer_a.endpoint == f"{A_UNDER}:{A_PORT}"  # learned from the handshake
    assert set(peer_b.allowed_ips) == {f"{B4}/32", f"{B6}/128"}
    assert peer_b.tx_bytes > 40 * MB
    assert peer_a.rx_bytes > 40 * MB


def test_ipv6_underlay(lab: NetLab) -> None:
    pair = build_pair(lab, v6_underlay=True)
    assert pair.a_ns.ping(B4, count=3, timeout=3)
    result = tcp_transfer(pair.a_ns, pair.b_ns, B4, 5201, 10 * MB, timeout=60)
    assert result.intact, result
    peer_a = pair.b.dump().peer(pair.a.public_key)
    assert peer_a is not None
    assert peer_a.endpoint == f"[{A_UNDER6}]:{A_PORT}"


def test_wg_set_removes_and_adds_a_peer(lab: NetLab) -> None:
    pair = build_pair(lab)
    assert pair.a_ns.ping(B4, count=3, timeout=3)
    pair.a.wg_set("peer", pair.b.public_key, "remove")
    assert pair.a.dump().peers == ()
    assert not pair.a_ns.ping(B4, count=2, timeout=1)
    pair.a.wg_set(
        "peer",
        pair.b.public_key,
        "allowed-ips",
        f"{B4}/32,{B6}/128",
        "endpoint",
        f"{B_UNDER}:{B_PORT}",
        "persistent-keepalive",
        "25",
    )
    assert pair.a_ns.ping(B4, count=5, timeout=5)
    peer = pair.a.dump().peer(pair.b.public_key)
    assert peer is not None
    assert peer.persistent_keepalive == 25


def test_listen_port_change_is_followed_by_the_peer(lab: NetLab) -> None:
    pair = build_pair(lab)
    assert pair.a_ns.ping(B4, count=3, timeout=3)
    pair.a.wg_set("listen-port", "51839")
    assert pair.a.dump().listen_port == 51839
    assert pair.a_ns.ping(B4, count=5, timeout=5)
    peer_a = pair.b.dump().peer(pair.a.public_key)
    assert peer_a is not None
    assert peer_a.endpoint == f"{A_UNDER}:51839"  # roaming, whitepaper §2.1


def test_sigterm_removes_the_interface_and_its_socket(lab: NetLab) -> None:
    pair = build_pair(lab)
    assert pair.a.uapi_path.exists()
    assert pair.a_ns.link_exists(pair.a.ifname)
    assert pair.a.stop() == 0
    assert not pair.a.uapi_path.exists()
    assert not pair.a_ns.link_exists(pair.a.ifname)


def test_a_peer_can_be_given_its_own_path(lab: NetLab, tmp_path) -> None:
    """Item 7's hook for ICE pairs and TURN channels: PeerPath replaces the shared socket."""
    a_ns, b_ns = lab.namespace("a"), lab.namespace("b")
    lab.link(a_ns, b_ns, [f"{A_UNDER}/24"], [f"{B_UNDER}/24"])
    a_keys, b_keys = wg_keypair(), wg_keypair()
    b_cfg = WgInterfaceConfig(
        private_key=b_keys.private,
        addresses=(f"{B4}/24",),
        listen_port=B_PORT,
        peers=(WgPeerConfig(public_key=a_keys.public, allowed_ips=(f"{A4}/32",)),),
    )
    b = start_zerogate_wg(b_ns, b_cfg)
    a_name = lab.ifname()
    a_conf = tmp_path / f"{a_name}.conf"
    a_conf.write_text(
        render_wg_quick(
            WgInterfaceConfig(
                private_key=a_keys.private,
                addresses=(f"{A4}/24",),
                listen_port=A_PORT,
                peers=(WgPeerConfig(public_key=b_keys.public, allowed_ips=(f"{B4}/32",)),),
            )
        )
    )
    lab.remove_on_close(SOCKET_DIR / f"{a_name}.sock")
    helper = Path(__file__).with_name("path_peer.py")
    proc = a_ns.spawn([sys.executable, str(helper), str(a_conf), f"{B_UNDER}:{B_PORT}"])
    deadline = time.monotonic() + 15
    match = None
    while match is None and time.monotonic() < deadline and proc.alive():
        match = re.search(r"path-port (\d+)", proc.output())
        time.sleep(0.05)
    assert match is not None, proc.output()
    path_port = int(match.group(1))
    assert a_ns.ping(B4, count=5, timeout=5), proc.output()
    peer_a = b.dump().peer(a_keys.public)
    assert peer_a is not None
    # b saw a's traffic come from the path's own socket, not from a's ListenPort
    assert peer_a.endpoint == f"{A_UNDER}:{path_port}"
    out = a_ns.run("wg", "show", a_name, "endpoints").stdout
    assert "192.0.2.99:4242" in out
    # and back to the shared socket
    proc.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while "shared" not in proc.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a_ns.ping(B4, count=5, timeout=5), proc.output()
    peer_a = b.dump().peer(a_keys.public)
    assert peer_a is not None
    assert peer_a.endpoint == f"{A_UNDER}:{A_PORT}"
    proc.stop()
    assert not (SOCKET_DIR / f"{a_name}.sock").exists()


def _initiation_with_valid_mac1(responder_public: bytes, filler: bytes) -> bytes:
    """A 148-byte initiation (whitepaper §5.4.2) whose mac1 is right and all else junk.

    mac1 = MAC(HASH("mac1----" || Spub_responder), msg[0:116]) (§5.4.4), where
    HASH is BLAKE2s-256 and MAC is keyed BLAKE2s-128.
    """
    body = struct.pack("<I", 1) + filler[:112].ljust(112, b"\x00")  # type 1, then junk
    key = hashlib.blake2s(b"mac1----" + responder_public).digest()
    mac1 = hashlib.blake2s(body, digest_size=16, key=key).digest()
    return body + mac1 + bytes(16)


@pytest.mark.slow
def test_an_initiation_flood_is_answered_with_cookies_then_load_ends(lab: NetLab) -> None:
    """Whitepaper §5.3: under load, initiations without mac2 get a cookie reply."""
    a_ns, b_ns = lab.namespace("a"), lab.namespace("b")
    lab.link(a_ns, b_ns, [f"{A_UNDER}/24"], [f"{B_UNDER}/24"])
    a_keys = wg_keypair()
    a = start_zerogate_wg(
        a_ns,
        WgInterfaceConfig(private_key=a_keys.private, addresses=(f"{A4}/24",), listen_port=A_PORT),
    )
    responder = base64.b64decode(a_keys.public)
    cookie_reply_type, cookie_reply_size = 3, 64  # §5.4.7
    with b_ns.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((B_UNDER, 0))
        sock.settimeout(2.0)
        for i in range(600):  # bounded flood: 600 datagrams to an address we made
            sock.sendto(_initiation_with_valid_mac1(responder, os.urandom(112)), (A_UNDER, A_PORT))
            if i % 50 == 49:
                time.sleep(0.005)
        cookies = 0
        with contextlib.suppress(TimeoutError):
            while True:
                data = sock.recv(2048)
                if len(data) == cookie_reply_size and data[0] == cookie_reply_type:
                    cookies += 1
        assert cookies > 0, a.process.output()[-2000:]
        time.sleep(2.5)  # the under-load state ends 1 s after the last flood
        sock.sendto(_initiation_with_valid_mac1(responder, os.urandom(112)), (A_UNDER, A_PORT))
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(2048)
    assert "under load" in a.process.output()


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("wireguard-go") is None, reason="wireguard-go not installed")
def test_tso_segments_carry_valid_checksums_to_wireguard_go(lab: NetLab) -> None:
    """Our receiver trusts the AEAD and skips inner checksums; wireguard-go's kernel
    side checks them, so this is where a wrong TCP checksum from --tso would show."""
    a_ns, b_ns = lab.namespace("a"), lab.namespace("b")
    lab.link(a_ns, b_ns, [f"{A_UNDER}/24"], [f"{B_UNDER}/24"])
    a_keys, b_keys = wg_keypair(), wg_keypair()
    start_zerogate_wg(
        a_ns,
        WgInterfaceConfig(
            private_key=a_keys.private,
            addresses=(f"{A4}/24", f"{A6}/64"),
            listen_port=A_PORT,
            mtu=MTU,
            peers=(
                WgPeerConfig(
                    public_key=b_keys.public,
                    allowed_ips=(f"{B4}/32", f"{B6}/128"),
                    endpoint=f"{B_UNDER}:{B_PORT}",
                ),
            ),
        ),
        command=MODES["tso"],
    )
    start_wireguard_go(
        b_ns,
        WgInterfaceConfig(
            private_key=b_keys.private,
            addresses=(f"{B4}/24", f"{B6}/64"),
            listen_port=B_PORT,
            mtu=MTU,
            peers=(WgPeerConfig(public_key=a_keys.public, allowed_ips=(f"{A4}/32", f"{A6}/128")),),
        ),
    )
    assert a_ns.ping(B4, count=3, timeout=3)
    for address in (B4, B6):
        result = tcp_transfer(a_ns, b_ns, address, 5201, 20 * MB, timeout=60)
        assert result.intact, result
