"""DNS control: the in-place resolv.conf rewrite, its restore, and the crash record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zerogate.client import dnscontrol
from zerogate.client.hoststate import HostState
from zerogate.common.errors import ConfigError

STUB = ["100.100.111.1", "fd00:2021:1111:8000:100:100:111:0"]
ORIGINAL = (
    "# the host's\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"
    "search corp.example\noptions edns0 rotate\n"
)


def test_the_file_is_rewritten_in_place_and_put_back(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(ORIGINAL)
    inode = path.stat().st_ino
    control = dnscontrol.ResolvConf(path)
    control.apply(STUB, ["lab.example"])
    text = path.read_text()
    assert path.stat().st_ino == inode  # the same file: a bind mount stays valid
    parsed = dnscontrol.parse_resolv_conf(text)
    assert parsed["nameserver"] == STUB
    assert parsed["search"] == ["lab.example", "corp.example"]
    assert parsed["options"] == ["edns0"]  # rotate would skip the stub now and then
    assert control.restore()
    assert path.read_text() == ORIGINAL
    assert path.stat().st_ino == inode


def test_a_symlink_is_followed_to_the_file_it_names(tmp_path: Path) -> None:
    target = tmp_path / "real-resolv.conf"
    target.write_text(ORIGINAL)
    link = tmp_path / "resolv.conf"
    link.symlink_to(target)
    control = dnscontrol.ResolvConf(link)
    control.apply(STUB)
    assert link.is_symlink()
    assert "nameserver 100.100.111.1" in target.read_text()
    control.restore()
    assert target.read_text() == ORIGINAL


def test_a_file_someone_else_changed_meanwhile_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(ORIGINAL)
    control = dnscontrol.ResolvConf(path)
    control.apply(STUB)
    path.write_text("nameserver 198.51.100.1\n")  # DHCP renewed meanwhile
    assert not control.restore()
    assert path.read_text() == "nameserver 198.51.100.1\n"


def test_the_hosts_resolvers_are_those_before_the_stub(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(ORIGINAL + "nameserver 100.100.111.1\n")
    assert dnscontrol.host_upstreams(STUB, path) == ["192.0.2.53", "2001:db8::53"]
    assert dnscontrol.choose("auto", path) == "etc-resolv-conf"  # no systemd-resolved here
    assert dnscontrol.choose("disabled", path) == "disabled"
    assert isinstance(dnscontrol.control_for("disabled", "zg0", path), dnscontrol.Disabled)


def test_a_crashed_runs_resolv_conf_comes_back_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(ORIGINAL)
    control = dnscontrol.ResolvConf(path)
    control.apply(STUB)
    state = HostState(tmp_path / "state", "zg0")
    state.record(dns=control.saved())
    # the process dies here: a new one reads the record
    state.data["pid"] = 2**22 + 1  # no such process
    state.path.write_text(json.dumps(state.data))
    assert HostState(tmp_path / "state", "zg0").recover() == ["resolv.conf"]
    assert path.read_text() == ORIGINAL
    assert not state.path.exists()
    assert HostState(tmp_path / "state", "zg0").recover() == []


def test_a_client_still_running_is_not_undone(tmp_path: Path) -> None:
    state = HostState(tmp_path, "zg0")
    # a live process whose command line names zerogate
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "zerogate"],
    )
    try:
        state.path.write_text(json.dumps({"pid": sleeper.pid, "dns": {"mode": "disabled"}}))
        with pytest.raises(ConfigError, match="another zerogate client"):
            HostState(tmp_path, "zg0").recover()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_record_of_nothing_is_no_file(tmp_path: Path) -> None:
    state = HostState(tmp_path, "zg0")
    state.record(rules=[{"family": 4}])
    assert json.loads(state.path.read_text())["pid"] == os.getpid()
    state.record(rules=None)
    assert not state.path.exists()


@pytest.mark.netns
def test_a_namespace_without_a_resolv_conf_of_its_own_leaves_the_hosts_alone() -> None:
    from zerogate.testing.dnsd import netns_resolv_conf
    from zerogate.testing.lab import NetLab, lab_unavailable_reason

    if lab_unavailable_reason() is not None:
        pytest.skip(lab_unavailable_reason() or "")
    code = (
        "from zerogate.client import dnscontrol; "
        "print(dnscontrol.choose('auto'), dnscontrol.choose('etc-resolv-conf'))"
    )
    with NetLab() as lab:
        shared = lab.namespace("shared")
        assert shared.run(sys.executable, "-c", code).stdout.split() == [
            "disabled",  # auto: the host's file is not ours to rewrite
            "etc-resolv-conf",  # asked for by name: done
        ]
        own = lab.namespace("own")
        netns_resolv_conf(own, "nameserver 192.0.2.53\n")
        assert own.run(sys.executable, "-c", code).stdout.split()[0] == "etc-resolv-conf"
