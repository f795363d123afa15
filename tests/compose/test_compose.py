"""``docker-compose.yml`` brought up for real: images, the whole system, a tunnel, a clean exit.

The tests run in file order on one stack (``conftest.stack``): the images
first, then the system end to end, then stopping and ``down -v``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from zerogate.testing.stack import Admin

from .conftest import PROFILES, Stack, iptables_rules
from .engine import TARGETS

pytestmark = [pytest.mark.slow, pytest.mark.netns]

AGENTS = ("gateway", "resource", "client")
CONTROL_PLANE = ("nats", "postgres", "api", "api-2", "registry", "signaling", "relay-1", "relay-2")
#: Images with an HTTP health endpoint carry a HEALTHCHECK.
WITH_HEALTHCHECK = {"api", "signaling", "relay"}
NON_ROOT = {"api", "signaling", "relay", "registry", "sample-resource"}
#: What a service image never holds: test tooling and installers.
FORBIDDEN_PACKAGES = {"pytest", "zerogate-testing", "hypothesis", "pip", "setuptools", "wheel"}
SAMPLE_URL = "http://{ip}:8000/sample.bin"
#: Seconds Docker waits between SIGTERM and SIGKILL (compose's default stop timeout).
STOP_GRACE_S = 10.0
FETCH_TIMEOUT_S = 120.0
#: Exit codes of a graceful stop: 0, or 143 from a process re-raising SIGTERM once done.
CLEAN_EXITS = (0, 143)

FETCH = """
import hashlib, json, sys, time, urllib.request
digest, first, size = hashlib.sha256(), None, 0
with urllib.request.urlopen(sys.argv[1], timeout=15) as response:
    while chunk := response.read(65536):
        first = first or time.time()
        digest.update(chunk)
        size += len(chunk)
print(json.dumps({"sha256": digest.hexdigest(), "bytes": size, "first_byte_at": first}))
"""


def _timestamp(text: str) -> float:
    """Docker's RFC 3339 time (nanoseconds) as a Unix time."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(
        f"0.{fraction or 0}"
    )


def _image(target: str) -> str:
    return f"zerogate/{target}:latest"


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("target", TARGETS)
def test_an_image_holds_only_what_its_service_runs(stack: Stack, target: str) -> None:
    info = json.loads(stack.engine.docker("image", "inspect", _image(target)).stdout)[0]
    config = info["Config"]
    assert (config.get("Healthcheck") is not None) == (
        target in WITH_HEALTHCHECK or target == "sample-resource"
    )
    user = config.get("User") or "root"
    assert (user != "root") == (target in NON_ROOT), user
    probe = (
        "import importlib.metadata as m, json, shutil; print(json.dumps(["
        "sorted(d.metadata['Name'].lower() for d in m.distributions()),"
        "[t for t in ('gcc', 'cc', 'make', 'curl', 'wget', 'apt-get') if shutil.which(t)],"
        "[f for f in ('/etc/ssl/certs/ca-certificates.crt', '/run/secrets/ca_bundle', '/wheels',"
        " '/src', '/root/.cache/pip') if __import__('os').path.exists(f)]]))"
    )
    done = stack.engine.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", _image(target), "-c", probe
    )
    distributions, tools, build_files = json.loads(done.stdout)
    assert not set(distributions) & FORBIDDEN_PACKAGES, distributions
    assert tools == ["apt-get"], tools  # no compiler, no download tool; apt from Debian's base
    assert build_files == [], build_files  # no CA bundle, wheel, source or cache of the build
    if target in ("gateway", "client"):
        tools = stack.engine.docker(
            "run", "--rm", "--network", "none", "--entrypoint", "sh", _image(target), "-c",
            "command -v ip && command -v iptables && command -v ip6tables",
        )  # fmt: skip
        assert len(tools.stdout.split()) == 3
    if target != "sample-resource":
        version = stack.engine.docker(
            "run", "--rm", "--network", "none", _image(target), "--version"
        )
        assert version.stdout.split()[1][0].isdigit(), version.stdout


