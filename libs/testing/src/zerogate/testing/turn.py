"""TURN servers and tools as processes, and a small TURN test client.

They start real programs and clean up by PID: our relay as a subprocess
(:class:`RelayProcess`, which binds port 0 and reports the ports it got
through ``ZG_PORTS_FILE``), coturn's ``turnserver`` (:class:`Coturn`, which
cannot bind port 0, so a start that collides is retried on another port),
coturn's echo peer ``turnutils_peer`` (:class:`TurnPeer`, the same), and run
coturn's load generator ``turnutils_uclient`` (:func:`run_uclient`), whose
output :func:`parse_uclient` reads.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from zerogate.common.errors import ConfigError
from zerogate.common.listen import PORTS_FILE_ENV, wait_for_ports
from zerogate.proto import stun
from zerogate.proto.turn import long_term_key

__all__ = [
    "Coturn",
    "RelayProcess",
    "TurnPeer",
    "UclientReport",
    "cpu_seconds",
    "parse_uclient",
    "run_uclient",
]

_PROGRESS = re.compile(
    r"^(\d+): : start_mclient: msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+), "
    r"tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)"
)
_TOTAL_MSGS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$")
_TOTAL_BYTES = re.compile(r"start_mclient: tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)\s*$")
#: e.g. "channel bind: error 400 (Bad Request)", "error 508 (Insufficient Capacity)"
_ERROR_RESPONSE = re.compile(r"\berror \d{3}\b")
_LOST = re.compile(
    r"Total lost packets (\d+) \(([\d.]+)%\), total send dropped (\d+) \(([\d.]+)%\)"
)


def _unused_udp_port(host: str) -> int:
    """A UDP port free right now, for programs that cannot bind port 0 (retried on collision)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: Starts of a program that cannot bind port 0, each on another port, before giving up.
START_ATTEMPTS = 5


