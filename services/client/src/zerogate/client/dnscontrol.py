"""Point the host's resolver at the stub, and put it back (Firezone's DNS control).

``ZG_DNS_CONTROL`` chooses how:

``auto`` (the default)
    ``systemd-resolved`` when it runs and manages ``/etc/resolv.conf``, else
    ``etc-resolv-conf``; but ``disabled`` when the client runs in a network
    namespace of its own while ``/etc/resolv.conf`` is the very file of the
    host's namespace (``ip netns exec`` without ``/etc/netns/<ns>/resolv.conf``):
    pointing the host's processes at a stub they cannot reach would cut their
    DNS off.
``systemd-resolved``
    The TUN gets the stub's addresses as its DNS servers and the routing
    domain ``~.`` (every name), as ``resolvectl dns``/``domain`` set them;
    resolved forgets both when the link goes, so nothing outlives a crash.
``etc-resolv-conf``
    ``/etc/resolv.conf`` is rewritten to name the stub (search domains and
    options kept), *in place*: in a container or in a network namespace with
    ``/etc/netns/<ns>/resolv.conf`` the file is a bind mount, which
    ``rename()`` cannot replace (EBUSY); a symlink is followed to the file it
    points at. The original text is kept (:meth:`ResolvConf.saved`, for the
    crash-recovery file) and written back when the client stops, or at the
    next start after a crash, unless someone else changed the file meanwhile.
``disabled``
    Nothing is changed; the stub still answers on its addresses.

:func:`host_upstreams` reads the resolvers the host used before: the
``nameserver`` lines of ``/etc/resolv.conf`` (or of resolved's own list when
resolved manages the file), without the stub's own addresses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from zerogate.common.errors import ConfigError

log = logging.getLogger(__name__)

DnsControlMode = Literal["auto", "systemd-resolved", "etc-resolv-conf", "disabled"]
RESOLV_CONF: Final = Path("/etc/resolv.conf")
#: Where systemd-resolved lists its upstream servers (not its 127.0.0.53 stub).
RESOLVED_UPSTREAMS: Final = Path("/run/systemd/resolve/resolv.conf")
RESOLVED_RUNNING: Final = Path("/run/systemd/resolve/io.systemd.Resolve")
RESOLVED_STUB: Final = "127.0.0.53"
MARKER: Final = "# Written by Zerogate (zerogate up); the original comes back when it stops."
COMMAND_TIMEOUT: Final = 10.0


def parse_resolv_conf(text: str) -> dict[str, list[str]]:
    """``nameserver``, ``search``/``domain`` and ``options`` of a resolv.conf (resolv.conf(5))."""
    out: dict[str, list[str]] = {"nameserver": [], "search": [], "options": []}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            out["nameserver"].append(values[0])
        elif key in ("search", "domain"):
            out["search"] = list(values)  # the last of them wins
        elif key == "options":
            out["options"].extend(values)
    return out


def resolved_manages(resolv_conf: Path = RESOLV_CONF) -> bool:
    """systemd-resolved runs and ``resolv.conf`` is its (a link into its directory, or its stub)."""
    if not RESOLVED_RUNNING.exists() or shutil.which("resolvectl") is None:
        return False
    try:
        if resolv_conf.is_symlink() and "/run/systemd/resolve/" in str(resolv_conf.resolve()):
            return True
        return RESOLVED_STUB in parse_resolv_conf(resolv_conf.read_text())["nameserver"]
    except OSError:
        return False


def host_upstreams(stub: Sequence[str], resolv_conf: Path = RESOLV_CONF) -> list[str]:
    """The host's resolvers, as found now (our own stub addresses left out)."""
    source = resolv_conf
    if resolved_manages(resolv_conf) and RESOLVED_UPSTREAMS.exists():
        source = RESOLVED_UPSTREAMS
    try:
        servers = parse_resolv_conf(source.read_text())["nameserver"]
    except OSError:
        return []
    skip = {*stub, RESOLVED_STUB} if source != resolv_conf else set(stub)
    return [s for s in servers if s.split("%", 1)[0] not in skip]


NETNS_DIRS: Final = (Path("/run/netns"), Path("/var/run/netns"))  # ip-netns(8)
NETNS_ETC: Final = Path("/etc/netns")


def _named_namespace() -> str | None:
    """The ``ip netns`` name of our network namespace, if it has one."""
    try:
        mine = os.stat("/proc/self/ns/net")
    except OSError:
        return None
    for directory in NETNS_DIRS:
        try:
            entries = list(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                found = entry.stat()
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino):
                return entry.name
    return None


def shared_with_another_namespace(resolv_conf: Path = RESOLV_CONF) -> bool:
    """``resolv_conf`` is also the file of processes in another network namespace.

    In a named namespace (``ip netns exec``) the file is its own only when
    ``/etc/netns/<name>/resolv.conf`` exists (ip-netns(8) bind-mounts it);
    elsewhere, when PID 1 is readable, it is shared if PID 1 lives in another
    network namespace and sees the very same file.
    """
    name = _named_namespace()
    if name is not None:
        return not (NETNS_ETC / name / "resolv.conf").exists()
    try:
        if os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino:
            return False
        mine = os.stat(resolv_conf)
        theirs = os.stat(f"/proc/1/root{os.path.realpath(resolv_conf)}")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def choose(mode: DnsControlMode, resolv_conf: Path = RESOLV_CONF) -> str:
    if mode != "auto":
        return mode
    if shared_with_another_namespace(resolv_conf):
        log.warning(
            "resolv.conf belongs to another network namespace: DNS control is off "
            "(give this namespace its own, /etc/netns/<ns>/resolv.conf)"
        )
        return "disabled"
    return "systemd-resolved" if resolved_manages(resolv_conf) else "etc-resolv-conf"


