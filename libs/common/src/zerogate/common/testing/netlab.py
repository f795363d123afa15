"""A small network lab built from Linux network namespaces, for tests and benches.

A :class:`NetLab` owns every namespace, veth pair, process and file it creates,
and removes exactly those (and nothing else) when it is closed: by ``with``, by
:meth:`NetLab.close`, or at interpreter exit through :mod:`atexit`. It needs
root, ``ip`` (iproute2), and for the NAT/loss helpers ``iptables``; ``tc`` for
rate limits. ``tc netem`` is deliberately not used (it is often missing), so:

* loss is ``iptables -m statistic --mode random --probability P -j DROP``;
* rate is a ``tbf`` qdisc;
* NAT is ``iptables -t nat ... -j MASQUERADE`` (``--random-fully`` gives a NAT
  that maps every flow to a random port, which defeats hole punching and so
  forces traffic through a relay).

Names. Every lab has a tag ``zg<pid><random letters>`` of 12 characters.
Namespaces are called ``<tag>-<role>``; interface names handed out by
:meth:`NetLab.ifname` are ``<tag><counter>`` and so fit Linux's 15-character
limit (``IFNAMSIZ`` 16 with the NUL, linux/if.h) and are unique on the machine.
That matters for userspace WireGuard, whose UAPI sockets live in the shared
``/var/run/wireguard`` directory whatever the namespace.

Processes run inside a namespace with ``ip netns exec`` (which ``exec``s the
program, so the PID we hold is the program's). They are tracked by PID and, on
close, sent SIGTERM, then SIGKILL after a grace period. Any other process still
inside one of *our* namespaces (``ip netns pids``) is killed by PID too. No
process is ever looked up by name.

Every command runs with a timeout; a failure raises :class:`CommandFailed`
carrying the command line and its stderr.

The second half of the module starts WireGuard interfaces for interop tests and
benches: stock ``wireguard-go`` configured with ``wg setconf``, and our own
``zerogate-wg up NAME.conf``. Both give a :class:`WgInterface` that reads its
state back through ``wg show NAME dump``.

Error tree::

    NetLabError
    ├── LabUnavailable      (not root, tool missing)
    ├── CommandFailed       (a command exited non-zero)
    │   └── CommandTimeout  (a command ran past its timeout)
    └── StartupFailed       (a daemon died or never became ready)

Example::

    with NetLab() as lab:
        a, b = lab.namespace("a"), lab.namespace("b")
        lab.link(a, b, ["10.0.0.1/24"], ["10.0.0.2/24"])
        assert a.ping("10.0.0.2")
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import hashlib
import heapq
import ipaddress
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self, TypeVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = [
    "CommandFailed",
    "CommandTimeout",
    "Impairment",
    "LabProcess",
    "LabUnavailable",
    "Link",
    "Namespace",
    "NatSite",
    "NetLab",
    "NetLabError",
    "PingReport",
    "ProxyStats",
    "StartupFailed",
    "TcpTransfer",
    "TransferResult",
    "UdpImpairProxy",
    "WgDump",
    "WgInterface",
    "WgInterfaceConfig",
    "WgKeypair",
    "WgPeerConfig",
    "WgPeerStatus",
    "existing_namespaces",
    "lab_unavailable_reason",
    "parse_wg_dump",
    "render_wg_quick",
    "render_wg_setconf",
    "start_wireguard_go",
    "start_zerogate_wg",
    "tcp_transfer",
    "wg_keypair",
    "wg_preshared_key",
]

IFNAMSIZ = 16  # linux/if.h: interface names are at most IFNAMSIZ - 1 = 15 bytes
MAX_IFNAME = IFNAMSIZ - 1
MAX_TAG = 12  # leaves three characters for the per-lab interface counter
DEFAULT_PREFIX = "zg"
COMMAND_TIMEOUT = 15.0  # seconds; every helper command is bounded by this
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
READY_TIMEOUT = 15.0  # seconds a daemon gets to create its interface/socket
WG_RUN_DIR = Path("/var/run/wireguard")  # wireguard-go ipc/uapi_unix.go socketDirectory
WG_KEY_LEN = 32  # whitepaper §5.4: Curve25519 keys and the PSK are 32 bytes

T = TypeVar("T")

_ROLE_RE = re.compile(r"^[a-z0-9]{1,16}$")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class NetLabError(Exception):
    """Base error of the lab."""


class LabUnavailable(NetLabError):
    """The lab cannot run here (not root, or a tool is missing)."""


class CommandFailed(NetLabError):
    """A command run by the lab exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = stderr.strip() or stdout.strip()
        super().__init__(f"{' '.join(self.argv)!r} exited {returncode}: {detail[:2000]}")