def test_an_unchanged_tree_rebuilds_from_the_cache_alone(stack: Stack) -> None:
    """Inside the lab namespace no registry is reachable: any step not cached would fail."""
    out = stack.engine.script(
        "deploy/build-images.sh",
        env={"ZG_BUILD_NETWORK": "host", "BUILDKIT_PROGRESS": "plain"},
        timeout=600,
    )
    steps = {line.split()[0] for line in out.splitlines() if line.startswith("#") and " [" in line}
    ran = {
        line.split()[0]
        for line in out.splitlines()
        if line.startswith("#") and (" RUN " in line or " COPY " in line)
    }
    cached = {line.split()[0] for line in out.splitlines() if line.endswith(" CACHED")}
    assert steps, out[-2000:]
    assert ran <= cached, f"rebuilt: {sorted(ran - cached)}\n{out[-3000:]}"


# --------------------------------------------------------------------------- the system


def _fetch(stack: Stack, url: str, timeout: float = FETCH_TIMEOUT_S) -> dict[str, Any]:
    """The client container downloads ``url`` through the tunnel (retried while it sets up)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = stack.exec("client", "python3", "-c", FETCH, url, timeout=40, check=False)
        if done.returncode == 0:
            return dict(json.loads(done.stdout.strip().splitlines()[-1]))
        last = done.stderr[-500:]
        time.sleep(1.0)
    status = stack.exec("client", "zerogate", "status", "--json", check=False).stdout
    raise AssertionError(f"no download within {timeout:.0f}s: {last}\n{status}\n{stack.logs()}")


def _admin(stack: Stack, service: str, token: str) -> Admin:
    return Admin(f"http://{stack.ip(service, 'backend')}:8080", token, {}, ns=stack.ns)


def _client_ready(stack: Stack, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        done = stack.exec("client", "zerogate", "status", "--json", check=False)
        if done.returncode == 0:
            status = json.loads(done.stdout)
            if status.get("client_id") and status.get("resources"):
                return status
        time.sleep(0.5)
    raise AssertionError(f"client not ready: {status}\n{stack.logs()}")


def test_the_whole_system_carries_a_download_through_the_tunnel(stack: Stack) -> None:
    stack.wait_healthy(CONTROL_PLANE)
    migrate = stack.container("migrate")["State"]
    assert migrate["Status"] == "exited", migrate
    assert migrate["ExitCode"] == 0, migrate

    boot = json.loads(
        stack.exec("api", "zerogate-api", "bootstrap", "--account-slug", "acme",
                   "--email", "admin@example.com").stdout.strip().splitlines()[-1]
    )  # fmt: skip
    assert boot["account_id"]
    assert boot["token"]
    admin = _admin(stack, "api", boot["token"])
    site = admin.site("compose-site")
    gateway_token = admin.gateway_token(site)
    resource = admin.resource(site, "172.29.200.0/24", name="sample")
    laptop = admin.service_account("laptop")
    group = admin.group("engineers")
    admin.members(group, [laptop["id"]])
    admin.policy(group, resource)
    client_token = admin.client_token(laptop)

    tokens = {"ZG_GATEWAY_TOKEN": gateway_token, "ZG_CLIENT_TOKEN": client_token}
    stack.env.update(tokens)
    stack.figures["control_plane_up_s"] = round(time.monotonic() - stack.up_started, 1)
    stack.compose("up", "--detach", "--no-build", "--no-deps", *AGENTS, profiles=PROFILES)
    stack.wait_healthy(AGENTS, timeout=120)
    status = _client_ready(stack)
    assert status["state"] == "connected", status

    url = SAMPLE_URL.format(ip="172.29.200.10")
    got = _fetch(stack, url)
    stack.figures["up_to_first_byte_s"] = round(
        got["first_byte_at"] - (time.time() - (time.monotonic() - stack.up_started)), 1
    )
    want = stack.exec("resource", "sha256sum", "/srv/www/sample.bin").stdout.split()[0]
    assert got["sha256"] == want
    assert got["bytes"] == 4 * 1024 * 1024
    path = json.loads(stack.exec("client", "zerogate", "status", "--json").stdout)["gateways"][0]
    assert path["path"] in ("direct", "relayed"), path
    assert path["rx_bytes"] >= got["bytes"], path

    # One api replica goes away: REST and the bus are answered by the other.
    started = time.monotonic()
    stack.compose("stop", "--timeout", str(int(STOP_GRACE_S)), "api")
    assert time.monotonic() - started < STOP_GRACE_S
    assert stack.container("api")["State"]["ExitCode"] in CLEAN_EXITS
    admin2 = _admin(stack, "api-2", boot["token"])
    assert any(s["id"] == site["id"] for s in admin2.call("GET", "/v1/sites")["data"])
    admin2.resource(site, "172.29.201.0/24", name="after-failover")
    # A restarted client verifies its token and asks for access over the bus again.
    stack.compose("restart", "--timeout", str(int(STOP_GRACE_S)), "client", profiles=PROFILES)
    _client_ready(stack)
    again = _fetch(stack, url)
    assert again["sha256"] == want
    for closer in (admin, admin2):
        closer.close()


def test_every_service_stops_within_its_grace_and_down_leaves_nothing(stack: Stack) -> None:
    by_service = {
        c["Config"]["Labels"]["com.docker.compose.service"]: c for c in stack.containers()
    }
    assert {*AGENTS, *CONTROL_PLANE} <= set(by_service), sorted(by_service)
    took: dict[str, float] = {}

    def stop(service: str) -> None:
        """SIGTERM; how long the process took is when it finished (Docker then unmaps ports)."""
        container = by_service[service]["Id"]
        if not json.loads(stack.engine.docker("inspect", container).stdout)[0]["State"]["Running"]:
            return  # stopped earlier by a test (the first api replica)
        sent = time.time()
        stack.engine.docker("stop", "--time", str(int(STOP_GRACE_S)), container, timeout=120)
        state = json.loads(stack.engine.docker("inspect", container).stdout)[0]["State"]
        took[service] = round(_timestamp(state["FinishedAt"]) - sent, 1)

    # dependents first, as compose stops them; each layer's services at once
    for layer in (AGENTS, ("signaling", "relay-1", "relay-2", "registry", "api", "api-2"),
                  ("nats", "postgres")):  # fmt: skip
        with ThreadPoolExecutor(len(layer)) as pool:
            list(pool.map(stop, layer))
    stack.figures["stop_s"] = took
    slow = {service: s for service, s in took.items() if s >= STOP_GRACE_S}
    assert not slow, f"SIGKILLed after {STOP_GRACE_S}s: {slow}"
    exits = {
        c["Config"]["Labels"]["com.docker.compose.service"]: c["State"]["ExitCode"]
        for c in stack.containers()
    }
    assert {s: code for s, code in exits.items() if code not in CLEAN_EXITS} == {}, exits

    # Our services log JSON by default in a container (stderr is no terminal there).
    for service in ("migrate", "api", "api-2", "registry", "signaling", "relay-1", "gateway",
                    "client"):  # fmt: skip
        logs = stack.engine.docker("logs", by_service[service]["Id"])
        lines = (logs.stdout + logs.stderr).splitlines()
        assert lines, service
        for line in lines:
            assert isinstance(json.loads(line), dict), (service, line)

    stack.compose("down", "--volumes", "--remove-orphans", profiles=PROFILES)
    stack.down_done = True
    label = f"label=com.docker.compose.project={stack.project}"
    assert stack.engine.docker("ps", "-aq", "--filter", label).stdout.split() == []
    assert stack.engine.docker("network", "ls", "-q", "--filter", label).stdout.split() == []
    assert stack.engine.docker("volume", "ls", "-q", "--filter", label).stdout.split() == []
    links = stack.ns.run("ip", "-o", "link", "show").stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"], links
    rules = iptables_rules(stack.ns)
    left = sorted(set(rules) - set(stack.baseline_rules))
    gone = sorted(set(stack.baseline_rules) - set(rules))
    assert (left, gone) == ([], []), f"left behind: {left}\nremoved: {gone}"
    assert rules == stack.baseline_rules
    assert iptables_rules() == stack.host_rules
