"""``zerogate-relay``: the TURN relay process, and ``zerogate-relay registry``.

Every flag has a ``ZG_RELAY_<NAME>`` environment variable (flags win); lists
are repeated flags or comma-separated variables. Prefer the environment (or a
secrets file mounted as one) for ``--auth-secret``: command lines are visible
to every local user.

Exit codes: 0 after SIGINT/SIGTERM, 2 for a bad setting or a socket that
cannot be bound (one line on stderr naming the setting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from zerogate.common import telemetry
from zerogate.common.errors import ConfigError
from zerogate.common.settings import ZGSettings as _RegistrySettings
from zerogate.common.settings import build_settings, load_settings
from zerogate.relay.credentials import MAX_TTL
from zerogate.relay.heartbeat import relay_version
from zerogate.relay.settings import DEFAULT_HTTP_PORT, DEFAULT_PORT, RelaySettings

_EPILOG = """\
subcommands:
  zerogate-relay [serve] [flags]     run a TURN relay (this help)
  zerogate-relay registry --help     run the relay registry (answers zg.v1.relay.select)

With ZG_NATS_URL (or --nats-url) the relay heartbeats on the bus; without it,
it is a standalone TURN server checking TURN REST credentials with --auth-secret.
"""


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zerogate-relay",
        description="Zerogate TURN relay (RFC 8656 over UDP) with /healthz and /metrics.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add = p.add_argument
    add("--version", action="version", version=f"zerogate-relay {relay_version()}")
    add("--relay-id", metavar="ID", help="id announced on the bus (default: relay-<hostname>)")
    add(
        "--listen-ip",
        action="append",
        metavar="IP",
        help="address to serve STUN/TURN on, one per family (default: 0.0.0.0 and ::)",
    )
    add(
        "--public-ip",
        action="append",
        metavar="IP",
        help="public address to advertise in relayed addresses; repeat for IPv4 and IPv6 "
        "(default: the listen addresses when specific)",
    )
    add("--port", type=int, help=f"STUN/TURN UDP port (default {DEFAULT_PORT})")
    add("--relay-ports", metavar="LOW-HIGH", help="relay port range (default 49152-65535)")
    add("--realm", help="TURN realm (default zerogate)")
    add(
        "--auth-secret",
        metavar="SECRET",
        help="TURN REST API shared secret (better: ZG_RELAY_AUTH_SECRET); required without a bus",
    )
    add(
        "--allow-peer",
        action="append",
        metavar="CIDR",
        help="allow relaying to this network even if private/loopback (repeatable)",
    )
    add("--lat", type=float, help="latitude announced to the registry")
    add("--lon", type=float, help="longitude announced to the registry")
    add("--http-ip", metavar="IP", help="address of /healthz and /metrics (default 0.0.0.0)")
    add("--http-port", type=int, help=f"port of /healthz, /metrics ({DEFAULT_HTTP_PORT})")
    add("--nats-url", metavar="URL", help="NATS URL (default: ZG_NATS_URL; none = standalone)")
    add("--heartbeat-interval", type=float, metavar="S", help="seconds between heartbeats (5)")
    add("--default-lifetime", type=int, metavar="S", help="allocation lifetime when unasked (600)")
    add("--max-lifetime", type=int, metavar="S", help="longest allocation lifetime (3600)")
    add(
        "--max-credential-lifetime",
        type=int,
        metavar="S",
        help="refuse TURN REST usernames expiring more than S seconds ahead (86400)",
    )
    add("--user-quota", type=int, metavar="N", help="allocations per username (64)")
    add("--total-quota", type=int, metavar="N", help="allocations in total (10000)")
    add(
        "--rfc5766-channel-numbers",
        action="store_true",
        help="also accept channel numbers 0x5000-0x7FFF (legacy RFC 5766 clients)",
    )
    add(
        "--no-udp-gso",
        dest="udp_gso",
        action="store_false",
        help="send every datagram with its own system call (no UDP GSO)",
    )
    add("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING ... (default INFO)")
    return p


def registry_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zerogate-relay registry",
        description="The relay registry: collects relay heartbeats and answers "
        "zg.v1.relay.select with the nearest relays and fresh TURN credentials.",
    )
    p.add_argument("--version", action="version", version=f"zerogate-relay {relay_version()}")
    p.add_argument("--nats-url", metavar="URL", help="NATS URL (default: ZG_NATS_URL)")
    p.add_argument(
        "--geoip-db",
        metavar="PATH",
        help="MaxMind-format city database (default: ZG_GEOIP_DB, else country level)",
    )
    p.add_argument(
        "--credential-ttl",
        type=float,
        metavar="S",
        default=None,
        help="lifetime of minted TURN credentials in seconds (default and most: "
        f"{int(MAX_TTL.total_seconds())}, under the relays' --max-credential-lifetime)",
    )
    return p


def load_relay_settings(**overrides: Any) -> RelaySettings:
    """Settings from flags and environment; one line on stderr and exit 2 when bad."""
    try:
        return build_settings(RelaySettings, **overrides)
    except ConfigError as exc:
        # The bus URL and log level are shared variables without the RELAY part.
        detail = exc.detail
        for name in ("NATS_URL", "LOG_LEVEL"):
            for wrong in (f"ZG_RELAY_ZG_{name}", f"ZG_RELAY_{name}"):
                detail = detail.replace(wrong, f"ZG_{name}")
        print(f"error: {detail}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def serve(argv: Sequence[str]) -> int:
    args = vars(serve_parser().parse_args(argv))
    settings = load_relay_settings(**args)
    telemetry.setup("zerogate-relay", log_level=settings.log_level)
    from zerogate.relay.service import run

    code = _run_loop(run(settings))
    telemetry.shutdown()
    return code


def registry(argv: Sequence[str]) -> int:
    args = registry_parser().parse_args(argv)
    overrides = {"nats_url": args.nats_url} if args.nats_url else {}
    settings = load_settings(_RegistrySettings, **overrides)
    if not settings.nats_url:
        print("error: invalid setting ZG_NATS_URL: the registry needs the bus", file=sys.stderr)  # noqa: T201
        return 2
    if args.credential_ttl is not None and not 0 < args.credential_ttl <= MAX_TTL.total_seconds():
        print(  # noqa: T201
            "error: invalid setting --credential-ttl: must be positive and at most "
            f"{int(MAX_TTL.total_seconds())} (the relays refuse longer-lived credentials)",
            file=sys.stderr,
        )
        return 2
    telemetry.setup("zerogate-relay-registry", log_level=settings.log_level)
    from zerogate.relay import registry_service

    kwargs: dict[str, Any] = {"geoip_db": args.geoip_db}
    if args.credential_ttl is not None:
        kwargs["credential_ttl_s"] = args.credential_ttl
    nats_url = settings.nats_url

    async def _main() -> int:
        task = asyncio.create_task(registry_service.run(nats_url, **kwargs))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 0

    try:
        return _run_loop(_main())
    finally:
        telemetry.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "registry":
        return registry(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(argv)


if __name__ == "__main__":
    raise SystemExit(main())
