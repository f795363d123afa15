"""TCP transfers between namespaces, checked end to end with SHA-256."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from zerogate.testing.lab import Namespace, NetLabError

# --------------------------------------------------------------------------- TCP transfers


@dataclass(frozen=True)
class TransferResult:
    """What a :class:`TcpTransfer` sent and received, with SHA-256 of each side's bytes."""

    sent_bytes: int
    received_bytes: int
    sent_sha256: str
    received_sha256: str
    seconds: float

    @property
    def intact(self) -> bool:
        return self.sent_bytes == self.received_bytes and self.sent_sha256 == self.received_sha256


class TcpTransfer:
    """Send ``size`` bytes of seeded pseudo-random data over TCP between two namespaces.

    The receiver listens on ``address``:``port`` in ``receiver``; the sender
    connects from ``sender``. Both hash what they handled, so a caller checks
    integrity with :attr:`TransferResult.intact`. Runs in two background
    threads; every socket has an idle timeout and :meth:`wait` an overall one.
    """

    CHUNK = 64 * 1024

    def __init__(
        self,
        sender: Namespace,
        receiver: Namespace,
        address: str,
        port: int,
        size: int,
        *,
        seed: bytes | None = None,
        idle_timeout: float = 15.0,
        download: bool = False,
        connect_to: str | None = None,
    ) -> None:
        """``download``: the connecting side (``sender``) receives what the
        listening side (``receiver``) sends, as a client fetching a file does.
        ``connect_to``: the address the sender connects to, when it is not the
        one the receiver listens on (a gateway translates it)."""
        self.size = size
        self.download = download
        self.address = address
        self.connect_to = connect_to or address
        self.port = port
        self.seed = seed if seed is not None else os.urandom(16)
        self.idle_timeout = idle_timeout
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        self._listener = receiver.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((address, port))
        self._listener.listen(1)
        self._listener.settimeout(idle_timeout)
        self._client = sender.socket(family, socket.SOCK_STREAM)
        self._client.settimeout(idle_timeout)
        self._sent = 0
        self._received = 0
        self._sent_hash = hashlib.sha256()
        self._recv_hash = hashlib.sha256()
        self._errors: list[BaseException] = []
        self._start = 0.0
        self._end = 0.0
        listen, connect = (self._serve, self._fetch) if download else (self._receive, self._send)
        self._threads = [
            threading.Thread(target=self._guard(listen), daemon=True),
            threading.Thread(target=self._guard(connect), daemon=True),
        ]

    @property
    def received(self) -> int:
        """Bytes received so far."""
        return self._received

    def start(self) -> Self:
        self._start = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def wait_received(self, amount: int, timeout: float) -> None:
        """Block until ``amount`` bytes have arrived (or raise after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while self._received < amount:
            if self._errors:
                raise NetLabError(f"transfer failed: {self._errors[0]!r}")
            if time.monotonic() > deadline:
                raise NetLabError(f"only {self._received} of {amount} bytes after {timeout} s")
            time.sleep(0.02)

    def wait(self, timeout: float) -> TransferResult:
        """Wait for both ends to finish; raise :class:`NetLabError` on error or timeout."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.abort()
            raise NetLabError(
                f"transfer of {self.size} bytes timed out after {timeout} s "
                f"({self._sent} sent, {self._received} received)"
            )
        self._close()
        if self._errors:
            raise NetLabError(
                f"transfer failed after {self._sent} sent, {self._received} received: "
                f"{self._errors[0]!r}"
            ) from self._errors[0]
        return TransferResult(
            sent_bytes=self._sent,
            received_bytes=self._received,
            sent_sha256=self._sent_hash.hexdigest(),
            received_sha256=self._recv_hash.hexdigest(),
            seconds=self._end - self._start,
        )

    def abort(self) -> None:
        """Close both sockets, which ends both threads soon."""
        for sock in (self._client, self._listener):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._close()
        for thread in self._threads:
            thread.join(2.0)

    def _close(self) -> None:
        for sock in (self._client, self._listener):
            with contextlib.suppress(OSError):
                sock.close()

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # reported by wait()
                self._errors.append(exc)

        return run

    def _receive(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(self.idle_timeout)
            while True:
                chunk = conn.recv(self.CHUNK)
                if not chunk:
                    break
                self._recv_hash.update(chunk)
                self._received += len(chunk)
        self._end = time.monotonic()

    def _send(self) -> None:
        self._client.connect((self.connect_to, self.port))
        self._write_all(self._client)
        self._client.shutdown(socket.SHUT_WR)

    def _write_all(self, sock: socket.socket) -> None:
        rng = random.Random(self.seed)
        left = self.size
        while left > 0:
            chunk = rng.randbytes(min(self.CHUNK, left))
            self._sent_hash.update(chunk)
            sock.sendall(chunk)
            self._sent += len(chunk)
            left -= len(chunk)

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(self.idle_timeout)
            self._write_all(conn)
            conn.shutdown(socket.SHUT_WR)

    def _fetch(self) -> None:
        self._client.connect((self.connect_to, self.port))
        while True:
            chunk = self._client.recv(self.CHUNK)
            if not chunk:
                break
            self._recv_hash.update(chunk)
            self._received += len(chunk)
        self._end = time.monotonic()


def tcp_transfer(
    sender: Namespace,
    receiver: Namespace,
    address: str,
    port: int,
    size: int,
    *,
    timeout: float = 60.0,
) -> TransferResult:
    """Run a :class:`TcpTransfer` to completion (bounded by ``timeout`` seconds)."""
    return TcpTransfer(sender, receiver, address, port, size).start().wait(timeout)