def _ephemeral_low(default: int = 32768) -> int:
    """The first port of ``net.ipv4.ip_local_port_range`` (Linux's default where unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port_range(count: int, host: str = "127.0.0.1", low: int = 20000) -> tuple[int, int]:
    """A run of ``count`` UDP ports that are free right now, starting at a random offset.

    Wholly below Linux's ephemeral range (``net.ipv4.ip_local_port_range``), so
    sockets that bind port 0 (test peers and clients) never get a port of it: a
    relay refuses its own ports as peers, and skips a port something took meanwhile.
    """
    span = max(_ephemeral_low() - count - low, 1)
    start = low + (os.getpid() * 7919 + time.monotonic_ns()) % span
    while True:
        ports = range(start, start + count)
        socks: list[socket.socket] = []
        try:
            for port in ports:
                s = socket.socket(
                    socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
                )
                socks.append(s)
                s.bind((host, port))
        except OSError:
            start = low + (start + count - low) % span
            continue
        finally:
            for s in socks:
                s.close()
        return start, start + count - 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class UclientReport:
    """What ``turnutils_uclient`` reported; rates over its steady phase when timed."""

    returncode: int | None = None
    send_msgs: int = 0
    recv_msgs: int = 0
    send_bytes: int = 0
    recv_bytes: int = 0
    lost: int | None = None
    lost_percent: float | None = None
    send_dropped: int | None = None
    errors: list[str] = field(default_factory=list)
    #: (arrival time, send msgs, recv msgs, send bytes, recv bytes) per progress line
    progress: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.errors and self.lost is not None

    def steady_rate(self) -> tuple[float, float, float, float] | None:
        """``(t0, t1, packets/s, bits/s)`` relayed (both directions) while sending."""
        moving = [p for p in self.progress if p[1] > 0]
        if len(moving) < 2:
            return None
        first, last = moving[0], moving[-1]
        dt = last[0] - first[0]
        if dt <= 0:
            return None
        packets = (last[1] + last[2]) - (first[1] + first[2])
        nbytes = (last[3] + last[4]) - (first[3] + first[4])
        return first[0], last[0], packets / dt, nbytes * 8 / dt


def parse_uclient(output: str) -> UclientReport:
    """Read the counters and errors out of ``turnutils_uclient`` output."""
    report = UclientReport(output=output)
    for line in output.splitlines():
        if "ERROR" in line or _ERROR_RESPONSE.search(line):
            report.errors.append(line.strip())
        if m := _TOTAL_MSGS.search(line):
            report.send_msgs, report.recv_msgs = int(m.group(1)), int(m.group(2))
        elif m := _TOTAL_BYTES.search(line):
            report.send_bytes, report.recv_bytes = int(m.group(1)), int(m.group(2))
        elif m := _LOST.search(line):
            report.lost = int(m.group(1))
            report.lost_percent = float(m.group(2))
            report.send_dropped = int(m.group(3))
    return report


def run_uclient(
    args: Sequence[str],
    *,
    timeout: float,
    on_progress: Callable[[float], None] | None = None,
) -> UclientReport:
    """Run ``turnutils_uclient`` with ``args``; kill it (by PID) after ``timeout`` seconds.

    ``on_progress`` is called with the arrival time of each progress line, e.g.
    to sample a server's CPU time alongside.
    """
    exe = shutil.which("turnutils_uclient")
    if exe is None:
        raise FileNotFoundError("turnutils_uclient (Debian package coturn) is not installed")
    proc = subprocess.Popen(
        [exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: list[str] = []
    progress: list[tuple[float, int, int, int, int]] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    assert proc.stdout is not None
    try:
        os.set_blocking(proc.stdout.fileno(), True)
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not sel.select(min(left, 0.5)):
                    if proc.poll() is not None:
                        break
                    continue
                line = proc.stdout.readline()
                if not line:
                    break
                now = time.monotonic()
                lines.append(line)
                if m := _PROGRESS.match(line):
                    progress.append((now, *(int(m.group(i)) for i in range(2, 6))))  # type: ignore[arg-type]
                    if on_progress is not None:
                        on_progress(now)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()
    report = parse_uclient("".join(lines))
    report.returncode = None if timed_out else proc.returncode
    if timed_out:
        report.errors.append(f"timed out after {timeout}s")
    report.progress = progress
    return report


class _Process(abc.ABC):
    """A child process stopped by its PID on exit (SIGTERM, then SIGKILL)."""

    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @abc.abstractmethod
    def start(self) -> None:
        """Spawn the process (each kind knows its command line)."""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix="zg-relay-test-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


def _wait_udp_stun(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until a STUN Binding request to ``host:port`` is answered."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # RFC 8489 section 5: type 0x0001 (Binding request), length 0, magic cookie, id.
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} during start-up")
            with contextlib.suppress(OSError):
                s.sendto(request, (host, port))
                data = s.recv(2048)
                if data[:2] == b"\x01\x01":
                    return
            time.sleep(0.05)
    raise RuntimeError(f"no STUN answer from {host}:{port} within {timeout}s")


class TurnPeer(_Process):
    """coturn's UDP echo peer ``turnutils_peer`` on ``host:port`` (a free port when not given)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self._fixed = port is not None
        self.port = port or 0

    def start(self) -> None:
        exe = shutil.which("turnutils_peer")
        if exe is None:
            raise FileNotFoundError("turnutils_peer (Debian package coturn) is not installed")
        for _ in range(1 if self._fixed else START_ATTEMPTS):
            if not self._fixed:
                self.port = _unused_udp_port(self.host)
            self._spawn([exe, "-L", self.host, "-p", str(self.port)])
            if self._echoes(10.0):
                return
            self.stop()  # the port was taken meanwhile, or it died: try another
        raise RuntimeError(f"turnutils_peer did not start:\n{self.log_text()[-2000:]}")

    def _echoes(self, timeout: float) -> bool:
        """Wait until it echoes a datagram (False when it exits or stays silent)."""
        assert self.proc is not None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        deadline = time.monotonic() + timeout
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    s.sendto(b"ping", (self.host, self.port))
                    if s.recv(64) == b"ping":
                        return True
        return False


