"""A Docker engine of the test's own, and the images the compose stack needs.

:class:`DockerEngine` runs Debian's ``dockerd`` with its own data root (kept
between runs as the image and build cache), its own exec root, pid file, socket,
daemon configuration and key, and the client its own configuration directory,
so it never reads or touches the machine's Docker (``/run/docker``, which
dockerd makes whatever its exec root, is removed again if it was not there).
It is started and stopped by PID, in one of two ways:

* :meth:`DockerEngine.start_for_builds` — in the host's network namespace, with
  no networking of its own (no bridge, no iptables, no forwarding), so builds
  can reach the package registries with ``--network host``;
* :meth:`DockerEngine.start_in` — inside a lab namespace (``nsenter --net``, so
  the cgroup mounts stay visible), with Docker's full networking: its bridges,
  veths and iptables rules live and die with that namespace.

:func:`prepare_images` makes what ``docker-compose.yml`` names: NATS, Postgres
and the ``FROM`` of ``deploy/Dockerfile`` are pulled, or made offline from
Debian's packages (``deploy/offline/images.sh``) when no registry answers;
then every target of ``deploy/Dockerfile`` is built (``deploy/build-images.sh``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from zerogate.testing.lab import Namespace

REPO = Path(__file__).resolve().parents[2]
#: Cache of the data root and the debootstrapped Debian (ZG_COMPOSE_CACHE overrides).
DEFAULT_CACHE = REPO / ".zerogate" / "compose"
BASE_IMAGE = "debian:bookworm-slim"
NATS_IMAGE = "nats:2.9-alpine"
POSTGRES_IMAGE = "postgres:15"
TARGETS = ("api", "signaling", "relay", "registry", "gateway", "client", "sample-resource")
#: Where dockerd looks for plugin sockets whatever its exec root (it makes it at start).
PLUGIN_DIR = Path("/run/docker")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LOCK_TIMEOUT = 1800.0
#: Building from nothing: debootstrap, three Debian images, every target.
BUILD_TIMEOUT = 1500.0


def docker_cli() -> str | None:
    """The docker client that came with Debian's dockerd (BuildKit without buildx)."""
    debian = Path("/usr/bin/docker")
    if debian.exists():
        return str(debian)
    return shutil.which("docker")


def missing_tools() -> str | None:
    """Why the compose test cannot run here, or None."""
    if os.geteuid() != 0:
        return "the compose test runs its own dockerd: needs root"
    for tool in ("dockerd", "docker-compose", "nsenter", "iptables-save", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install docker.io docker-compose debootstrap)"
    if docker_cli() is None:
        return "the docker client is missing (apt-get install docker.io)"
    return None


