"""Relay settings and the CLI's start-up checks."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from zerogate.relay.main import serve_parser
from zerogate.relay.settings import RelaySettings

BASE: dict[str, Any] = {"auth_secret": "s3cret", "public_ip": "198.51.100.7"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ZG_"):
            monkeypatch.delenv(key)


def test_defaults_follow_the_rfcs() -> None:
    s = RelaySettings(**BASE)
    assert s.port == 3478  # RFC 8489 section 18.6
    assert s.relay_ports == (49152, 65535)  # RFC 8656 section 7.2
    assert s.default_lifetime == 600  # RFC 8656 section 7.2
    assert s.max_lifetime == 3600
    assert s.heartbeat_interval == 5.0
    assert s.nats_url is None
    assert s.listen_ip == [ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")]


def test_environment_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZG_RELAY_PUBLIC_IP", "198.51.100.7, 2001:db8::7")
    monkeypatch.setenv("ZG_RELAY_ALLOW_PEER", "10.0.0.0/8,192.168.1.5")
    monkeypatch.setenv("ZG_RELAY_RELAY_PORTS", "50000-50100")
    monkeypatch.setenv("ZG_RELAY_AUTH_SECRET", "hush-hush-42")
    monkeypatch.setenv("ZG_NATS_URL", "nats://127.0.0.1:4222")
    s = RelaySettings()
    assert [str(ip) for ip in s.public_ips(4)] == ["198.51.100.7"]
    assert [str(ip) for ip in s.public_ips(6)] == ["2001:db8::7"]
    assert [str(n) for n in s.allow_peer] == ["10.0.0.0/8", "192.168.1.5/32"]
    assert s.relay_ports == (50000, 50100)
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert s.auth_secret is not None
    assert "hush-hush-42" not in repr(s)
    assert s.auth_secret.get_secret_value() == "hush-hush-42"


def test_public_ip_defaults_to_a_specific_listen_ip() -> None:
    s = RelaySettings(auth_secret="x", listen_ip=["127.0.0.1", "::1"])
    assert [str(ip) for ip in s.public_ips(4)] == ["127.0.0.1"]
    assert [str(ip) for ip in s.public_ips(6)] == ["::1"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"auth_secret": None}, "auth_secret"),
        ({"auth_secret": ""}, "auth_secret"),
        ({"public_ip": []}, "public_ip"),
        ({"public_ip": "not-an-ip"}, "public_ip"),
        ({"port": 70000}, "port"),
        ({"relay_ports": "60000-50000"}, "relay_ports"),
        ({"relay_ports": "80-90"}, "relay_ports"),
        ({"relay_ports": "low-high"}, "relay_ports"),
        ({"listen_ip": ["127.0.0.1", "127.0.0.2"]}, "listen_ip"),
        ({"lat": 10.0}, "lon"),
        ({"lat": 91.0, "lon": 0.0}, "lat"),
        ({"allow_peer": ["10.0.0.0/33"]}, "allow_peer"),
        ({"max_lifetime": 100, "default_lifetime": 600}, "max_lifetime"),
        ({"relay_id": "has space"}, "relay_id"),
        ({"nats_url": "http://x"}, "nats_url"),
    ],
)
def test_bad_settings_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises((ValidationError, ValueError)) as info:
        RelaySettings(**{**BASE, **overrides})
    if isinstance(info.value, ValidationError):
        locs = {str(err["loc"][0]) for err in info.value.errors() if err["loc"]}
        assert field in locs


def test_a_bus_relay_needs_no_configured_secret() -> None:
    s = RelaySettings(public_ip="198.51.100.7", nats_url="nats://127.0.0.1:4222")
    assert s.auth_secret is None


def test_cli_flags_map_onto_settings() -> None:
    args = vars(
        serve_parser().parse_args(
            [
                "--public-ip", "198.51.100.7",
                "--public-ip", "2001:db8::1",
                "--allow-peer", "127.0.0.0/8",
                "--port", "3479",
                "--relay-ports", "50000-50010",
                "--auth-secret", "s",
                "--lat", "52.5",
                "--lon", "13.4",
            ]
        )
    )  # fmt: skip
    s = RelaySettings(**args)
    assert s.port == 3479
    assert s.relay_ports == (50000, 50010)
    assert len(s.public_ip) == 2
    assert (s.lat, s.lon) == (52.5, 13.4)
    # Flags not given stay unset, so the environment and defaults apply.
    assert "realm" not in args


def _relay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("ZG_")}
    return subprocess.run(
        [sys.executable, "-m", "zerogate.relay.main", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, **(env or {})},
        check=False,
    )


def test_bad_setting_stops_start_up_with_one_line_and_exit_2() -> None:
    proc = _relay("--public-ip", "198.51.100.7", "--relay-ports", "9-1", "--auth-secret", "s")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ZG_RELAY_RELAY_PORTS" in lines[0]


def test_missing_secret_standalone_exits_2() -> None:
    proc = _relay("--public-ip", "198.51.100.7")
    assert proc.returncode == 2
    assert "ZG_RELAY_AUTH_SECRET" in proc.stderr


def test_secret_never_printed_on_error() -> None:
    proc = _relay("--public-ip", "bad", env={"ZG_RELAY_AUTH_SECRET": "very-secret-value"})
    assert proc.returncode == 2
    assert "very-secret-value" not in proc.stderr + proc.stdout


def test_unbindable_port_exits_2_naming_the_setting() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        proc = _relay(
            "--listen-ip", "127.0.0.1", "--port", str(port), "--auth-secret", "s",
            "--http-port", "0",
        )  # fmt: skip
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert f"port {port} on 127.0.0.1 (--port/ZG_RELAY_PORT) is already in use" in last
    assert "0 picks a free one" in last


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["registry", "--help"]])
def test_help_everywhere(argv: list[str]) -> None:
    proc = _relay(*argv)
    assert proc.returncode == 0
    assert "usage: zerogate-relay" in proc.stdout


def test_bad_bus_url_names_the_shared_variable() -> None:
    proc = _relay("--public-ip", "198.51.100.7", env={"ZG_NATS_URL": "http://nats"})
    assert proc.returncode == 2
    assert "invalid setting ZG_NATS_URL" in proc.stderr


def test_registry_without_bus_exits_2() -> None:
    proc = _relay("registry")
    assert proc.returncode == 2
    assert "ZG_NATS_URL" in proc.stderr


# -- how long a TURN REST username may live (issue 8 item 9) ------------------------
DAY = 24 * 3600


def test_max_credential_lifetime_defaults_to_a_day() -> None:
    assert RelaySettings(**BASE).max_credential_lifetime == DAY


def test_max_credential_lifetime_from_flag_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = vars(serve_parser().parse_args(["--max-credential-lifetime", "3600"]))
    assert RelaySettings(**BASE, **args).max_credential_lifetime == 3600
    monkeypatch.setenv("ZG_RELAY_MAX_CREDENTIAL_LIFETIME", "7200")
    assert RelaySettings(**BASE).max_credential_lifetime == 7200


def test_bad_max_credential_lifetime_names_the_variable() -> None:
    proc = _relay(
        "--public-ip", "198.51.100.7", "--auth-secret", "s", "--max-credential-lifetime", "0"
    )
    assert proc.returncode == 2
    assert "ZG_RELAY_MAX_CREDENTIAL_LIFETIME" in proc.stderr


def test_registry_refuses_a_credential_ttl_longer_than_relays_accept() -> None:
    proc = _relay(
        "registry", "--credential-ttl", str(DAY), env={"ZG_NATS_URL": "nats://127.0.0.1:1"}
    )
    assert proc.returncode == 2
    assert "--credential-ttl" in proc.stderr