class RelayProcess(_Process):
    """``zerogate-relay`` as a child process on loopback (standalone unless ``nats_url``).

    It binds port 0 for STUN/TURN and HTTP and reports what it got through
    ``ZG_PORTS_FILE``; :attr:`port` and :attr:`http_port` are known after
    :meth:`start`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        secret: str,
        realm: str = "zerogate.test",
        allow_peers: Sequence[str] = ("127.0.0.0/8", "::1/128"),
        extra_args: Sequence[str] = (),
        nats_url: str | None = None,
        relay_ports: int = 200,
        python_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.secret = secret
        self.realm = realm
        self.port = 0
        self.http_port = 0
        self.relay_ports = free_port_range(relay_ports, host)
        self.allow_peers = list(allow_peers)
        self.extra_args = list(extra_args)
        self.nats_url = nats_url
        self.python_args = list(python_args)

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            *self.python_args,
            "-m",
            "zerogate.relay.main",
            "--listen-ip",
            self.host,
            "--port",
            str(self.port),
            "--relay-ports",
            f"{self.relay_ports[0]}-{self.relay_ports[1]}",
            "--realm",
            self.realm,
            "--http-ip",
            "127.0.0.1",
            "--http-port",
            str(self.http_port),
        ]
        for net in self.allow_peers:
            argv += ["--allow-peer", net]
        return argv + self.extra_args

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZG_")}
        env["ZG_RELAY_AUTH_SECRET"] = self.secret
        env["ZG_LOG_LEVEL"] = env.get("ZG_TEST_RELAY_LOG_LEVEL", "INFO")
        if self.nats_url:
            env["ZG_NATS_URL"] = self.nats_url
        ports_dir = Path(tempfile.mkdtemp(prefix="zg-relay-ports-"))
        env[PORTS_FILE_ENV] = str(ports_dir / "ports.json")
        try:
            self._spawn(self.argv(), env)
            assert self.proc is not None
            ports = wait_for_ports(
                ports_dir / "ports.json", self.proc, name="zerogate-relay", timeout=20.0
            )
        except ConfigError as exc:
            log = self.log_text()
            self.stop()
            raise RuntimeError(f"{exc.detail}\n{log}") from None
        finally:
            shutil.rmtree(ports_dir, ignore_errors=True)
        self.port, self.http_port = ports["turn"], ports["http"]


class Coturn(_Process):
    """coturn's ``turnserver`` on loopback with TURN REST auth and a throwaway config.

    coturn cannot bind port 0: a free UDP port is picked and, should another
    process take it first, the start is retried on another one.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        secret: str,
        realm: str = "zerogate.test",
        relay_ports: int = 200,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.secret = secret
        self.realm = realm
        self.port = 0
        self.relay_ports = free_port_range(relay_ports, host)
        self.extra_args = list(extra_args)

    def start(self) -> None:
        exe = shutil.which("turnserver")
        if exe is None:
            raise FileNotFoundError("turnserver (Debian package coturn) is not installed")
        for _ in range(START_ATTEMPTS):
            self.port = _unused_udp_port(self.host)
            self._spawn(
                [
                    exe,
                    "-n",  # no configuration file
                    "--use-auth-secret",
                    f"--static-auth-secret={self.secret}",
                    f"--realm={self.realm}",
                    f"--listening-ip={self.host}",
                    f"--relay-ip={self.host}",
                    f"--listening-port={self.port}",
                    f"--min-port={self.relay_ports[0]}",
                    f"--max-port={self.relay_ports[1]}",
                    "--allow-loopback-peers",
                    f"--allowed-peer-ip={self.host}",
                    "--no-cli",
                    "--no-tls",
                    "--no-dtls",
                    "--no-tcp",  # UDP only: a TCP listener would need the port free for TCP too
                    "--no-tcp-relay",
                    "--log-file=stdout",
                    "--simple-log",
                    *self.extra_args,
                ]
            )
            assert self.proc is not None
            try:
                _wait_udp_stun(self.host, self.port, self.proc, 20.0)
            except RuntimeError:
                log = self.log_text()
                self.stop()
                if "Address already in use" not in log:
                    raise RuntimeError(f"turnserver did not start:\n{log[-3000:]}") from None
                continue
            # Whoever took the port may answer STUN too: coturn's log tells.
            if "Cannot bind local socket" not in self.log_text():
                return
            self.stop()
        raise RuntimeError(f"turnserver found no free port in {START_ATTEMPTS} attempts")


