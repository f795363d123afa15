"""Listening sockets that fail clearly, and telling a starter which ports we got.

Every Zerogate server accepts port 0 for each of its listeners (the kernel
picks a free port) and, when ``ZG_PORTS_FILE`` names a file, writes the ports
it bound there as one JSON object once every listener is bound (``{"http":
43121, "turn": 51877}``). Whoever started the process (``make dev``, a test,
a bench) waits for that file instead of guessing a free port beforehand, so
two servers can never race for the same port.

:func:`bind_tcp` turns the kernel's refusal into a :class:`ConfigError` that
names the address, the port, the setting that chose it and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import time
from pathlib import Path

from zerogate.common.errors import ConfigError

PORTS_FILE_ENV = "ZG_PORTS_FILE"


def bind_failure(what: str, host: str, port: int, setting: str, exc: OSError) -> ConfigError:
    """The error for a listener that cannot bind, naming the setting and a remedy."""
    if exc.errno == errno.EADDRINUSE:
        hint = f"stop whatever holds it, or set {setting} to another port (0 picks a free one)"
        return ConfigError(
            f"{what}: port {port} on {host} ({setting}) is already in use: {hint}",
            code="port_in_use",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"{what}: {host} ({setting}) is not an address of this host: "
            "use one of its addresses, 127.0.0.1 or 0.0.0.0",
            code="address_not_available",
        )
    if exc.errno == errno.EACCES:
        return ConfigError(
            f"{what}: port {port} ({setting}) needs privileges: "
            "use a port above 1023 or grant CAP_NET_BIND_SERVICE",
            code="permission_denied",
        )
    return ConfigError(f"{what}: cannot listen on {host} port {port} ({setting}): {exc.strerror}")


def bind_tcp(host: str, port: int, *, what: str, setting: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), or a clear ConfigError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise bind_failure(what, host, port, setting, exc) from exc
    sock.set_inheritable(True)
    return sock


def announce_ports(**ports: int) -> None:
    """Write the bound ports to ``$ZG_PORTS_FILE`` (atomically), if it is set."""
    target = os.environ.get(PORTS_FILE_ENV)
    if not target:
        return
    path = Path(target)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(ports))
    tmp.replace(path)


def wait_for_ports(
    path: Path,
    proc: subprocess.Popen[bytes],
    *,
    name: str,
    timeout: float,
    log_file: Path | None = None,
) -> dict[str, int]:
    """Wait until the process started with ``ZG_PORTS_FILE=path`` reports its ports.

    Raises :class:`ConfigError` when it exits first (quoting the end of its
    log, which names the cause) or does not report within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(path.read_text())
                if isinstance(data, dict):
                    return {str(k): int(v) for k, v in data.items()}
        if proc.poll() is not None:
            reason = _own_error(log_file)
            if reason:  # our servers print one line naming the setting at fault
                raise ConfigError(reason)
            code = proc.returncode
            raise ConfigError(f"{name} exited with code {code} during start-up{_tail(log_file)}")
        time.sleep(0.02)
    raise ConfigError(f"{name} did not report its ports within {timeout:.0f}s{_tail(log_file)}")


def _tail(log_file: Path | None, lines: int = 5) -> str:
    if log_file is None:
        return ""
    try:
        text = log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    if not text:
        return ""
    return ":\n  " + "\n  ".join(text[-lines:])


def serve_asgi(
    app: object,
    host: str,
    port: int,
    *,
    what: str,
    setting: str,
    ports_key: str = "http",
    **config: object,
) -> None:
    """Run ``app`` under uvicorn on a socket bound here, after announcing its port.

    Binding before uvicorn starts gives the one clear error of :func:`bind_tcp`
    and makes port 0 usable: the bound port goes to ``$ZG_PORTS_FILE``.
    """
    import uvicorn  # a dependency of the services that serve HTTP, not of this library

    sock = bind_tcp(host, port, what=what, setting=setting)
    announce_ports(**{ports_key: int(sock.getsockname()[1])})
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, **config))  # type: ignore[arg-type]
    server.run(sockets=[sock])


def _own_error(log_file: Path | None) -> str | None:
    """The ``error: ...`` line a Zerogate server printed before exiting, if any."""
    if log_file is None:
        return None
    try:
        lines = log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    for line in reversed(lines[-20:]):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return None
