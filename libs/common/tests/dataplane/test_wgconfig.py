"""wg-quick files: what wg-quick(8)/wg(8) accept, and one clear error for the rest."""

from __future__ import annotations

import base64
import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.dataplane.errors import ConfigError
from zerogate.dataplane.wgconfig import (
    interface_name_from_path,
    parse_config,
    parse_endpoint,
    validate_interface_name,
)

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(1, 33))).decode()
KEY_C = base64.b64encode(bytes(range(2, 34))).decode()
HEAD = f"[Interface]\nPrivateKey = {KEY_A}\n"
PEER = f"{HEAD}[Peer]\nPublicKey = {KEY_B}\n"

FULL = f"""\
# a comment line
[Interface]
PrivateKey = {KEY_A}
Address = 10.0.0.1/24, fd00::1/64
Address = 10.1.0.1
ListenPort = 51820
MTU = 1380

[Peer]
PublicKey = {KEY_B}
PresharedKey = {KEY_C}
AllowedIPs = 10.0.0.2/32, fd00::2/128  # trailing comment
AllowedIPs = 192.168.7.9/24
Endpoint = 192.0.2.1:51821
PersistentKeepalive = 25

[Peer]
PublicKey = {KEY_C}
Endpoint = [2001:db8::1]:51822
"""


def test_full_file_is_parsed() -> None:
    cfg = parse_config(FULL, "wg0")
    assert cfg.name == "wg0"
    assert cfg.private_key == bytes(range(32))
    assert cfg.addresses == (
        ipaddress.ip_interface("10.0.0.1/24"),
        ipaddress.ip_interface("fd00::1/64"),
        ipaddress.ip_interface("10.1.0.1/32"),
    )
    assert cfg.listen_port == 51820
    assert cfg.mtu == 1380
    first, second = cfg.peers
    assert first.public_key == bytes(range(1, 33))
    assert first.preshared_key == bytes(range(2, 34))
    # host bits are masked off like wg(8) does
    assert first.allowed_ips == (
        ipaddress.ip_network("10.0.0.2/32"),
        ipaddress.ip_network("fd00::2/128"),
        ipaddress.ip_network("192.168.7.0/24"),
    )
    assert first.endpoint == ("192.0.2.1", 51821)
    assert first.persistent_keepalive == 25
    assert second.endpoint == ("2001:db8::1", 51822)
    assert second.preshared_key is None
    assert second.persistent_keepalive is None
    assert cfg.warnings == ()


def test_keys_are_case_insensitive_like_wg_quick() -> None:
    cfg = parse_config(f"[interface]\nprivatekey={KEY_A}\nlistenport=1\n", "x")
    assert cfg.listen_port == 1


def test_defaults() -> None:
    cfg = parse_config(f"{HEAD}", "wg0")
    assert cfg.listen_port is None
    assert cfg.mtu is None
    assert cfg.peers == ()


@pytest.mark.parametrize("value", ["0", "off"])
def test_keepalive_zero_and_off_disable_it(value: str) -> None:
    text = (
        f"[Interface]\nPrivateKey={KEY_A}\n[Peer]\nPublicKey={KEY_B}\nPersistentKeepalive={value}\n"
    )
    assert parse_config(text, "wg0").peers[0].persistent_keepalive is None