class TurnTestError(Exception):
    """A TURN request got an error response (``code``) or no answer."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"TURN error {code} {reason}".strip())
        self.code = code


class TurnTestClient:
    """A small asyncio TURN client over a real UDP socket, for the relay's own tests.

    Long-term credentials with the 401/438 nonce dance (RFC 8489 section 9.2),
    Allocate, Refresh, CreatePermission, ChannelBind, Send indications and
    ChannelData. Datagrams that are not the awaited response land in
    :attr:`inbox` for :meth:`receive`.
    """

    def __init__(self, server: tuple[str, int], username: str, password: str) -> None:
        self.server = server
        self.username = username
        self.password = password
        self.realm: str | None = None
        self.nonce: str | None = None
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._waiters: dict[bytes, asyncio.Future[bytes]] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) >= 20 and data[0] < 0x40:
                fut = self._waiters.pop(data[8:20], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                    continue
            self.inbox.put_nowait(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    async def receive(self, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    def _key(self) -> bytes:
        assert self.realm is not None
        return long_term_key(self.username, self.realm, self.password)

    async def transact(
        self, method: int, attributes: dict[int, object], *, timeout: float = 2.0
    ) -> stun.Message:
        """Send a request (authenticating when asked to); returns the success Message."""
        for _ in range(3):
            attrs = dict(attributes)
            key = None
            if self.nonce is not None and self.realm is not None:
                attrs[stun.Attr.USERNAME] = self.username
                attrs[stun.Attr.REALM] = self.realm
                attrs[stun.Attr.NONCE] = self.nonce
                key = self._key()
            tid = os.urandom(12)
            msg = stun.Message(method, stun.MessageClass.REQUEST, tid, attrs)  # type: ignore[arg-type]
            fut: asyncio.Future[bytes] = self._loop.create_future()
            self._waiters[tid] = fut
            self.sock.sendto(stun.encode(msg, key=key, fingerprint=True), self.server)
            try:
                raw = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                self._waiters.pop(tid, None)
                raise TurnTestError(0, "no response") from None
            reply = stun.decode(raw)
            if reply.message_class == stun.MessageClass.SUCCESS:
                return reply
            err = reply.error_code()
            code = err.code if err else 0
            if code in (401, 438) and (code == 438 or key is None):
                self.realm = reply.get_str(stun.Attr.REALM) or self.realm
                self.nonce = reply.get_str(stun.Attr.NONCE) or self.nonce
                continue
            raise TurnTestError(code, err.reason if err else "")
        raise TurnTestError(401, "authentication did not succeed")

    async def allocate(self, lifetime: int | None = None, family: int = 4) -> tuple[str, int]:
        attrs: dict[int, object] = {stun.Attr.REQUESTED_TRANSPORT: 17}
        if lifetime is not None:
            attrs[stun.Attr.LIFETIME] = lifetime
        if family == 6:
            attrs[stun.Attr.REQUESTED_ADDRESS_FAMILY] = 2
        reply = await self.transact(stun.Method.ALLOCATE, attrs)
        relayed = reply.get_address(stun.Attr.XOR_RELAYED_ADDRESS)
        if relayed is None:
            raise TurnTestError(0, "no XOR-RELAYED-ADDRESS")
        return relayed

    async def refresh(self, lifetime: int) -> int | None:
        reply = await self.transact(stun.Method.REFRESH, {stun.Attr.LIFETIME: lifetime})
        granted: int | None = reply.get_int(stun.Attr.LIFETIME)
        return granted

    async def create_permission(self, peer: tuple[str, int]) -> None:
        await self.transact(stun.Method.CREATE_PERMISSION, {stun.Attr.XOR_PEER_ADDRESS: peer})

    async def channel_bind(self, channel: int, peer: tuple[str, int]) -> None:
        await self.transact(
            stun.Method.CHANNEL_BIND,
            {stun.Attr.CHANNEL_NUMBER: channel, stun.Attr.XOR_PEER_ADDRESS: peer},
        )

    def send_indication(self, peer: tuple[str, int], data: bytes) -> None:
        msg = stun.Message(
            stun.Method.SEND,
            stun.MessageClass.INDICATION,
            os.urandom(12),
            {stun.Attr.XOR_PEER_ADDRESS: peer, stun.Attr.DATA: data},
        )
        self.sock.sendto(stun.encode(msg), self.server)

    def send_channel_data(self, channel: int, data: bytes) -> None:
        self.sock.sendto(
            channel.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data, self.server
        )


async def eventually(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return predicate()
        await asyncio.sleep(step)