@contextlib.contextmanager
def locked(cache: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """One test run at a time per cache (it holds one data root)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{cache} stayed locked by another run") from None
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (by parent PID), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, in the order they were mounted."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(f"{path}/"):
            found.append(point)
    return found


class DockerEngine:
    """``dockerd`` with a data root under ``cache`` and a socket under ``/run/<tag>``."""

    def __init__(self, cache: Path, tag: str) -> None:
        self.cache = cache
        self.data_root = cache / "docker"
        self.run_dir = Path("/run") / tag
        self.socket = self.run_dir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.cli = docker_cli() or "docker"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._made_plugin_dir: bool | None = None
        self.starts = 0

    # ---- lifecycle

    def _start(self, extra: Sequence[str], prefix: Sequence[str] = ()) -> None:
        assert self._proc is None, "already running"
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Never the machine's /etc/docker/daemon.json, nor its /etc/docker/key.json.
        config = self.run_dir / "daemon.json"
        config.write_text(json.dumps({"deprecated-key-path": str(self.cache / "key.json")}) + "\n")
        if self._made_plugin_dir is None:
            self._made_plugin_dir = not PLUGIN_DIR.exists()
        self.starts += 1
        self._log = self.run_dir / f"dockerd-{self.starts}.log"
        argv = [
            *prefix,
            "dockerd",
            "--config-file", str(config),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.run_dir / "exec"),
            "--pidfile", str(self.run_dir / "dockerd.pid"),
            "--host", self.host,
            "--bridge", "none",
            *extra,
        ]  # fmt: skip
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self._proc.returncode}:\n{self.log_tail()}")
            done = self.docker(
                "version", "--format", "{{.Server.Version}}", check=False, timeout=10
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT}s")
            time.sleep(0.5)

    def start_for_builds(self) -> None:
        """In the host's namespace, creating no interface and no iptables rule."""
        self._start(["--iptables=false", "--ip6tables=false", "--ip-forward=false",
                     "--ip-masq=false"])  # fmt: skip

    def start_in(self, ns: Namespace) -> None:
        """Inside ``ns`` with Docker's own networking (bridges, NAT, port mappings)."""
        self._start(
            ["--userland-proxy=false"], prefix=["nsenter", f"--net=/var/run/netns/{ns.name}"]
        )

    def stop(self) -> None:
        """SIGTERM by PID (dockerd stops its containers and containerd), then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        below = _descendants(proc.pid)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for pid in below:  # what it left (containerd and its shims), by PID only
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        # dockerd binds its network namespace under the exec root; a killed one
        # leaves the mount behind. Only mounts under our own directory are touched.
        for mount in reversed(mounts_under(self.run_dir)):
            subprocess.run(["umount", "--lazy", mount], timeout=30, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._made_plugin_dir:
            # dockerd makes its plugin directory whatever its exec root; ours if it was not there
            with contextlib.suppress(OSError):
                (PLUGIN_DIR / "plugins").rmdir()
                PLUGIN_DIR.rmdir()

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self._log.read_text(errors="replace")[-size:] if self._log else ""
        except OSError:
            return ""

    # ---- commands

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ZG_", "DOCKER_", "COMPOSE_"))
        }
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.run_dir / "client")  # not the user's ~/.docker
        env.update(extra or {})
        return env

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.cli, "--host", self.host, *args],
            capture_output=True, text=True, timeout=timeout, check=False,
            env=self.env(),
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.returncode}\n{done.stderr[-3000:]}")
        return done

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def remove_everything_but_images(self) -> None:
        """Containers, networks and volumes a crashed earlier run left in this data root."""
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, timeout=120)
        self.docker("network", "prune", "-f")
        self.docker("volume", "prune", "-f")

    def leftovers(self) -> bool:
        containers = self.data_root / "containers"
        return containers.is_dir() and any(containers.iterdir())

    def script(self, path: str, *args: str, env: Mapping[str, str], timeout: float) -> str:
        """Run one of deploy/'s scripts against this engine; its output on failure."""
        done = subprocess.run(
            [str(REPO / path), *args],
            capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
            env=self.env({"DOCKER": f"{self.cli} --host {self.host}", **env}),
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"{path} {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-5000:]}"
            )
        return done.stdout + done.stderr


def prepare_images(engine: DockerEngine, figures: dict[str, object]) -> None:
    """Pull or make NATS, Postgres and the base image; build every target."""
    cache = {"ZG_IMAGE_CACHE": str(engine.cache / "cache")}
    started = time.monotonic()
    for image, what in ((BASE_IMAGE, "base"), (NATS_IMAGE, "nats"), (POSTGRES_IMAGE, "postgres")):
        if engine.has_image(image):
            continue
        pulled = engine.docker("pull", image, check=False, timeout=300)
        if pulled.returncode == 0:
            continue
        # No registry: Debian's packages, tagged as the names compose and the Dockerfile use.
        engine.script("deploy/offline/images.sh", what, env=cache, timeout=BUILD_TIMEOUT)
    figures["offline_images_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    engine.script(
        "deploy/build-images.sh",
        env={"ZG_BUILD_NETWORK": "host", "BUILDKIT_PROGRESS": "plain"},
        timeout=BUILD_TIMEOUT,
    )
    figures["build_s"] = round(time.monotonic() - started, 1)


def image_sizes(
    engine: DockerEngine, prefix: str = "zerogate", tag: str = "latest"
) -> dict[str, int]:
    sizes = {}
    for target in TARGETS:
        out = engine.docker("image", "inspect", "--format", "{{.Size}}", f"{prefix}/{target}:{tag}")
        sizes[target] = int(out.stdout.strip())
    return sizes


def write_figures(cache: Path, figures: Mapping[str, object]) -> None:
    """Kept beside the cache for the README's figures; nothing asserts on them."""
    with contextlib.suppress(OSError):
        (cache / "figures.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