def test_wg_quick_only_keys_are_ignored_with_a_warning() -> None:
    text = f"[Interface]\nPrivateKey={KEY_A}\nDNS = 1.1.1.1\nPostUp = echo hi\nTable = off\n"
    cfg = parse_config(text, "wg0")
    assert len(cfg.warnings) == 3
    assert "line 3" in cfg.warnings[0]
    assert "DNS" in cfg.warnings[0]


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (f"{HEAD}ListenPort = 70000\n", "ListenPort", 3),
        (f"{HEAD}ListenPort = abc\n", "ListenPort", 3),
        ("[Interface]\nPrivateKey = not-base64!\n", "PrivateKey", 2),
        ("[Interface]\nPrivateKey = AAAA\n", "PrivateKey", 2),  # 3 bytes, not 32
        (f"{HEAD}Address = 10.0.0.300/24\n", "Address", 3),
        (f"{HEAD}MTU = 100\n", "MTU", 3),
        (f"{HEAD}Bogus = 1\n", "Bogus", 3),
        (
            f"{PEER}Endpoint = 1.2.3.4\n",
            "Endpoint",
            5,
        ),
        (
            f"{PEER}Endpoint = ::1:5\n",
            "Endpoint",
            5,
        ),
        (
            f"{PEER}Endpoint = h:0\n",
            "Endpoint",
            5,
        ),
        (
            f"{PEER}AllowedIPs = 10.0.0.0/33\n",
            "AllowedIPs",
            5,
        ),
        (
            f"{PEER}PersistentKeepalive = 65536\n",
            "PersistentKeepalive",
            5,
        ),
        (f"{HEAD}[Peer]\nAllowedIPs = 10.0.0.0/8\n", "PublicKey", 3),
        (
            f"{HEAD}[Peer]\nPublicKey={KEY_B}\n[Peer]\nPublicKey={KEY_B}\n",
            "PublicKey",
            5,
        ),
        ("ListenPort = 1\n", "ListenPort", 1),
        ("[Interface]\nListenPort = 1\n", "PrivateKey", 1),
        (f"{HEAD}[Wat]\n", "[Wat]", 3),
        (f"{HEAD}just words\n", "just words", 3),
    ],
)
def test_bad_values_name_the_key_and_the_line(text: str, key: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "wg0")
    assert info.value.key == key
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: {key}: ")


def test_missing_interface_section() -> None:
    with pytest.raises(ConfigError, match=r"\[Interface\]"):
        parse_config("", "wg0")


def test_small_mtu_is_refused_with_an_ipv6_address() -> None:
    # RFC 8200 §5: IPv6 needs a link MTU of at least 1280.
    with pytest.raises(ConfigError) as info:
        parse_config(f"[Interface]\nPrivateKey={KEY_A}\nAddress=fd00::1/64\nMTU=1279\n", "wg0")
    assert info.value.key == "MTU"
    parse_config(f"[Interface]\nPrivateKey={KEY_A}\nAddress=fd00::1/64\nMTU=1280\n", "wg0")


@pytest.mark.parametrize("name", ["wg0", "a", "x" * 15, "zg_=+.-9"])
def test_good_interface_names(name: str) -> None:
    assert validate_interface_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "wg 0", "wg/0", "wg0\n", "é", ".", ".."])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(ConfigError):
        validate_interface_name(name)


def test_interface_name_comes_from_the_file_name() -> None:
    assert interface_name_from_path("/etc/wireguard/wg7.conf") == "wg7"
    assert interface_name_from_path("office") == "office"
    with pytest.raises(ConfigError):
        interface_name_from_path("much-too-long-name.conf")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1:1", ("192.0.2.1", 1)),
        ("[fd00::1]:65535", ("fd00::1", 65535)),
        ("vpn.example.com:51820", ("vpn.example.com", 51820)),
    ],
)
def test_endpoints(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(text, "wg0")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "[Interface]",
                "[Peer]",
                f"PrivateKey = {KEY_A}",
                f"PublicKey = {KEY_B}",
                f"PublicKey = {KEY_C}",
                "Address = 10.0.0.1/24",
                "AllowedIPs = 10.0.0.0/8, ::/0",
                "Endpoint = [::1]:5",
                "Endpoint = 1.2.3.4:",
                "ListenPort = 65536",
                "MTU = 1420",
                "PersistentKeepalive = 25",
                "DNS = 1.1.1.1",
                "garbage",
                "= value",
            ]
        ),
        max_size=12,
    )
)
def test_shuffled_lines_give_a_config_or_a_config_error(lines: list[str]) -> None:
    try:
        cfg = parse_config("\n".join(lines), "wg0")
    except ConfigError as exc:
        named = exc.key
    else:
        named = "PrivateKey" if cfg.private_key == bytes(range(32)) else None
    assert named
