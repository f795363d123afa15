"""``zerogate-wg``: bring up a userspace WireGuard interface from a wg-quick file.

Usage::

    zerogate-wg up wg0.conf        # runs until SIGINT/SIGTERM, then removes wg0
    zerogate-wg genkey             # a new private key, base64, like wg(8)
    zerogate-wg pubkey < private   # its public key

The interface is named after the file (``wg0.conf`` -> ``wg0``). While it runs,
the stock ``wg show wg0`` / ``wg set wg0 ...`` work through the UAPI socket
``/var/run/wireguard/wg0.sock``. Exit codes: 0 after a clean shutdown, 2 for a
bad command line or configuration (one line on stderr naming the key and
line), 1 when the interface cannot be created (TUN, port, permissions).

Keys only wg-quick acts upon (DNS, Table, PreUp, PostUp, PreDown, PostDown,
SaveConfig) are ignored with a warning on stderr. A default route
(``AllowedIPs = 0.0.0.0/0``) is accepted for cryptokey routing but not
installed in the routing table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from zerogate.dataplane.errors import ConfigError, DataplaneError
from zerogate.dataplane.wgconfig import load_config, parse_key

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

log = logging.getLogger("zerogate.dataplane.cli")


def generate_private_key() -> bytes:
    """A fresh Curve25519 private key, clamped like ``wg genkey`` (RFC 7748 §5)."""
    raw = bytearray(
        X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    )
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return bytes(raw)


def public_key(private_key: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private_key)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerogate-wg",
        description="Zerogate userspace WireGuard interface.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser(
        "up",
        help="bring an interface up from a wg-quick file and run until SIGINT/SIGTERM",
        description="Bring up the interface named after CONFIG (wg0.conf -> wg0); "
        "remove it on SIGINT or SIGTERM. While it runs, `wg show` and `wg set` work "
        "through /var/run/wireguard/<name>.sock.",
        epilog="Keys only wg-quick acts upon (DNS, Table, PreUp, PostUp, PreDown, PostDown, "
        "SaveConfig) are ignored with a warning; any other unknown key is an error. "
        "Routes are added for each AllowedIPs entry except default routes. "
        "Exit codes: 0 clean shutdown, 1 the interface could not be created, "
        "2 bad command line or configuration.",
    )
    up.add_argument("config", metavar="CONFIG", help="wg-quick configuration file")
    up.add_argument(
        "--no-offload",
        action="store_true",
        help="plain TUN packets: no virtio-net header, no GRO writes to the TUN",
    )
    up.add_argument(
        "--tso",
        action="store_true",
        help="also take TCP super-packets from the TUN (TSO) and cut them in Python",
    )
    up.add_argument(
        "--uapi-dir",
        default=None,
        help="directory of the UAPI socket (default /var/run/wireguard)",
    )
    up.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub.add_parser("genkey", help="print a new private key (base64)")
    sub.add_parser("pubkey", help="read a private key on stdin, print its public key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "genkey":
        sys.stdout.write(base64.b64encode(generate_private_key()).decode() + "\n")
        return EXIT_OK
    if args.command == "pubkey":
        try:
            private = parse_key(sys.stdin.readline())
        except ValueError as exc:
            sys.stderr.write(f"zerogate-wg: pubkey: invalid private key: {exc}\n")
            return EXIT_USAGE
        sys.stdout.write(base64.b64encode(public_key(private)).decode() + "\n")
        return EXIT_OK
    return _up(args)


def _up(args: argparse.Namespace) -> int:
    from zerogate.common.telemetry import setup_logging

    setup_logging("DEBUG" if args.verbose else "INFO")  # JSON lines outside a terminal
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"zerogate-wg: {args.config}: {exc}\n")
        return EXIT_USAGE
    for warning in config.warnings:
        sys.stderr.write(f"zerogate-wg: {args.config}: warning: {warning}\n")
    uapi_dir = Path(args.uapi_dir) if args.uapi_dir else None
    try:
        _run_loop(_run(config, offload=not args.no_offload, tso=args.tso, uapi_dir=uapi_dir))
    except ConfigError as exc:
        sys.stderr.write(f"zerogate-wg: {args.config}: {exc}\n")
        return EXIT_USAGE
    except (DataplaneError, OSError) as exc:
        sys.stderr.write(f"zerogate-wg: {config.name}: {exc}\n")
        return EXIT_RUNTIME
    return EXIT_OK


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _run(config: object, *, offload: bool, tso: bool, uapi_dir: Path | None) -> None:
    from zerogate.dataplane.interface import WireGuardInterface
    from zerogate.dataplane.uapi import SOCKET_DIR
    from zerogate.dataplane.wgconfig import InterfaceConfig

    assert isinstance(config, InterfaceConfig)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    interface = WireGuardInterface(
        config, offload=offload, tso=tso, uapi_dir=uapi_dir or SOCKET_DIR
    )
    await interface.start()
    if os.environ.get("NOTIFY_SOCKET") is None:
        log.info("running; SIGINT or SIGTERM removes the interface")
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await interface.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
