"""``zerogate-wg`` as a user meets it: help, key tools, and bad configuration."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from zerogate.dataplane.cli import main

KEY = base64.b64encode(bytes(range(32))).decode()
CLI = [
    sys.executable,
    "-c",
    "import sys; from zerogate.dataplane.cli import main; sys.exit(main())",
]


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


def test_help_names_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ("up", "genkey", "pubkey"):
        assert word in result.stdout


def test_up_help_mentions_the_config() -> None:
    result = run_cli("up", "--help")
    assert result.returncode == 0
    assert "CONFIG" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    assert run_cli().returncode == 2


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (f"[Interface]\nPrivateKey = {KEY}\nListenPort = 99999\n", "line 3: ListenPort:"),
        ("[Interface]\nPrivateKey = short\n", "line 2: PrivateKey:"),
        (f"[Interface]\nPrivateKey = {KEY}\nColour = blue\n", "line 3: Colour:"),
        (f"[Interface]\nPrivateKey = {KEY}\n[Peer]\nEndpoint = 1.2.3.4:5\n", "PublicKey"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, body: str, needle: str) -> None:
    conf = tmp_path / "zgbad0.conf"
    conf.write_text(body)
    result = run_cli("up", str(conf))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_bad_interface_name_is_exit_2(tmp_path: Path) -> None:
    conf = tmp_path / "this-name-is-too-long.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {KEY}\n")
    result = run_cli("up", str(conf))
    assert result.returncode == 2
    assert "interface name" in result.stderr


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run_cli("up", str(tmp_path / "zgnone.conf"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_genkey_is_a_clamped_curve25519_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["genkey"]) == 0
    raw = base64.b64decode(capsys.readouterr().out.strip(), validate=True)
    assert len(raw) == 32
    # RFC 7748 §5 clamping, as wg genkey does
    assert raw[0] & 7 == 0
    assert raw[31] & 0x80 == 0
    assert raw[31] & 0x40


def test_pubkey_rejects_garbage() -> None:
    result = run_cli("pubkey", stdin="hello\n")
    assert result.returncode == 2
    assert "invalid private key" in result.stderr


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("wg") is None, reason="wg (wireguard-tools) not installed")
def test_pubkey_agrees_with_wg() -> None:
    private = run_cli("genkey").stdout
    ours = run_cli("pubkey", stdin=private).stdout
    theirs = subprocess.run(
        ["wg", "pubkey"], input=private, capture_output=True, text=True, timeout=10, check=True
    ).stdout
    assert ours == theirs


def test_port_in_use_is_exit_1_naming_listen_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        conf = tmp_path / "zgport0.conf"
        conf.write_text(f"[Interface]\nPrivateKey = {KEY}\nListenPort = {port}\n")
        result = run_cli("up", str(conf))
    assert result.returncode == 1
    assert "ListenPort" in result.stderr
