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

WireGuard interfaces (:mod:`zerogate.testing.wireguard`), the UDP impairment
proxy (:mod:`zerogate.testing.impair`) and TCP transfers
(:mod:`zerogate.testing.transfer`) build on it; a namespace's pings run
:mod:`zerogate.common.ping` inside it.

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
import contextlib
import ctypes
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self, TypeVar

from zerogate.common.ping import PingReport, ping_loop

IFNAMSIZ = 16  # linux/if.h: interface names are at most IFNAMSIZ - 1 = 15 bytes
MAX_IFNAME = IFNAMSIZ - 1
MAX_TAG = 12  # leaves three characters for the per-lab interface counter
DEFAULT_PREFIX = "zg"
COMMAND_TIMEOUT = 15.0  # seconds; every helper command is bounded by this
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
READY_TIMEOUT = 15.0  # seconds a daemon gets to create its interface/socket

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
        payload = (b"zerogate-netlab-" * (payload_size // 16 + 1))[:payload_size]
        with sock:
            return ping_loop(
                sock,
                dst,
                count=count,
                interval=interval,
                timeout=timeout,
                payload=payload,
                linger=linger,
            )


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
        firewall: bool = True,
    ) -> NatSite:
        """Build ``host -- router(NAT) -- upstream``.

        ``wan`` is (router address, upstream address) on the uplink, ``lan`` is
        (host address, router address), all with prefix lengths. The host's
        default route goes to the router, the router's to ``upstream``.

        With ``firewall`` (the default, as on any home or office router) the
        router drops unsolicited packets from the uplink addressed to itself.
        Without it, such a packet (a peer's early hole-punching probe) leaves a
        conntrack entry that makes the NAT map the host's next flow to that
        peer to another port, which no NAT in the field does on purpose.
        """
        router = self.namespace(f"{role}nat")
        host = self.namespace(role)
        wan_link = self.link(router, upstream, [wan[0]], [wan[1]])
        lan_link = self.link(host, router, [lan[0]], [lan[1]])
        router.enable_forwarding()
        router.masquerade(wan_link.a_if, random_fully=random_fully)
        if firewall:
            router.iptables(
                "-A", "INPUT", "-i", wan_link.a_if, "-m", "conntrack",
                "--ctstate", "NEW,INVALID", "-j", "DROP",
            )  # fmt: skip
        ver = ipaddress.ip_interface(wan[0]).version
        router.add_route("default" if ver == 4 else "::/0", via=wan_link.b_ip(ver))
        ver = ipaddress.ip_interface(lan[0]).version
        host.add_route("default" if ver == 4 else "::/0", via=lan_link.b_ip(ver))
        return NatSite(host, router, lan_link, wan_link, wan_link.a_ip(ver))

    def on_close(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` (first thing, before processes stop) when the lab closes."""
        self._closers.append(fn)

    def remove_on_close(self, path: Path) -> None:
        """Delete ``path`` (a file, socket or directory) when the lab closes."""
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
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
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


@contextlib.contextmanager
def open_lab(prefix: str = DEFAULT_PREFIX) -> Iterator[NetLab]:
    """``with open_lab() as lab:`` — same as ``with NetLab() as lab:``."""
    lab = NetLab(prefix)
    try:
        yield lab
    finally:
        lab.close()
