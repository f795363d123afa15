"""``make dev`` in miniature: the dev stack starts every server, writes
``dev.env``, answers, and stops everything it started on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pydantic import Field

from zerogate.common.bus import Bus, BusError, redact_url
from zerogate.common.errors import ConfigError
from zerogate.common.servers import resolve_data_dir
from zerogate.common.settings import ZGSettings, build_settings, env_name, load_settings


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            out |= {child} | _children(child)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _start_devstack(state: Path, **ports: int) -> subprocess.Popen[str]:
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    for var in ("ZG_DATABASE_URL", "ZG_BIND_IP", "ZG_RELAY_PUBLIC_IP", "ZG_RELAY_ALLOW_PEERS"):
        env.pop(var, None)
    return subprocess.Popen(
        [sys.executable, "-m", "zerogate.common.devstack", "dev", "--state-dir", str(state)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until_ready(proc: subprocess.Popen[str], timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C to stop" in line:
            break
    return lines


def _terminate(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


ALL_PORTS_FREE = {
    "ZG_API_PORT": 0,
    "ZG_NATS_PORT": 0,
    "ZG_RELAY_PORT": 0,
    "ZG_RELAY_HTTP_PORT": 0,
    "ZG_SIGNALING_PORT": 0,
}


@pytest.mark.slow
def test_dev_stack_starts_answers_and_stops(tmp_path: Path) -> None:
    """Every port 0: each service reports what it bound, and dev.env holds the real ones."""
    state = tmp_path / "state"
    proc = _start_devstack(state, **ALL_PORTS_FREE)
    children: set[int] = set()
    try:
        lines = _read_until_ready(proc, 120)
        assert any("press Ctrl-C" in line for line in lines), "".join(lines)
        exported = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (state / "dev.env").read_text().splitlines()
        )
        api = json.loads(exported["ZG_API_URL"])
        assert api.startswith("http://127.0.0.1:")
        assert not api.endswith(":0")
        with urllib.request.urlopen(f"{api}/healthz", timeout=5) as resp:
            assert json.load(resp)["checks"] == {"postgres": True, "nats": True}
        relay_line = next(line for line in lines if line.startswith("relay "))
        metrics = relay_line.split("metrics at ")[1].rstrip(")\n")
        with urllib.request.urlopen(metrics, timeout=5) as resp:
            assert b"allocations" in resp.read()
        # every HTTP listener is on the bind address (127.0.0.1), never the wildcard
        assert "127.0.0.1:" in metrics
        children = _children(proc.pid)
        assert len(children) >= 5  # nats, postgres, api, registry, relay
    finally:
        _terminate(proc)
    shutil.rmtree(resolve_data_dir(state / "postgres"), ignore_errors=True)
    assert proc.returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["ZG_NATS_PORT", "ZG_API_PORT"])
def test_a_port_in_use_names_the_port_and_its_variable(tmp_path: Path, variable: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _start_devstack(tmp_path / "state", **{**ALL_PORTS_FREE, variable: port})
        try:
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                _terminate(proc)
    assert proc.returncode == 1, out
    error = next(line for line in out.splitlines() if line.startswith("error:"))
    assert f"port {port} on 127.0.0.1 ({variable}) is already in use" in error
    assert f"set {variable} to another port" in error
    shutil.rmtree(resolve_data_dir(tmp_path / "state" / "postgres"), ignore_errors=True)


class _Example(ZGSettings):
    api_port: int = 8080


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ZG_API_PORT", "eighty")
    with pytest.raises(ConfigError) as info:
        build_settings(_Example)
    assert "ZG_API_PORT" in info.value.detail
    with pytest.raises(SystemExit) as exit_info:
        load_settings(_Example)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ZG_API_PORT" in err
    monkeypatch.setenv("ZG_API_PORT", "9090")
    assert build_settings(_Example).api_port == 9090


class _Aliased(ZGSettings):
    nats: str = Field(default="nats://127.0.0.1:4222", validation_alias="ZG_NATS_URL")
    hosts: list[str] = Field(default_factory=list)
    port: int = 1


def test_aliased_and_list_settings_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZG_HOSTS", "not json")
    with pytest.raises(ConfigError) as info:
        build_settings(_Aliased)
    assert "ZG_HOSTS" in info.value.detail or "hosts" in info.value.detail
    monkeypatch.delenv("ZG_HOSTS")
    monkeypatch.setenv("ZG_PORT", "x")
    with pytest.raises(ConfigError) as info:
        build_settings(_Aliased)
    assert info.value.detail.startswith("invalid setting ZG_PORT:")
    assert env_name(_Aliased, "nats") == "ZG_NATS_URL"


def test_urls_lose_their_credentials_in_messages() -> None:
    assert redact_url("nats://user:pw@bus.example:4222") == "nats://bus.example:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


async def test_connect_gives_up_after_its_timeout() -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(BusError) as info:
            await Bus.connect(f"nats://u:secret@127.0.0.1:{port}", name="t", timeout=1.0)
    assert "secret" not in str(info.value)
