"""The WireGuard cross-platform userspace API (https://www.wireguard.com/xplatform/).

A client (``wg show``, ``wg set``) connects to ``/var/run/wireguard/<ifname>.sock``
and sends ``get=1`` or ``set=1`` followed by ``key=value`` lines and an empty
line; we answer (for ``get``) the device's ``key=value`` lines, then
``errno=N`` and an empty line. Keys are lowercase hex. Several requests may
share one connection.

The protocol itself is pure: :func:`parse_set` turns a request body into a
:class:`DeviceChange` (raising :class:`UapiError` with the errno to answer) and
:func:`format_get` turns a :class:`DeviceState` into the reply. The interface
that owns the device implements :class:`UapiTarget`; :class:`UapiServer` is the
asyncio unix-socket shell between the two. A change is parsed completely
before any of it is applied, so a bad request changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from zerogate.dataplane.errors import DataplaneError, UapiError
from zerogate.proto.net import Endpoint, IPNetwork

log = logging.getLogger(__name__)

SOCKET_DIR = Path("/var/run/wireguard")  # wireguard-go ipc/uapi_linux.go: socketDirectory
PROTOCOL_VERSION = 1  # xplatform: "protocol_version" must be 1
KEY_LEN = 32
MAX_LINE = 4096
MAX_REQUEST = 4 * 1024 * 1024
MAX_PORT = 65535
MAX_KEEPALIVE = 65535
ZERO_KEY = bytes(KEY_LEN)


@dataclass(frozen=True)
class PeerState:
    public_key: bytes
    preshared_key: bytes | None
    endpoint: Endpoint | None
    last_handshake_unix: float | None
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int | None
    allowed_ips: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class DeviceState:
    private_key: bytes | None
    listen_port: int
    fwmark: int | None
    peers: tuple[PeerState, ...]


@dataclass(frozen=True)
class PeerChange:
    public_key: bytes
    remove: bool = False
    update_only: bool = False
    # None: unchanged; ZERO_KEY: remove the preshared key
    preshared_key: bytes | None = None
    endpoint: Endpoint | None = None
    # None: unchanged; 0: off
    persistent_keepalive: int | None = None
    replace_allowed_ips: bool = False
    allowed_ips: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class DeviceChange:
    private_key: bytes | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    replace_peers: bool = False
    peers: tuple[PeerChange, ...] = field(default=())


class UapiTarget(Protocol):
    """What the interface offers to the UAPI server."""

    def uapi_get(self) -> DeviceState: ...

    def uapi_set(self, change: DeviceChange) -> None:
        """Apply ``change``; raise UapiError (or DataplaneError) to refuse it."""


def _hex_key(value: str) -> bytes:
    if len(value) != 2 * KEY_LEN:
        raise UapiError(f"key must be {2 * KEY_LEN} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise UapiError("key is not hex") from exc


def _number(value: str, high: int) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise UapiError("not a number")
    number = int(value)
    if number > high:
        raise UapiError("number out of range")
    return number


def _bool_true(key: str, value: str) -> bool:
    if value != "true":
        raise UapiError(f"{key} only accepts true")
    return True


def parse_endpoint(value: str) -> Endpoint:
    """``1.2.3.4:51820`` or ``[fd00::1]:51820`` (addresses only, no names)."""
    if value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise UapiError("bad endpoint")
        host_only = host.split("%", 1)[0]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise UapiError("bad endpoint")
        host_only = host
    try:
        address = ipaddress.ip_address(host_only)
    except ValueError as exc:
        raise UapiError("bad endpoint address") from exc
    if value.startswith("[") != (address.version == 6):
        raise UapiError("bad endpoint brackets")
    port = _number(port_text, MAX_PORT)
    if port == 0:
        raise UapiError("endpoint port is 0")
    return str(address), port


def format_endpoint(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _allowed_ip(value: str) -> IPNetwork:
    if "/" not in value:
        raise UapiError("allowed_ip needs a prefix length")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise UapiError("bad allowed_ip") from exc


class _PeerDraft:
    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.remove = False
        self.update_only = False
        self.preshared_key: bytes | None = None
        self.endpoint: Endpoint | None = None
        self.persistent_keepalive: int | None = None
        self.replace_allowed_ips = False
        self.allowed_ips: list[IPNetwork] = []

    def build(self) -> PeerChange:
        return PeerChange(
            public_key=self.public_key,
            remove=self.remove,
            update_only=self.update_only,
            preshared_key=self.preshared_key,
            endpoint=self.endpoint,
            persistent_keepalive=self.persistent_keepalive,
            replace_allowed_ips=self.replace_allowed_ips,
            allowed_ips=tuple(self.allowed_ips),
        )


def parse_set(lines: Sequence[str]) -> DeviceChange:
    """Parse the ``key=value`` lines that follow ``set=1`` (without the blank line)."""
    private_key: bytes | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    replace_peers = False
    peers: list[_PeerDraft] = []
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            raise UapiError("line without =")
        peer = peers[-1] if peers else None
        if key == "public_key":
            peers.append(_PeerDraft(_hex_key(value)))
        elif peer is None:
            if key == "private_key":
                private_key = _hex_key(value)
            elif key == "listen_port":
                listen_port = _number(value, MAX_PORT)
            elif key == "fwmark":
                fwmark = _number(value, 0xFFFFFFFF)
            elif key == "replace_peers":
                replace_peers = _bool_true(key, value)
            else:
                raise UapiError(f"unknown device key {key[:32]!r}")
        elif key == "remove":
            peer.remove = _bool_true(key, value)
        elif key == "update_only":
            peer.update_only = _bool_true(key, value)
        elif key == "preshared_key":
            peer.preshared_key = _hex_key(value)
        elif key == "endpoint":
            peer.endpoint = parse_endpoint(value)
        elif key == "persistent_keepalive_interval":
            peer.persistent_keepalive = _number(value, MAX_KEEPALIVE)
        elif key == "replace_allowed_ips":
            peer.replace_allowed_ips = _bool_true(key, value)
        elif key == "allowed_ip":
            peer.allowed_ips.append(_allowed_ip(value))
        elif key == "protocol_version":
            if value != str(PROTOCOL_VERSION):
                raise UapiError("unsupported protocol_version")
        else:
            raise UapiError(f"unknown peer key {key[:32]!r}")
    return DeviceChange(
        private_key=private_key,
        listen_port=listen_port,
        fwmark=fwmark,
        replace_peers=replace_peers,
        peers=tuple(draft.build() for draft in peers),
    )


def format_get(state: DeviceState) -> str:
    """The body of a ``get=1`` reply, without the final ``errno`` line."""
    out: list[str] = []
    if state.private_key is not None:
        out.append(f"private_key={state.private_key.hex()}")
    out.append(f"listen_port={state.listen_port}")
    if state.fwmark:
        out.append(f"fwmark={state.fwmark}")
    for peer in state.peers:
        out.append(f"public_key={peer.public_key.hex()}")
        if peer.preshared_key is not None:
            out.append(f"preshared_key={peer.preshared_key.hex()}")
        out.append(f"protocol_version={PROTOCOL_VERSION}")
        if peer.endpoint is not None:
            out.append(f"endpoint={format_endpoint(peer.endpoint)}")
        seconds, nanos = 0, 0
        if peer.last_handshake_unix:
            seconds = int(peer.last_handshake_unix)
            nanos = int((peer.last_handshake_unix - seconds) * 1e9)
        out.append(f"last_handshake_time_sec={seconds}")
        out.append(f"last_handshake_time_nsec={nanos}")
        out.append(f"tx_bytes={peer.tx_bytes}")
        out.append(f"rx_bytes={peer.rx_bytes}")
        out.append(f"persistent_keepalive_interval={peer.persistent_keepalive or 0}")
        out.extend(f"allowed_ip={network}" for network in peer.allowed_ips)
    return "".join(line + "\n" for line in out)


def handle_request(target: UapiTarget, operation: str, lines: Sequence[str]) -> str:
    """Answer one request (``operation`` is its first line); never raises."""
    try:
        if operation == "get=1":
            if lines:
                raise UapiError("get takes no arguments")
            return format_get(target.uapi_get()) + "errno=0\n\n"
        if operation == "set=1":
            target.uapi_set(parse_set(lines))
            return "errno=0\n\n"
        raise UapiError("unknown operation")
    except UapiError as exc:
        log.debug("UAPI request refused: %s", exc)
        return f"errno={exc.errno}\n\n"
    except DataplaneError as exc:
        log.info("UAPI set failed: %s", exc)
        return f"errno={errno.EINVAL}\n\n"
    except Exception:
        log.exception("UAPI request failed")
        return f"errno={errno.EIO}\n\n"


def socket_path(ifname: str, directory: Path = SOCKET_DIR) -> Path:
    return directory / f"{ifname}.sock"


class UapiServer:
    """Serves one interface's UAPI socket until :meth:`close`."""

    def __init__(self, target: UapiTarget, path: Path) -> None:
        self.target = target
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _socket_in_use(self.path):
                raise DataplaneError(f"UAPI socket {self.path} is in use by another process")
            self.path.unlink()
        old_umask = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE + 2
            )
        finally:
            os.umask(old_umask)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                operation = await self._read_line(reader)
                if operation is None or operation == "":
                    return
                lines: list[str] = []
                size = 0
                while True:
                    line = await self._read_line(reader)
                    if line is None:
                        return
                    if line == "":
                        break
                    size += len(line)
                    if size > MAX_REQUEST:
                        writer.write(f"errno={errno.E2BIG}\n\n".encode())
                        await writer.drain()
                        return
                    lines.append(line)
                writer.write(handle_request(self.target, operation, lines).encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _read_line(reader: asyncio.StreamReader) -> str | None:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            return None  # an over-long line ends the connection
        try:
            return raw[:-1].decode("ascii")
        except UnicodeDecodeError:
            return "\x00invalid"  # never a known key: answered with errno=22

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()


def _socket_in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
