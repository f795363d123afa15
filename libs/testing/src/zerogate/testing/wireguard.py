"""WireGuard interfaces for interop tests and benches.

Stock ``wireguard-go`` configured with ``wg setconf``, and our own
``zerogate-wg up NAME.conf``, each inside a lab namespace. Both give a
:class:`WgInterface` that reads its state back through ``wg show NAME dump``.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from zerogate.testing.lab import (
    READY_TIMEOUT,
    LabProcess,
    Namespace,
    NetLabError,
    StartupFailed,
)

WG_RUN_DIR = Path("/var/run/wireguard")  # wireguard-go ipc/uapi_unix.go socketDirectory
WG_KEY_LEN = 32  # whitepaper §5.4: Curve25519 keys and the PSK are 32 bytes

# --------------------------------------------------------------------------- WireGuard


@dataclass(frozen=True)
class WgKeypair:
    """A Curve25519 key pair, both halves base64 as ``wg`` prints them."""

    private: str = field(repr=False)
    public: str


def wg_keypair() -> WgKeypair:
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return WgKeypair(base64.b64encode(raw).decode(), base64.b64encode(pub).decode())


def wg_preshared_key() -> str:
    return base64.b64encode(secrets.token_bytes(WG_KEY_LEN)).decode()


@dataclass(frozen=True)
class WgPeerConfig:
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None
    preshared_key: str | None = field(default=None, repr=False)
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class WgInterfaceConfig:
    private_key: str = field(repr=False)
    addresses: tuple[str, ...]
    listen_port: int | None = None
    mtu: int | None = None
    peers: tuple[WgPeerConfig, ...] = ()


def _peer_lines(peer: WgPeerConfig) -> list[str]:
    lines = ["", "[Peer]", f"PublicKey = {peer.public_key}"]
    if peer.preshared_key:
        lines.append(f"PresharedKey = {peer.preshared_key}")
    if peer.allowed_ips:
        lines.append(f"AllowedIPs = {', '.join(peer.allowed_ips)}")
    if peer.endpoint:
        lines.append(f"Endpoint = {peer.endpoint}")
    if peer.persistent_keepalive:
        lines.append(f"PersistentKeepalive = {peer.persistent_keepalive}")
    return lines


def render_wg_quick(cfg: WgInterfaceConfig) -> str:
    """The wg-quick(8) form: ``[Interface]`` with Address and MTU, then ``[Peer]``s."""
    lines = ["[Interface]", f"PrivateKey = {cfg.private_key}"]
    if cfg.addresses:
        lines.append(f"Address = {', '.join(cfg.addresses)}")
    if cfg.listen_port is not None:
        lines.append(f"ListenPort = {cfg.listen_port}")
    if cfg.mtu is not None:
        lines.append(f"MTU = {cfg.mtu}")
    for peer in cfg.peers:
        lines += _peer_lines(peer)
    return "\n".join(lines) + "\n"


def render_wg_setconf(cfg: WgInterfaceConfig) -> str:
    """The wg(8) ``setconf`` form: no Address or MTU keys."""
    lines = ["[Interface]", f"PrivateKey = {cfg.private_key}"]
    if cfg.listen_port is not None:
        lines.append(f"ListenPort = {cfg.listen_port}")
    for peer in cfg.peers:
        lines += _peer_lines(peer)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class WgPeerStatus:
    """One peer line of ``wg show IF dump``."""

    public_key: str
    preshared_key: str | None
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: int  # unix seconds, 0 = never
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int | None


@dataclass(frozen=True)
class WgDump:
    public_key: str
    listen_port: int
    peers: tuple[WgPeerStatus, ...]

    def peer(self, public_key: str) -> WgPeerStatus | None:
        return next((p for p in self.peers if p.public_key == public_key), None)


def parse_wg_dump(text: str) -> WgDump:
    """Parse the tab-separated output of ``wg show IF dump`` (wireguard-tools show.c)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise NetLabError("empty wg dump")
    head = lines[0].split("\t")
    if len(head) != 4:
        raise NetLabError(f"bad interface line in wg dump: {len(head)} fields")
    peers = []
    for line in lines[1:]:
        f = line.split("\t")
        if len(f) != 8:
            raise NetLabError(f"bad peer line in wg dump: {len(f)} fields")
        try:
            peers.append(_peer_status(f))
        except ValueError as exc:
            raise NetLabError(f"bad number in wg dump: {exc}") from exc
    try:
        port = int(head[2])
    except ValueError as exc:
        raise NetLabError(f"bad listen port in wg dump: {head[2]!r}") from exc
    return WgDump(public_key=head[1], listen_port=port, peers=tuple(peers))


def _peer_status(f: list[str]) -> WgPeerStatus:
    return WgPeerStatus(
        public_key=f[0],
        preshared_key=None if f[1] == "(none)" else f[1],
        endpoint=None if f[2] == "(none)" else f[2],
        allowed_ips=() if f[3] == "(none)" else tuple(f[3].split(",")),
        latest_handshake=int(f[4]),
        rx_bytes=int(f[5]),
        tx_bytes=int(f[6]),
        persistent_keepalive=None if f[7] == "off" else int(f[7]),
    )