class CommandTimeout(CommandFailed):
    """A command run by the lab did not finish within its timeout."""


class StartupFailed(NetLabError):
    """A daemon exited early or did not become ready in time."""


def lab_unavailable_reason(*tools: str) -> str | None:
    """Why the lab cannot run here, or ``None`` when it can.

    Checks for root and for ``ip`` plus every extra tool named (for example
    ``"iptables"``, ``"wireguard-go"``, ``"wg"``). Tests turn a reason into
    ``pytest.skip(reason)``.
    """
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(
    argv: Sequence[str],
    *,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise CommandTimeout(argv, None, out, err or f"timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _is_v6(addr: str) -> bool:
    return ipaddress.ip_interface(addr).version == 6


_CLONE_NEWNET = 0x40000000  # linux/sched.h
_NETNS_DIR = Path("/var/run/netns")  # where `ip netns add` mounts namespaces
_libc = ctypes.CDLL(None, use_errno=True)


def _call_in_netns(name: str, fn: Callable[[], T]) -> T:
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            with (_NETNS_DIR / name).open("rb") as handle:
                if _libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({name}): {os.strerror(err)}")
            outcome.append((True, fn()))
        except BaseException as exc:  # handed back to the caller below
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0  # RFC 792
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129  # RFC 4443 §4.1, §4.2


def _inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _echo_request(v6: bool, ident: int, seq: int, payload: bytes) -> bytes:
    kind = ICMPV6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST
    head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:  # the kernel fills in the ICMPv6 checksum (it needs the pseudo-header)
        return head + payload
    csum = _inet_checksum(head + payload)
    return struct.pack("!BBHHH", kind, 0, csum, ident, seq) + payload


def _echo_reply(v6: bool, data: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply, else None. IPv4 raw reads include the IP header."""
    if not v6:
        if len(data) < 20:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < 8:
        return None
    kind, code, _csum, ident, seq = struct.unpack("!BBHHH", data[:8])
    if code != 0 or kind != (ICMPV6_ECHO_REPLY if v6 else ICMP_ECHO_REPLY):
        return None
    return ident, seq


@dataclass(frozen=True)
class PingReport:
    """Per-request round-trip times in ms (``None`` = lost) and the duplicate replies seen."""

    rtts: tuple[float | None, ...]
    duplicates: int

    @property
    def received(self) -> int:
        return sum(r is not None for r in self.rtts)


def _ping_loop(
    sock: socket.socket,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
    count: int,
    interval: float,
    timeout: float,
    payload_size: int,
    linger: bool,
) -> PingReport:
    v6 = dst.version == 6
    ident = secrets.randbits(16)
    payload = (b"zerogate-netlab-" * (payload_size // 16 + 1))[:payload_size]
    sent: dict[int, float] = {}
    rtts: list[float | None] = [None] * count
    duplicates = 0
    seq = 0
    next_send = time.monotonic()
    end = float("inf")
    while True:
        now = time.monotonic()
        if seq < count and now >= next_send:
            sent[seq] = now
            with contextlib.suppress(OSError):  # no route yet: counts as a loss
                sock.sendto(_echo_request(v6, ident, seq, payload), (str(dst), 0))
            seq += 1
            next_send = now + interval
            if seq == count:
                end = now + timeout
        done = seq == count and not linger and all(r is not None for r in rtts)
        if now >= end or done:
            return PingReport(tuple(rtts), duplicates)
        wake = min(next_send if seq < count else end, end)
        ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if not ready:
            continue
        data, addr = sock.recvfrom(65535)
        got = time.monotonic()
        reply = _echo_reply(v6, data)
        if reply is None or reply[0] != ident or reply[1] not in sent:
            continue
        if ipaddress.ip_address(str(addr[0]).split("%")[0]) != dst:
            continue
        if rtts[reply[1]] is None:
            rtts[reply[1]] = (got - sent[reply[1]]) * 1000.0
        else:
            duplicates += 1


# --------------------------------------------------------------------------- processes


class LabProcess:
    """A process running inside a namespace, tracked by PID.

    Its stdout and stderr go to a log file in the lab's work directory (never a
    pipe, so a chatty daemon cannot block on a full pipe).
    """

    def __init__(self, popen: subprocess.Popen[bytes], argv: Sequence[str], log_path: Path):
        self.popen = popen
        self.argv = list(argv)
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for exit; raise :class:`CommandTimeout` after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(self.argv, None, self.output(), "still running") from exc

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr interleaved)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signum)

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=grace)
        return self.popen.poll()

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process so far (all its threads), in seconds."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # The command name (field 2) may hold spaces; fields after ')' are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15, proc(5)
        return (utime + stime) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- namespaces


class Namespace:
    """One network namespace made by a :class:`NetLab`."""

    def __init__(self, lab: NetLab, name: str, role: str):
        self.lab = lab
        self.name = name
        self.role = role

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    # ---- commands

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """The argument vector that runs ``argv`` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        *argv: str,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it (bounded by ``timeout``)."""
        return _run(self.exec_argv(argv), timeout=timeout, check=check, input_text=input_text)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> LabProcess:
        """Start a long-running process inside the namespace; the lab stops it on close."""
        return self.lab._spawn(self, argv, env=env, label=label)

    def pids(self) -> list[int]:
        """PIDs of every process whose network namespace is this one."""
        proc = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]

    # ---- configuration

    def sysctl(self, key: str, value: str | int) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def enable_forwarding(self) -> None:
        """Turn this namespace into a router for IPv4 and IPv6."""
        self.sysctl("net.ipv4.ip_forward", 1)
        with contextlib.suppress(CommandFailed):
            self.sysctl("net.ipv6.conf.all.forwarding", 1)

    def enable_ipv6(self) -> None:
        """Enable IPv6 and turn duplicate address detection off for new interfaces.

        Without DAD, link-local addresses are usable at once, so neighbour
        discovery answers the first packet instead of a second later.
        """
        settings = (
            ("net.ipv6.conf.all.disable_ipv6", 0),
            ("net.ipv6.conf.default.disable_ipv6", 0),
            ("net.ipv6.conf.all.accept_dad", 0),
            ("net.ipv6.conf.default.accept_dad", 0),
        )
        for key, value in settings:
            with contextlib.suppress(CommandFailed):
                self.sysctl(key, value)

    def add_address(self, ifname: str, address: str) -> None:
        """Add ``address`` (``"10.0.0.1/24"``, ``"fd00::1/64"``) to ``ifname``.

        IPv6 addresses skip duplicate address detection, so they work at once.
        """
        extra = ["nodad"] if _is_v6(address) else []
        self.run("ip", "addr", "add", address, "dev", ifname, *extra)

    def set_up(self, ifname: str, mtu: int | None = None) -> None:
        args = ["ip", "link", "set", "dev", ifname]
        if mtu is not None:
            args += ["mtu", str(mtu)]
        self.run(*args, "up")

    def add_route(
        self, destination: str, *, via: str | None = None, dev: str | None = None
    ) -> None:
        """``ip route replace destination [via GW] [dev IF]`` (``default`` is allowed)."""
        family = "-6" if (via and ":" in via) or ":" in destination else "-4"
        args = ["ip", family, "route", "replace", destination]
        if via is not None:
            args += ["via", via]
        if dev is not None:
            args += ["dev", dev]
        self.run(*args)

    def addresses(self, ifname: str) -> list[str]:
        """Addresses on ``ifname`` as ``"addr/prefix"`` strings (empty if it is missing)."""
        proc = self.run("ip", "-j", "addr", "show", "dev", ifname, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return []
        out: list[str] = []
        for link in json.loads(proc.stdout):
            for info in link.get("addr_info", []):
                out.append(f"{info['local']}/{info['prefixlen']}")
        return out

    def wait_oper_up(self, ifname: str, timeout: float = 5.0) -> None:
        """Wait until the kernel reports ``ifname`` operationally up.

        The carrier of a fresh veth comes up asynchronously; IPv6 neighbour
        discovery stays silent until it has, so tests would see a first
        packet delayed by up to a second.
        """
        deadline = time.monotonic() + timeout
        while True:
            proc = self.run("ip", "-j", "link", "show", "dev", ifname)
            state = json.loads(proc.stdout)[0].get("operstate")
            if state in ("UP", "UNKNOWN"):
                return
            if time.monotonic() > deadline:
                raise NetLabError(f"{ifname} in {self.name} still {state} after {timeout} s")
            time.sleep(0.02)

    def link_exists(self, ifname: str) -> bool:
        return self.run("ip", "link", "show", "dev", ifname, check=False).returncode == 0

    def iptables(self, *args: str, ipv6: bool = False) -> None:
        self.run("ip6tables" if ipv6 else "iptables", "-w", "5", *args)

    def masquerade(self, out_ifname: str, *, random_fully: bool = False) -> None:
        """Source-NAT everything leaving through ``out_ifname`` to that interface's address.

        With ``random_fully`` every new flow gets a random source port: an
        "endpoint-dependent" NAT that hole punching cannot cross.
        """
        args = ["-t", "nat", "-A", "POSTROUTING", "-o", out_ifname, "-j", "MASQUERADE"]
        if random_fully:
            args.append("--random-fully")
        self.iptables(*args)

    def add_loss(
        self,
        probability: float,
        *,
        chain: str = "FORWARD",
        in_ifname: str | None = None,
        out_ifname: str | None = None,
        protocol: str | None = None,
        ipv6: bool = False,
    ) -> None:
        """Drop each matching packet with ``probability`` (0..1) in ``chain``.

        ``chain`` is ``FORWARD`` on a router, ``INPUT``/``OUTPUT`` on a host.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        args = ["-A", chain]
        if in_ifname:
            args += ["-i", in_ifname]
        if out_ifname:
            args += ["-o", out_ifname]
        if protocol:
            args += ["-p", protocol]
        args += ["-m", "statistic", "--mode", "random", "--probability", f"{probability:.6f}"]
        self.iptables(*args, "-j", "DROP", ipv6=ipv6)

    def clear_loss(self, *, chain: str = "FORWARD", ipv6: bool = False) -> None:
        """Remove every rule from ``chain`` of the filter table."""
        self.iptables("-F", chain, ipv6=ipv6)

    def rate_limit(
        self, ifname: str, rate: str, *, burst: str = "64kb", latency: str = "50ms"
    ) -> None:
        """Shape egress of ``ifname`` with a token bucket (``rate`` like ``"20mbit"``)."""
        self.run(
            "tc", "qdisc", "replace", "dev", ifname, "root", "tbf",
            "rate", rate, "burst", burst, "latency", latency,
        )  # fmt: skip

    def clear_rate_limit(self, ifname: str) -> None:
        self.run("tc", "qdisc", "del", "dev", ifname, "root", check=False)

    # ---- in-process access

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a short-lived thread that has entered this namespace.

        Only that thread switches namespace (``setns(2)`` on a thread), so the
        caller's own networking is untouched. Sockets created by ``fn`` stay
        in this namespace for their whole life, whichever thread uses them.
        """
        return _call_in_netns(self.name, fn)

    def socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        """A socket that lives in this namespace, usable from any thread."""
        return self.call(lambda: socket.socket(family, type, proto))

    # ---- probes

    def ping(
        self, destination: str, *, count: int = 1, timeout: float = 1.0, interval: float = 0.2
    ) -> bool:
        """True when at least one of ``count`` ICMP echo requests got a reply."""
        replies = self.ping_each(destination, count=count, timeout=timeout, interval=interval)
        return any(r is not None for r in replies)

    def ping_rtts(
        self, destination: str, *, count: int = 20, interval: float = 0.1, timeout: float = 1.0
    ) -> list[float]:
        """Round-trip times in milliseconds of the echo replies that came back."""
        replies = self.ping_each(destination, count=count, timeout=timeout, interval=interval)
        return [r for r in replies if r is not None]

    def ping_each(
        self,
        destination: str,
        *,
        count: int = 1,
        interval: float = 0.2,
        timeout: float = 1.0,
        payload_size: int = 56,
    ) -> list[float | None]:
        """Send ``count`` ICMP echo requests, ``interval`` seconds apart, from this namespace.

        Returns one entry per request: its round-trip time in milliseconds, or
        ``None`` when no reply came within ``timeout`` seconds after the last
        request. Uses a raw socket (root), so no ``ping`` binary is needed.
        """
        report = self.ping_report(
            destination, count=count, interval=interval, timeout=timeout, payload_size=payload_size
        )
        return list(report.rtts)

    def ping_report(
        self,
        destination: str,
        *,
        count: int = 1,
        interval: float = 0.2,
        timeout: float = 1.0,
        payload_size: int = 56,
        linger: bool = False,
    ) -> PingReport:
        """Like :meth:`ping_each`, also counting duplicate replies (iputils' ``DUP!``).

        With ``linger`` it keeps listening for the full ``timeout`` after the
        last request even when every reply is in, so late duplicates count.
        """
        dst = ipaddress.ip_address(destination)
        if dst.version == 6:
            sock = self.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        else:
            sock = self.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        with sock:
            return _ping_loop(sock, dst, count, interval, timeout, payload_size, linger)


@dataclass(frozen=True)
class Link:
    """A veth pair: ``a_if`` lives in ``a``, ``b_if`` in ``b``."""

    a: Namespace
    a_if: str
    b: Namespace
    b_if: str
    a_addrs: tuple[str, ...]
    b_addrs: tuple[str, ...]

    def a_ip(self, version: int = 4) -> str:
        """``a``'s first address of that IP version, without the prefix length."""
        return _first_ip(self.a_addrs, version)

    def b_ip(self, version: int = 4) -> str:
        return _first_ip(self.b_addrs, version)


def _first_ip(addrs: Iterable[str], version: int) -> str:
    for addr in addrs:
        iface = ipaddress.ip_interface(addr)
        if iface.version == version:
            return str(iface.ip)
    raise LookupError(f"no IPv{version} address among {list(addrs)}")


@dataclass(frozen=True)
class NatSite:
    """A host behind a NAT router, the router uplinked to ``upstream``.

    ``public_ip`` is the router's WAN address: what the internet side sees.
    """

    host: Namespace
    router: Namespace
    lan: Link  # a = host, b = router
    wan: Link  # a = router, b = upstream
    public_ip: str


# --------------------------------------------------------------------------- the lab

_OPEN_LABS: set[NetLab] = set()
_OPEN_LABS_LOCK = threading.Lock()
_USED_TAGS: set[str] = set()


def _close_all_labs() -> None:
    with _OPEN_LABS_LOCK:
        labs = list(_OPEN_LABS)
    for lab in labs:
        lab.close()


atexit.register(_close_all_labs)


class NetLab:
    """Owner of a set of namespaces, links, processes and files; see the module doc."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not re.fullmatch(r"[a-z]{1,4}", prefix):
            raise ValueError("prefix must be 1-4 lowercase letters")
        reason = lab_unavailable_reason()
        if reason is not None:
            raise LabUnavailable(reason)
        pid = str(os.getpid())
        # Letters after the digits of the PID keep the boundary unambiguous, so
        # tags of different processes never collide; within a process a set does.
        rand_len = max(2, MAX_TAG - len(prefix) - len(pid))
        with _OPEN_LABS_LOCK:
            while True:
                rand = "".join(secrets.choice(string.ascii_lowercase) for _ in range(rand_len))
                tag = f"{prefix}{pid}{rand}"
                if tag not in _USED_TAGS:
                    _USED_TAGS.add(tag)
                    break
        self.tag = tag
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.namespaces: list[Namespace] = []
        self.processes: list[LabProcess] = []
        self._files: list[Path] = []
        self._closers: list[Callable[[], object]] = []
        self._log_handles: list[IO[bytes]] = []
        self._ifcount = 0
        self._closed = False
        self._lock = threading.Lock()
        with _OPEN_LABS_LOCK:
            _OPEN_LABS.add(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- names

    def ifname(self) -> str:
        """A fresh interface name, unique on this machine, at most 15 characters."""
        with self._lock:
            n = self._ifcount
            self._ifcount += 1
        suffix = ""
        while True:
            n, rem = divmod(n, 36)
            suffix = _B36[rem] + suffix
            if n == 0:
                break
        name = self.tag + suffix
        if len(name) > MAX_IFNAME:
            raise NetLabError("this lab ran out of interface names")
        return name

    # ---- building

    def namespace(self, role: str) -> Namespace:
        """Create namespace ``<tag>-<role>`` with ``lo`` up and IPv6 enabled."""
        if not _ROLE_RE.match(role):
            raise ValueError("role must be 1-16 characters of [a-z0-9]")
        self._check_open()
        name = f"{self.tag}-{role}"
        _run(["ip", "netns", "add", name])
        ns = Namespace(self, name, role)
        self.namespaces.append(ns)
        ns.run("ip", "link", "set", "dev", "lo", "up")
        ns.enable_ipv6()
        return ns

    def link(
        self,
        a: Namespace,
        b: Namespace,
        a_addrs: Iterable[str] = (),
        b_addrs: Iterable[str] = (),
        *,
        mtu: int | None = None,
    ) -> Link:
        """Join ``a`` and ``b`` with a veth pair, address both ends and bring them up."""
        self._check_open()
        a_if, b_if = self.ifname(), self.ifname()
        _run([
            "ip", "link", "add", "name", a_if, "netns", a.name, "type", "veth",
            "peer", "name", b_if, "netns", b.name,
        ])  # fmt: skip
        link = Link(a, a_if, b, b_if, tuple(a_addrs), tuple(b_addrs))
        for ns, ifname, addrs in ((a, a_if, link.a_addrs), (b, b_if, link.b_addrs)):
            for addr in addrs:
                ns.add_address(ifname, addr)
            ns.set_up(ifname, mtu)
        a.wait_oper_up(a_if)
        b.wait_oper_up(b_if)
        return link

    def nat_site(
        self,
        role: str,
        upstream: Namespace,
        *,
        wan: tuple[str, str],
        lan: tuple[str, str],
        random_fully: bool = False,
    ) -> NatSite:
        """Build ``host -- router(NAT) -- upstream``.

        ``wan`` is (router address, upstream address) on the uplink, ``lan`` is
        (host address, router address), all with prefix lengths. The host's
        default route goes to the router, the router's to ``upstream``.
        """
        router = self.namespace(f"{role}nat")
        host = self.namespace(role)
        wan_link = self.link(router, upstream, [wan[0]], [wan[1]])
        lan_link = self.link(host, router, [lan[0]], [lan[1]])
        router.enable_forwarding()
        router.masquerade(wan_link.a_if, random_fully=random_fully)
        ver = ipaddress.ip_interface(wan[0]).version
        router.add_route("default" if ver == 4 else "::/0", via=wan_link.b_ip(ver))
        ver = ipaddress.ip_interface(lan[0]).version
        host.add_route("default" if ver == 4 else "::/0", via=lan_link.b_ip(ver))
        return NatSite(host, router, lan_link, wan_link, wan_link.a_ip(ver))

    def on_close(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` (first thing, before processes stop) when the lab closes."""
        self._closers.append(fn)

    def remove_on_close(self, path: Path) -> None:
        """Delete ``path`` (a file or socket) when the lab closes."""
        self._files.append(path)

    def _spawn(
        self,
        ns: Namespace,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        label: str | None,
    ) -> LabProcess:
        self._check_open()
        stem = label or Path(argv[0]).name
        log_path = self.workdir / f"{ns.role}-{stem}-{len(self.processes)}.log"
        log = log_path.open("wb")
        self._log_handles.append(log)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        popen = subprocess.Popen(
            ns.exec_argv(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
        proc = LabProcess(popen, argv, log_path)
        self.processes.append(proc)
        return proc

    def _check_open(self) -> None:
        if self._closed:
            raise NetLabError("this lab is closed")

    # ---- teardown

    def close(self) -> None:
        """Stop our processes, delete our namespaces and files. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for fn in reversed(self._closers):
            with contextlib.suppress(Exception):
                fn()
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        for ns in self.namespaces:
            # Anything else still inside a namespace we made was started from it.
            for pid in ns.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns.name], check=False)
        for path in self._files:
            with contextlib.suppress(OSError):
                path.unlink()
        for handle in self._log_handles:
            with contextlib.suppress(OSError):
                handle.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        with _OPEN_LABS_LOCK:
            _OPEN_LABS.discard(self)

    def namespace_names(self) -> list[str]:
        return [ns.name for ns in self.namespaces]


def existing_namespaces() -> set[str]:
    """Names of every network namespace ``ip netns`` knows on this machine."""
    proc = _run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


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


# --------------------------------------------------------------------------- UDP impairment


@dataclass(frozen=True)
class Impairment:
    """What happens to each datagram in one direction of a :class:`UdpImpairProxy`.

    ``delay`` + uniform(0, ``jitter``) seconds of latency (a jitter larger than
    the gap between datagrams reorders them), ``loss`` and ``duplicate`` are
    probabilities in 0..1 (a duplicate gets its own random delay).
    """

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")


@dataclass
class ProxyStats:
    """Counters of one direction; ``reordered`` counts datagrams sent after a later one."""

    received: int = 0
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


class UdpImpairProxy:
    """A UDP relay inside a namespace that delays, reorders, drops and duplicates.

    It stands in for ``tc netem`` (missing here). Datagrams arriving on
    ``listen`` are sent on to ``upstream`` from a socket of their own, shaped
    by ``forward``; the upstream's answers go back to the last client seen,
    shaped by ``backward``. One daemon thread; :meth:`close` (or the lab's
    close) stops it.
    """

    def __init__(
        self,
        ns: Namespace,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        *,
        forward: Impairment = Impairment(),
        backward: Impairment = Impairment(),
        seed: int | None = None,
    ) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(listen[0]).version == 6 else socket.AF_INET
        self.forward = forward
        self.backward = backward
        self.stats_forward = ProxyStats()
        self.stats_backward = ProxyStats()
        self._rng = random.Random(seed)
        self._client_sock = ns.socket(family, socket.SOCK_DGRAM)
        self._upstream_sock = ns.socket(family, socket.SOCK_DGRAM)
        try:
            self._client_sock.bind(listen)
            self._upstream_sock.bind((listen[0], 0))
            self._upstream_sock.connect(upstream)
        except OSError:
            self._client_sock.close()
            self._upstream_sock.close()
            raise
        self.listen = self._client_sock.getsockname()[:2]
        self._client: tuple[str, int] | None = None
        self._queue: list[tuple[float, int, bool, bytes]] = []  # (due, order, to_upstream, data)
        self._order = 0
        self._last_sent_order = {True: 0, False: 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="udp-impair", daemon=True)
        ns.lab.on_close(self.close)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for sock in (self._client_sock, self._upstream_sock):
            with contextlib.suppress(OSError):
                sock.close()

    def _schedule(self, data: bytes, to_upstream: bool, now: float) -> None:
        imp, stats = (
            (self.forward, self.stats_forward)
            if to_upstream
            else (self.backward, self.stats_backward)
        )
        stats.received += 1
        if imp.loss and self._rng.random() < imp.loss:
            stats.dropped += 1
            return
        copies = 1
        if imp.duplicate and self._rng.random() < imp.duplicate:
            copies = 2
            stats.duplicated += 1
        for _ in range(copies):
            due = now + imp.delay + (self._rng.uniform(0.0, imp.jitter) if imp.jitter else 0.0)
            self._order += 1
            heapq.heappush(self._queue, (due, self._order, to_upstream, data))

    def _flush(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            _, order, to_upstream, data = heapq.heappop(self._queue)
            stats = self.stats_forward if to_upstream else self.stats_backward
            if order < self._last_sent_order[to_upstream]:
                stats.reordered += 1
            self._last_sent_order[to_upstream] = max(order, self._last_sent_order[to_upstream])
            with contextlib.suppress(OSError):
                if to_upstream:
                    self._upstream_sock.send(data)
                    self.stats_forward.sent += 1
                elif self._client is not None:
                    self._client_sock.sendto(data, self._client)
                    self.stats_backward.sent += 1

    def _loop(self) -> None:
        socks = [self._client_sock, self._upstream_sock]
        while not self._stop.is_set():
            now = time.monotonic()
            self._flush(now)
            wait = 0.1
            if self._queue:
                wait = max(0.0, min(wait, self._queue[0][0] - now))
            try:
                ready, _, _ = select.select(socks, [], [], wait)
            except (OSError, ValueError):  # closed under us
                return
            now = time.monotonic()
            for sock in ready:
                try:
                    data, addr = sock.recvfrom(65535)
                except OSError:
                    continue
                if sock is self._client_sock:
                    self._client = (addr[0], addr[1])
                    self._schedule(data, True, now)
                else:
                    self._schedule(data, False, now)


# --------------------------------------------------------------------------- TCP transfers


@dataclass(frozen=True)
class TransferResult:
    """What a :class:`TcpTransfer` sent and received, with SHA-256 of each side's bytes."""

    sent_bytes: int
    received_bytes: int
    sent_sha256: str
    received_sha256: str
    seconds: float

    @property
    def intact(self) -> bool:
        return self.sent_bytes == self.received_bytes and self.sent_sha256 == self.received_sha256


class TcpTransfer:
    """Send ``size`` bytes of seeded pseudo-random data over TCP between two namespaces.

    The receiver listens on ``address``:``port`` in ``receiver``; the sender
    connects from ``sender``. Both hash what they handled, so a caller checks
    integrity with :attr:`TransferResult.intact`. Runs in two background
    threads; every socket has an idle timeout and :meth:`wait` an overall one.
    """

    CHUNK = 64 * 1024

    def __init__(
        self,
        sender: Namespace,
        receiver: Namespace,
        address: str,
        port: int,
        size: int,
        *,
        seed: bytes | None = None,
        idle_timeout: float = 15.0,
    ) -> None:
        self.size = size
        self.address = address
        self.port = port
        self.seed = seed if seed is not None else os.urandom(16)
        self.idle_timeout = idle_timeout
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        self._listener = receiver.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((address, port))
        self._listener.listen(1)
        self._listener.settimeout(idle_timeout)
        self._client = sender.socket(family, socket.SOCK_STREAM)
        self._client.settimeout(idle_timeout)
        self._sent = 0
        self._received = 0
        self._sent_hash = hashlib.sha256()
        self._recv_hash = hashlib.sha256()
        self._errors: list[BaseException] = []
        self._start = 0.0
        self._end = 0.0
        self._threads = [
            threading.Thread(target=self._guard(self._receive), daemon=True),
            threading.Thread(target=self._guard(self._send), daemon=True),
        ]

    @property
    def received(self) -> int:
        """Bytes received so far."""
        return self._received

    def start(self) -> Self:
        self._start = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def wait_received(self, amount: int, timeout: float) -> None:
        """Block until ``amount`` bytes have arrived (or raise after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while self._received < amount:
            if self._errors:
                raise NetLabError(f"transfer failed: {self._errors[0]!r}")
            if time.monotonic() > deadline:
                raise NetLabError(f"only {self._received} of {amount} bytes after {timeout} s")
            time.sleep(0.02)

    def wait(self, timeout: float) -> TransferResult:
        """Wait for both ends to finish; raise :class:`NetLabError` on error or timeout."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.abort()
            raise NetLabError(
                f"transfer of {self.size} bytes timed out after {timeout} s "
                f"({self._sent} sent, {self._received} received)"
            )
        self._close()
        if self._errors:
            raise NetLabError(
                f"transfer failed after {self._sent} sent, {self._received} received: "
                f"{self._errors[0]!r}"
            ) from self._errors[0]
        return TransferResult(
            sent_bytes=self._sent,
            received_bytes=self._received,
            sent_sha256=self._sent_hash.hexdigest(),
            received_sha256=self._recv_hash.hexdigest(),
            seconds=self._end - self._start,
        )

    def abort(self) -> None:
        """Close both sockets, which ends both threads soon."""
        for sock in (self._client, self._listener):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._close()
        for thread in self._threads:
            thread.join(2.0)

    def _close(self) -> None:
        for sock in (self._client, self._listener):
            with contextlib.suppress(OSError):
                sock.close()

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # reported by wait()
                self._errors.append(exc)

        return run

    def _receive(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(self.idle_timeout)
            while True:
                chunk = conn.recv(self.CHUNK)
                if not chunk:
                    break
                self._recv_hash.update(chunk)
                self._received += len(chunk)
        self._end = time.monotonic()

    def _send(self) -> None:
        rng = random.Random(self.seed)
        self._client.connect((self.address, self.port))
        left = self.size
        while left > 0:
            chunk = rng.randbytes(min(self.CHUNK, left))
            self._sent_hash.update(chunk)
            self._client.sendall(chunk)
            self._sent += len(chunk)
            left -= len(chunk)
        self._client.shutdown(socket.SHUT_WR)


def tcp_transfer(
    sender: Namespace,
    receiver: Namespace,
    address: str,
    port: int,
    size: int,
    *,
    timeout: float = 60.0,
) -> TransferResult:
    """Run a :class:`TcpTransfer` to completion (bounded by ``timeout`` seconds)."""
    return TcpTransfer(sender, receiver, address, port, size).start().wait(timeout)


@contextlib.contextmanager
def open_lab(prefix: str = DEFAULT_PREFIX) -> Iterator[NetLab]:
    """``with open_lab() as lab:`` — same as ``with NetLab() as lab:``."""
    lab = NetLab(prefix)
    try:
        yield lab
    finally:
        lab.close()
