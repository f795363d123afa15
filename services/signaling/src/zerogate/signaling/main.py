"""``zerogate-signaling``: the WebSocket edge agents connect to.

Settings are ``ZG_`` environment variables (``ZG_NATS_URL`` is required;
``ZG_SIGNALING_HOST``/``ZG_SIGNALING_PORT``, default 127.0.0.1:8090, 0 picks a
free port). Exit codes: 0 after SIGINT/SIGTERM, 2 for a bad setting or a port
that cannot be bound (one line on stderr naming the setting).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zerogate.common import telemetry
from zerogate.common.errors import ConfigError
from zerogate.common.listen import serve_asgi
from zerogate.common.messages.signaling import MAX_FRAME_BYTES
from zerogate.common.settings import load_settings
from zerogate.signaling import __version__
from zerogate.signaling.settings import SignalingSettings

#: Seconds the server waits for sessions to close at SIGTERM (agents reconnect elsewhere).
SHUTDOWN_GRACE = 8


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zerogate-signaling",
        description="Zerogate signaling: the WebSocket edge (/v1/client, /v1/gateway) agents "
        "keep open; any instance serves any agent through NATS.",
        epilog="Environment: ZG_NATS_URL (required), ZG_SIGNALING_HOST, ZG_SIGNALING_PORT, "
        "ZG_SIGNALING_TRUSTED_PROXIES, ZG_SIGNALING_INSTANCE_ID, ZG_LOG_LEVEL.",
    )
    p.add_argument("--version", action="version", version=f"zerogate-signaling {__version__}")
    p.add_argument("command", nargs="?", default="serve", choices=["serve"], help="serve (default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _parser().parse_args(argv)
    settings = load_settings(SignalingSettings)
    if not settings.nats_url:
        print("error: invalid setting ZG_NATS_URL: signaling needs the bus", file=sys.stderr)  # noqa: T201
        return 2
    telemetry.setup("zerogate-signaling", log_level=settings.log_level)
    from zerogate.signaling.app import create_app

    try:
        serve_asgi(
            create_app(settings),
            settings.signaling_host,
            settings.signaling_port,
            what="signaling",
            setting="ZG_SIGNALING_PORT",
            ws="websockets-sansio",
            ws_per_message_deflate=False,  # small frames; zlib state costs ~100 KiB a session
            ws_max_size=MAX_FRAME_BYTES,
            ws_ping_interval=None,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            proxy_headers=False,
        )
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        telemetry.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
