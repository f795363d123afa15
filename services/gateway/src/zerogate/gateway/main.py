"""``zerogate-gateway``: run a gateway for a site until SIGINT/SIGTERM.

Settings (environment): ``ZG_TOKEN`` or ``ZG_TOKEN_PATH`` (the site's gateway
token; removed from the environment once read), ``ZG_SIGNALING_URL``
(``wss://...``; several, comma-separated, are tried in turn), ``ZG_ID``
(default: the machine id), ``ZG_NAME`` (default: the host name),
``ZG_GATEWAY_INTERFACE`` (default ``zg-gateway``), ``ZG_GATEWAY_DNS_UPSTREAM``
(resolvers for DNS resources' names; default: those of ``/etc/resolv.conf``),
``ZG_LOG_LEVEL``.
Needs CAP_NET_ADMIN and ``/dev/net/tun``.

Exit codes: 0 after SIGINT/SIGTERM, 1 when signaling refuses the gateway for
good (bad token, version mismatch), 2 for a bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from zerogate.common import telemetry
from zerogate.common.agentlink import LinkFatal
from zerogate.common.errors import ConfigError
from zerogate.common.settings import load_settings
from zerogate.gateway import __version__
from zerogate.gateway.settings import GatewaySettings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zerogate-gateway",
        description="Zerogate gateway: serves a site's resources to authorized clients "
        "over WireGuard, direct or through a relay.",
        epilog="Environment: ZG_TOKEN or ZG_TOKEN_PATH, ZG_SIGNALING_URL, ZG_ID, ZG_NAME, "
        "ZG_GATEWAY_INTERFACE, ZG_GATEWAY_HOST_SETUP, ZG_GATEWAY_DNS_UPSTREAM, ZG_LOG_LEVEL.",
    )
    p.add_argument("--version", action="version", version=f"zerogate-gateway {__version__}")
    return p


async def _run(settings: GatewaySettings, token: str, urls: list[str]) -> int:
    from zerogate.gateway.agent import GatewayAgent

    agent = GatewayAgent(
        urls=urls,
        token=token,
        agent_id=settings.device_id("gateway"),
        name=settings.name,
        interface_name=settings.gateway_interface,
        host_setup=settings.gateway_host_setup,
        dns_upstream=settings.gateway_dns_upstream,
    )
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    stop_wait = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if task in done:
        exc = task.exception()
        if isinstance(exc, LinkFatal):
            print(f"error: signaling refused this gateway: {exc.reason}", file=sys.stderr)  # noqa: T201
            code = 1
        elif isinstance(exc, ConfigError):
            print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
            code = 2
        elif exc is not None:
            raise exc
    else:
        await agent.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LinkFatal):
            await task
    stop_wait.cancel()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    _parser().parse_args(argv)
    settings = load_settings(GatewaySettings)
    try:
        token = settings.read_token()
        urls = settings.require_urls()
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return 2
    telemetry.setup("zerogate-gateway", log_level=settings.log_level)
    try:
        import uvloop

        return int(uvloop.run(_run(settings, token, urls)))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