# --------------------------------------------------------------------------- /etc/resolv.conf


def _write_in_place(path: Path, text: str) -> None:
    """Overwrite ``path`` without replacing it (a bind mount cannot be renamed over)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


class ResolvConf:
    """The in-place rewrite of ``/etc/resolv.conf`` (following a symlink)."""

    mode = "etc-resolv-conf"

    def __init__(self, path: Path = RESOLV_CONF) -> None:
        self.link = path
        self.path = Path(os.path.realpath(path))
        self.original: str | None = None
        self.written: str | None = None

    def apply(self, servers: Sequence[str], search: Sequence[str] = ()) -> None:
        try:
            original = self.path.read_text()
        except OSError as exc:
            raise ConfigError(
                f"invalid setting ZG_DNS_CONTROL: cannot read {self.path}: {exc.strerror}"
            ) from exc
        if MARKER in original and self.original is None:
            log.warning(
                "resolv.conf already names a Zerogate stub (another client, or a crash with "
                "its state lost)", extra={"path": str(self.path)},
            )  # fmt: skip
        parsed = parse_resolv_conf(original)
        domains = list(dict.fromkeys([*search, *parsed["search"]]))
        lines = [MARKER, *(f"nameserver {s}" for s in servers)]
        if domains:
            lines.append("search " + " ".join(domains))
        options = [o for o in parsed["options"] if not o.startswith("rotate")]
        if options:
            lines.append("options " + " ".join(options))
        text = "\n".join(lines) + "\n"
        if self.original is None:
            self.original = original
        try:
            _write_in_place(self.path, text)
        except OSError as exc:
            raise ConfigError(
                f"invalid setting ZG_DNS_CONTROL: cannot write {self.path}: {exc.strerror}"
            ) from exc
        self.written = text
        log.info("resolv.conf points at the stub resolver", extra={"path": str(self.path)})

    def saved(self) -> dict[str, Any]:
        return {"mode": self.mode, "path": str(self.path), "original": self.original,
                "written": self.written}  # fmt: skip

    def restore(self) -> bool:
        if self.original is None:
            return False
        done = restore_file(self.path, self.original, self.written)
        self.original = self.written = None
        return done


def restore_file(path: Path, original: str, written: str | None) -> bool:
    """Put ``original`` back unless the file no longer holds what we wrote."""
    try:
        current = path.read_text()
    except OSError:
        return False
    if written is not None and current != written:
        log.warning("resolv.conf changed since we wrote it; leaving it", extra={"path": str(path)})
        return False
    try:
        _write_in_place(path, original)
    except OSError as exc:
        log.warning("cannot restore resolv.conf: %s", exc.strerror)
        return False
    log.info("resolv.conf restored", extra={"path": str(path)})
    return True


# --------------------------------------------------------------------------- systemd-resolved


class Resolved:
    """Per-link DNS on the TUN through ``resolvectl``."""

    mode = "systemd-resolved"

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.applied = False

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            ["resolvectl", *argv], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ConfigError(
                f"invalid setting ZG_DNS_CONTROL: resolvectl {' '.join(argv)}: "
                f"{done.stderr.strip()[:200]}"
            )

    def apply(self, servers: Sequence[str], search: Sequence[str] = ()) -> None:
        self._run("dns", self.interface, *servers)
        self._run("domain", self.interface, "~.", *search)
        with contextlib.suppress(ConfigError):
            self._run("default-route", self.interface, "yes")
        self.applied = True
        log.info("systemd-resolved sends every name to the stub", extra={"link": self.interface})

    def saved(self) -> dict[str, Any]:
        return {"mode": self.mode, "interface": self.interface}

    def restore(self) -> bool:
        if not self.applied:
            return False
        self.applied = False
        with contextlib.suppress(ConfigError, OSError, subprocess.SubprocessError):
            self._run("revert", self.interface)
        return True


class Disabled:
    mode = "disabled"

    def apply(self, servers: Sequence[str], search: Sequence[str] = ()) -> None:
        del servers, search

    def saved(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def restore(self) -> bool:
        return False


DnsControl = ResolvConf | Resolved | Disabled


def control_for(
    mode: DnsControlMode, interface: str, resolv_conf: Path = RESOLV_CONF
) -> DnsControl:
    chosen = choose(mode, resolv_conf)
    if chosen == "systemd-resolved":
        return Resolved(interface)
    if chosen == "etc-resolv-conf":
        return ResolvConf(resolv_conf)
    return Disabled()


def restore_saved(saved: Mapping[str, Any]) -> bool:
    """Undo what a crashed run recorded (see :meth:`ResolvConf.saved`)."""
    if saved.get("mode") == "etc-resolv-conf":
        original, path = saved.get("original"), saved.get("path")
        if isinstance(original, str) and isinstance(path, str):
            written = saved.get("written")
            return restore_file(Path(path), original, written if isinstance(written, str) else None)
    # systemd-resolved forgot the link's settings when the crashed run's TUN went.
    return False
