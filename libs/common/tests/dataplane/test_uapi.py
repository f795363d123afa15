"""The cross-platform UAPI (wireguard.com/xplatform): parser, replies, and the socket
server spoken to by the stock ``wg`` tool."""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import os
import secrets
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.dataplane.errors import UapiError
from zerogate.dataplane.uapi import (
    SOCKET_DIR,
    DeviceChange,
    DeviceState,
    PeerChange,
    PeerState,
    UapiServer,
    format_get,
    handle_request,
    parse_set,
    socket_path,
)

KEY1 = bytes(range(32))
KEY2 = bytes(range(32, 64))
EINVAL = 22  # errno the reference implementations answer for a bad request


class RecordingTarget:
    """Holds a DeviceState and records every change handed to it."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state
        self.changes: list[DeviceChange] = []

    def uapi_get(self) -> DeviceState:
        return self.state

    def uapi_set(self, change: DeviceChange) -> None:
        self.changes.append(change)


STATE = DeviceState(
    private_key=KEY1,
    listen_port=51820,
    fwmark=None,
    peers=(
        PeerState(
            public_key=KEY2,
            preshared_key=None,
            endpoint=("fd00::2", 51821),
            last_handshake_unix=1_700_000_000.25,
            rx_bytes=1234,
            tx_bytes=5678,
            persistent_keepalive=25,
            allowed_ips=(ipaddress.ip_network("10.0.0.2/32"), ipaddress.ip_network("fd00::/64")),
        ),
    ),
)


def test_get_reply_has_the_documented_keys_in_order() -> None:
    reply = handle_request(RecordingTarget(STATE), "get=1", [])
    assert reply == (
        f"private_key={KEY1.hex()}\n"
        "listen_port=51820\n"
        f"public_key={KEY2.hex()}\n"
        "protocol_version=1\n"
        "endpoint=[fd00::2]:51821\n"
        "last_handshake_time_sec=1700000000\n"
        "last_handshake_time_nsec=250000000\n"
        "tx_bytes=5678\n"
        "rx_bytes=1234\n"
        "persistent_keepalive_interval=25\n"
        "allowed_ip=10.0.0.2/32\n"
        "allowed_ip=fd00::/64\n"
        "errno=0\n\n"
    )


def test_get_with_no_handshake_reports_zero_time() -> None:
    peer = PeerState(KEY2, KEY1, ("192.0.2.1", 9), None, 0, 0, None, ())
    text = format_get(DeviceState(None, 1, 7, (peer,)))
    assert "private_key" not in text
    assert "fwmark=7\n" in text
    assert f"preshared_key={KEY1.hex()}\n" in text
    assert "endpoint=192.0.2.1:9\n" in text
    assert "last_handshake_time_sec=0\n" in text
    assert "persistent_keepalive_interval=0\n" in text


def test_set_is_parsed_completely() -> None:
    change = parse_set(
        [
            f"private_key={KEY1.hex()}",
            "listen_port=12912",
            "fwmark=0",
            "replace_peers=true",
            f"public_key={KEY2.hex()}",
            f"preshared_key={KEY1.hex()}",
            "endpoint=[abcd:23::33%2]:51820",
            "replace_allowed_ips=true",
            "allowed_ip=192.168.4.4/32",
            "allowed_ip=fd00::/8",
            "persistent_keepalive_interval=111",
            "protocol_version=1",
            f"public_key={KEY1.hex()}",
            "update_only=true",
            "endpoint=182.122.22.19:3233",
            f"public_key={bytes(32).hex()}",
            "remove=true",
        ]
    )
    assert change.private_key == KEY1
    assert change.listen_port == 12912
    assert change.fwmark == 0
    assert change.replace_peers
    first, second, third = change.peers
    assert first == PeerChange(
        public_key=KEY2,
        preshared_key=KEY1,
        endpoint=("abcd:23::33", 51820),
        persistent_keepalive=111,
        replace_allowed_ips=True,
        allowed_ips=(ipaddress.ip_network("192.168.4.4/32"), ipaddress.ip_network("fd00::/8")),
    )
    assert second == PeerChange(public_key=KEY1, update_only=True, endpoint=("182.122.22.19", 3233))
    assert third.remove


@pytest.mark.parametrize(
    "line",
    [
        "private_key=00",
        f"private_key={'zz' * 32}",
        "listen_port=65536",
        "listen_port=-1",
        "listen_port=",
        "replace_peers=false",
        "unknown=1",
        "no equals sign",
        "endpoint=1.2.3.4:5",  # a peer key before any public_key
    ],
)
def test_bad_device_lines_are_refused(line: str) -> None:
    with pytest.raises(UapiError) as info:
        parse_set([line])
    assert info.value.errno == EINVAL


@pytest.mark.parametrize(
    "line",
    [
        "endpoint=1.2.3.4",
        "endpoint=1.2.3.4:0",
        "endpoint=[1.2.3.4]:5",
        "endpoint=fd00::1:5",
        "endpoint=name.example:5",
        "allowed_ip=10.0.0.1",
        "allowed_ip=10.0.0.0/40",
        "persistent_keepalive_interval=65536",
        "protocol_version=2",
        "remove=yes",
        "bogus=1",
    ],
)
def test_bad_peer_lines_are_refused(line: str) -> None:
    with pytest.raises(UapiError):
        parse_set([f"public_key={KEY2.hex()}", line])


def test_refused_set_changes_nothing_and_answers_einval() -> None:
    target = RecordingTarget(STATE)
    reply = handle_request(target, "set=1", [f"public_key={KEY2.hex()}", "allowed_ip=bad"])
    assert reply == f"errno={EINVAL}\n\n"
    assert target.changes == []


def test_unknown_operation_and_get_with_arguments() -> None:
    target = RecordingTarget(STATE)
    assert handle_request(target, "frob=1", []).startswith("errno=")
    assert handle_request(target, "get=1", ["x=1"]) == f"errno={EINVAL}\n\n"


class FailingTarget(RecordingTarget):
    def uapi_set(self, change: DeviceChange) -> None:
        raise RuntimeError("a bug")


def test_a_bug_in_the_target_still_gets_an_answer() -> None:
    reply = handle_request(FailingTarget(STATE), "set=1", ["listen_port=1"])
    assert reply == f"errno={errno.EIO}\n\n"


LINE = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(
            [
                "private_key",
                "listen_port",
                "fwmark",
                "replace_peers",
                "public_key",
                "remove",
                "update_only",
                "preshared_key",
                "endpoint",
                "persistent_keepalive_interval",
                "replace_allowed_ips",
                "allowed_ip",
                "protocol_version",
            ]
        ),
        st.one_of(
            st.text(max_size=70),
            st.sampled_from(
                ["true", "1", "0", KEY1.hex(), "[::1]:1", "1.2.3.4:5", "10.0.0.0/8", "::/0"]
            ),
        ),
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["get=1", "set=1", "", "x"]), st.lists(LINE, max_size=12))
def test_any_request_gets_an_errno_reply(operation: str, lines: list[str]) -> None:
    reply = handle_request(RecordingTarget(STATE), operation, lines)
    assert reply.endswith("\n\n")
    last = reply[:-2].rsplit("\n", 1)[-1]
    assert last.startswith("errno=")
    assert last in ("errno=0", f"errno={EINVAL}")


# ----------------------------------------------------------------------- the socket


def _name() -> str:
    return f"zgu{os.getpid() % 100000}{secrets.token_hex(2)}"


@pytest.fixture
async def server(tmp_path: Path):
    target = RecordingTarget(STATE)
    srv = UapiServer(target, tmp_path / "zgu.sock")
    await srv.start()
    try:
        yield srv, target
    finally:
        await srv.close()


async def _ask(path: Path, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def test_socket_serves_several_requests_on_one_connection(server) -> None:
    srv, target = server
    reader, writer = await asyncio.open_unix_connection(str(srv.path))
    try:
        writer.write(b"set=1\nlisten_port=4242\n\nget=1\n\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
        second = await asyncio.wait_for(reader.readuntil(b"errno=0\n\n"), 5)
    finally:
        writer.close()
    assert first == b"errno=0\n\n"
    assert b"listen_port=51820\n" in second
    assert target.changes[0].listen_port == 4242


async def test_socket_answers_garbage_and_survives(server) -> None:
    srv, _ = server
    assert await _ask(srv.path, b"set=1\n\xff\xfe=1\n\n") == f"errno={EINVAL}\n\n".encode()
    # an over-long line closes that connection only
    assert await _ask(srv.path, b"set=1\n" + b"a" * 100_000 + b"\n\n") == b""
    assert (await _ask(srv.path, b"get=1\n\n")).endswith(b"errno=0\n\n")


async def test_socket_file_is_private_and_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "zgu.sock"
    srv = UapiServer(RecordingTarget(STATE), path)
    await srv.start()
    assert path.is_socket()
    assert path.stat().st_mode & 0o077 == 0
    await srv.close()
    assert not path.exists()


async def test_a_live_socket_is_not_stolen(server) -> None:
    srv, _ = server
    other = UapiServer(RecordingTarget(STATE), srv.path)
    with pytest.raises(Exception, match="in use"):
        await other.start()
    assert (await _ask(srv.path, b"get=1\n\n")).endswith(b"errno=0\n\n")


def test_socket_path_is_the_wireguard_go_one() -> None:
    # wireguard-go ipc/uapi_linux.go: /var/run/wireguard/<ifname>.sock
    assert socket_path("wg0") == Path("/var/run/wireguard/wg0.sock")
    assert Path("/var/run/wireguard") == SOCKET_DIR


needs_wg = pytest.mark.skipif(
    shutil.which("wg") is None or os.geteuid() != 0, reason="needs wg(8) and root"
)


async def _wg(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "wg", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    return proc.returncode or 0, out.decode(), err.decode()


@needs_wg
@pytest.mark.interop
async def test_stock_wg_show_and_set_speak_to_our_socket() -> None:
    name = _name()
    target = RecordingTarget(STATE)
    srv = UapiServer(target, socket_path(name))
    await srv.start()
    try:
        code, out, err = await _wg("show", name, "dump")
        assert code == 0, err
        iface, peer = out.strip().split("\n")
        assert iface.split("\t")[:3] == [
            base64.b64encode(KEY1).decode(),
            # wg derives the public key from the private key itself
            iface.split("\t")[1],
            "51820",
        ]
        fields = peer.split("\t")
        assert fields[0] == base64.b64encode(KEY2).decode()
        assert fields[2] == "[fd00::2]:51821"
        assert fields[3] == "10.0.0.2/32,fd00::/64"
        assert fields[4:8] == ["1700000000", "1234", "5678", "25"]

        new_peer = base64.b64encode(bytes(range(64, 96))).decode()
        code, _, err = await _wg(
            "set", name, "peer", new_peer, "allowed-ips", "10.9.0.0/16", "endpoint", "192.0.2.7:99"
        )
        assert code == 0, err
        code, _, err = await _wg("set", name, "peer", new_peer, "remove")
        assert code == 0, err
    finally:
        await srv.close()
    added, removed = target.changes
    (peer_change,) = added.peers
    assert peer_change.public_key == bytes(range(64, 96))
    assert peer_change.endpoint == ("192.0.2.7", 99)
    assert peer_change.replace_allowed_ips
    assert peer_change.allowed_ips == (ipaddress.ip_network("10.9.0.0/16"),)
    assert removed.peers[0].remove
    assert not socket_path(name).exists()
