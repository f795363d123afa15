"""The running client's local control socket, and the CLI's side of it.

``zerogate up`` listens on a Unix socket (default ``/run/zerogate/client.sock``,
mode 0600: only its owner may talk to it). One request per connection, one
JSON object per line each way::

    {"command": "status"}                        -> the status object
    {"command": "ping", "address": "10.0.0.5",
     "count": 3, "timeout": 2.0}                 -> {"replies": [...], "path": ...}
    {"command": "down"}                          -> {"ok": true}; the client stops

An error answers ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = Path("/run/zerogate/client.sock")
MAX_REQUEST = 64 * 1024
PING_MAX_COUNT = 100

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()  # a crashed earlier run left it
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        self.path.chmod(0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            if len(line) > MAX_REQUEST:
                raise ValueError("request too large")
            request = json.loads(line or b"{}")
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            reply = await self._handler(request)
        except (ValueError, TimeoutError) as exc:
            reply = {"error": str(exc)}
        except Exception as exc:
            reply = {"error": f"internal error: {type(exc).__name__}"}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
            writer.close()


def request(path: Path, message: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the running client (blocking; for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ConnectionError(
                f"the client is not running (no {path}); start `zerogate up`"
            ) from None
        except PermissionError:
            raise ConnectionError(
                f"no permission to talk to {path}: run as its owner (root?)"
            ) from None
        except ConnectionRefusedError:
            raise ConnectionError(f"the client is not running ({path} is stale)") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data or b"{}")
    if not isinstance(reply, dict):
        raise ConnectionError("the client answered nonsense")
    return reply


def check_address(text: str) -> str:
    return str(ipaddress.ip_address(text))