class WgInterface:
    """A running userspace WireGuard interface inside a namespace."""

    def __init__(
        self,
        kind: str,
        ns: Namespace,
        ifname: str,
        process: LabProcess,
        config: WgInterfaceConfig,
        public_key: str,
    ):
        self.kind = kind
        self.ns = ns
        self.ifname = ifname
        self.process = process
        self.config = config
        self.public_key = public_key

    def __repr__(self) -> str:
        return f"WgInterface({self.kind!r}, {self.ifname!r} in {self.ns.name!r})"

    @property
    def uapi_path(self) -> Path:
        return WG_RUN_DIR / f"{self.ifname}.sock"

    def show(self, *what: str) -> str:
        """Output of ``wg show IF [what...]``."""
        return self.ns.run("wg", "show", self.ifname, *what).stdout

    def dump(self) -> WgDump:
        return parse_wg_dump(self.show("dump"))

    def wg_set(self, *args: str) -> None:
        """``wg set IF args...``."""
        self.ns.run("wg", "set", self.ifname, *args)

    def listen_port(self) -> int:
        return self.dump().listen_port

    def wait_handshake(self, peer_public_key: str, timeout: float = 10.0) -> WgPeerStatus:
        deadline = time.monotonic() + timeout
        while True:
            peer = self.dump().peer(peer_public_key)
            if peer is not None and peer.latest_handshake > 0:
                return peer
            if time.monotonic() > deadline:
                raise NetLabError(f"no handshake with {peer_public_key} on {self.ifname}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        return self.process.stop()


def _wait_ready(
    ns: Namespace, ifname: str, process: LabProcess, addresses: Iterable[str], timeout: float
) -> None:
    wanted = {str(ipaddress.ip_interface(a)) for a in addresses}
    sock = WG_RUN_DIR / f"{ifname}.sock"
    deadline = time.monotonic() + timeout
    while True:
        if not process.alive():
            raise StartupFailed(
                f"{process.argv[0]} exited {process.returncode} before {ifname} was ready:\n"
                f"{process.output()[-2000:]}"
            )
        if sock.exists() and ns.link_exists(ifname):
            have = {str(ipaddress.ip_interface(a)) for a in ns.addresses(ifname)}
            if wanted <= have:
                return
        if time.monotonic() > deadline:
            raise StartupFailed(
                f"{ifname} not ready after {timeout} s (socket {sock.exists()}):\n"
                f"{process.output()[-2000:]}"
            )
        time.sleep(0.05)


def _public_key_of(private_key: str) -> str:
    raw = base64.b64decode(private_key)
    key = X25519PrivateKey.from_private_bytes(raw)
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _route_allowed_ips(ns: Namespace, ifname: str, cfg: WgInterfaceConfig) -> None:
    for peer in cfg.peers:
        for cidr in peer.allowed_ips:
            net = ipaddress.ip_network(cidr, strict=False)
            if net.prefixlen == 0:
                raise NetLabError("default routes through the tunnel are not supported here")
            ns.add_route(str(net), dev=ifname)


def start_wireguard_go(
    ns: Namespace,
    cfg: WgInterfaceConfig,
    *,
    ifname: str | None = None,
    binary: str = "wireguard-go",
    timeout: float = READY_TIMEOUT,
) -> WgInterface:
    """Run stock ``wireguard-go -f IF`` in ``ns`` and configure it like wg-quick would.

    ``wg setconf`` loads keys and peers; addresses, MTU and one route per
    AllowedIPs entry are set with ``ip``.
    """
    lab = ns.lab
    ifname = ifname or lab.ifname()
    lab.remove_on_close(WG_RUN_DIR / f"{ifname}.sock")
    proc = ns.spawn(
        [binary, "-f", ifname],
        env={"LOG_LEVEL": "error", "WG_PROCESS_FOREGROUND": "1"},
        label=f"wireguard-go-{ifname}",
    )
    _wait_ready(ns, ifname, proc, (), timeout)
    conf = lab.workdir / f"{ifname}.setconf"
    conf.write_text(render_wg_setconf(cfg))
    conf.chmod(0o600)
    ns.run("wg", "setconf", ifname, str(conf))
    for addr in cfg.addresses:
        ns.add_address(ifname, addr)
    ns.set_up(ifname, cfg.mtu)
    _route_allowed_ips(ns, ifname, cfg)
    return WgInterface("wireguard-go", ns, ifname, proc, cfg, _public_key_of(cfg.private_key))


def zerogate_wg_command() -> list[str]:
    """How to run our ``zerogate-wg`` console script (beside this interpreter, else PATH)."""
    beside = Path(sys.executable).parent / "zerogate-wg"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("zerogate-wg")
    if found:
        return [found]
    return [
        sys.executable,
        "-c",
        "import sys; from zerogate.dataplane.cli import main; sys.exit(main())",
    ]


def start_zerogate_wg(
    ns: Namespace,
    cfg: WgInterfaceConfig,
    *,
    ifname: str | None = None,
    command: Sequence[str] | None = None,
    timeout: float = READY_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> WgInterface:
    """Run ``zerogate-wg up IF.conf`` in ``ns`` and wait until its interface is ready.

    The wg-quick file is written to the lab's work directory (mode 0600), named
    after the interface, as the CLI takes the interface name from the file name.
    """
    lab = ns.lab
    ifname = ifname or lab.ifname()
    lab.remove_on_close(WG_RUN_DIR / f"{ifname}.sock")
    conf_dir = lab.workdir / f"zgconf-{ifname}"
    conf_dir.mkdir(mode=0o700)
    conf = conf_dir / f"{ifname}.conf"
    conf.write_text(render_wg_quick(cfg))
    conf.chmod(0o600)
    argv = [*(command or zerogate_wg_command()), "up", str(conf)]
    proc = ns.spawn(argv, env=env, label=f"zerogate-wg-{ifname}")
    _wait_ready(ns, ifname, proc, cfg.addresses, timeout)
    return WgInterface("zerogate", ns, ifname, proc, cfg, _public_key_of(cfg.private_key))
