"""``zerogate``: the headless client, in the manner of Tailscale's and Firezone's CLIs.

::

    zerogate up                  run the client in the foreground until SIGINT/SIGTERM
    zerogate status [--json]     state, addresses, resources, and per gateway the path
    zerogate ping ADDRESS [--json] [-c N]
                                 echo an address inside a resource: RTT and the path taken
    zerogate down                stop the running client
    zerogate sign-in ACCOUNT     sign in through the identity provider (token kept for up)
    zerogate sign-out            revoke the signed-in token and delete it

``up`` reads ``ZG_TOKEN`` or ``ZG_TOKEN_PATH`` (a service account's client
token; removed from the environment once read), else the token ``sign-in``
kept (and a new one written there takes effect without a restart), ``ZG_SIGNALING_URL``, ``ZG_ID``,
``ZG_NAME``, ``ZG_CLIENT_INTERFACE`` (default ``zg0``) and
``ZG_CONTROL_SOCKET`` (default ``/run/zerogate/client.sock``; the other
commands talk to it). It needs root (CAP_NET_ADMIN, ``/dev/net/tun``).
DNS: ``ZG_DNS_CONTROL`` (``auto``, ``systemd-resolved``, ``etc-resolv-conf``
or ``disabled``) and ``ZG_DNS_UPSTREAM`` (resolvers for the names that are no
resource's, comma-separated; default: the account's, else the host's);
``ZG_INTERNET_RESOURCE=true`` or ``up --internet`` uses the Internet resource.

Exit codes: 0 on success; 1 when the client is refused (bad token) or not
running, or a ping got no reply; 2 for a bad setting or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from zerogate.client import __version__
from zerogate.client.control import DEFAULT_SOCKET, PING_MAX_COUNT, ControlServer, request
from zerogate.client.signin import SignInError, sign_in, sign_out, store_token, token_file
from zerogate.common import telemetry
from zerogate.common.agentlink import LinkFatal
from zerogate.common.agentsettings import AgentSettings
from zerogate.common.errors import ConfigError
from zerogate.common.settings import build_settings


class ClientSettings(AgentSettings):
    client_interface: str = Field(default="zg0", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    control_socket: Path = DEFAULT_SOCKET
    #: The api's REST URL, for ``sign-in`` and ``sign-out``.
    api_url: str | None = None
    #: How the host's resolver is pointed at the stub (see zerogate.client.dnscontrol).
    dns_control: Literal["auto", "systemd-resolved", "etc-resolv-conf", "disabled"] = "auto"
    #: Resolvers for names that are no resource's (comma-separated addresses).
    dns_upstream: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Route everything through the gateway of the Internet resource.
    internet_resource: bool = False

    @field_validator("dns_upstream", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        from zerogate.client.upstream import parse_servers

        parse_servers(value)  # a ValueError names the setting
        return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zerogate",
        description="Zerogate client: reach the resources your policies grant, over WireGuard.",
        epilog="Settings come from ZG_ environment variables; see `zerogate up --help`.",
    )
    p.add_argument("--version", action="version", version=f"zerogate {__version__}")
    p.add_argument(
        "--control-socket",
        type=Path,
        default=None,
        help=f"the running client's socket (default ZG_CONTROL_SOCKET or {DEFAULT_SOCKET})",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser(
        "up",
        help="run the client in the foreground",
        description="Run the client until SIGINT/SIGTERM or `zerogate down`. Environment: "
        "ZG_TOKEN or ZG_TOKEN_PATH, ZG_SIGNALING_URL, ZG_ID, ZG_NAME, ZG_CLIENT_INTERFACE, "
        "ZG_CONTROL_SOCKET, ZG_DNS_CONTROL, ZG_DNS_UPSTREAM, ZG_INTERNET_RESOURCE, ZG_LOG_LEVEL.",
    )
    up.add_argument("--interface", help="TUN interface name (default ZG_CLIENT_INTERFACE or zg0)")
    up.add_argument(
        "--internet",
        action="store_true",
        help="send all traffic through the Internet resource (default ZG_INTERNET_RESOURCE)",
    )
    status = sub.add_parser("status", help="show the client's state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "-v", "--verbose", action="store_true", help="also every ICE candidate pair per gateway"
    )
    ping = sub.add_parser("ping", help="echo an address inside a resource")
    ping.add_argument("address", help="an IPv4 or IPv6 address inside a resource")
    ping.add_argument("-c", "--count", type=int, default=3, help="echo requests (default 3)")
    ping.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    ping.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("down", help="stop the running client")
    sign = sub.add_parser(
        "sign-in",
        help="sign in through your identity provider and keep the token for `up`",
        description="Opens your browser at your identity provider (or prints the address with "
        "--no-browser); the token is kept with mode 0600 under ZG_STATE_DIR. Needs ZG_API_URL.",
    )
    sign.add_argument("account", metavar="ACCOUNT_SLUG", help="your organisation's account")
    sign.add_argument("--provider", help="the identity provider id (when there are several)")
    sign.add_argument("--no-browser", action="store_true", help="print the address instead")
    sign.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("sign-out", help="revoke the signed-in token and delete it (needs ZG_API_URL)")
    return p


def _settings() -> ClientSettings:
    try:
        return build_settings(ClientSettings)
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


# --------------------------------------------------------------------------- up


class _TokenSource:
    """Where ``up`` gets its token; a signed-in token file is watched for a new one."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.path: Path | None = None
        self._seen: float | None = None

    def read(self) -> str:
        settings = self.settings
        if settings.token is None and settings.token_path is None:
            signed_in = token_file(settings.state_dir)
            if signed_in.exists():
                settings.token_path = signed_in
        self.path = settings.token_path
        token = settings.read_token()
        settings.token = None  # read once; a file is read again when it changes
        self._seen = self._mtime()
        return token

    def _mtime(self) -> float | None:
        if self.path is None:
            return None
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def changed(self) -> bool:
        return self.path is not None and self._mtime() not in (None, self._seen)


async def _up(
    settings: ClientSettings,
    source: _TokenSource,
    token: str,
    urls: list[str],
    interface: str,
    options: Any = None,
) -> int:
    """Run agents until SIGINT/SIGTERM or ``down``.

    A token signaling refuses for good (expired, revoked) ends the tunnels but
    not the process: ``status`` says why, and a new token (``zerogate
    sign-in`` writes one) starts a new session.
    """
    from zerogate.client.agent import ClientAgent
    from zerogate.client.probe import ping

    stopping = asyncio.Event()
    agent: ClientAgent | None = None
    stopped_why: str | None = None

    async def handle(req: dict[str, Any]) -> dict[str, Any]:
        command = req.get("command")
        if command == "status":
            if agent is None or stopped_why is not None:
                return {"state": "stopped", "last_error": stopped_why, "resources": [],
                        "gateways": [], "interface": {"name": interface}}  # fmt: skip
            return agent.status(verbose=bool(req.get("verbose")))
        if command == "down":
            stopping.set()
            return {"ok": True}
        if command == "ping":
            address = str(req.get("address", ""))
            count = max(1, min(int(req.get("count", 1)), PING_MAX_COUNT))
            timeout = max(0.1, min(float(req.get("timeout", 2.0)), 60.0))
            replies = await asyncio.to_thread(ping, address, count=count, timeout=timeout)
            gateway = agent.gateway_for(address) if agent else None
            path = agent.node.status(gateway) if agent and gateway and agent.node else None
            return {"address": address, "replies": replies, "gateway_id": gateway, "path": path}
        return {"error": f"unknown command {command!r}"}

    control = ControlServer(settings.control_socket, handle)
    await control.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    code = 0
    try:
        next_token: str | None = token
        while not stopping.is_set():
            if next_token is None:  # waiting for a new token after a refusal
                await _wait(stopping, TOKEN_POLL)
                if source.changed():
                    next_token = _reread(source)
                continue
            agent = ClientAgent(
                urls=urls,
                token=next_token,
                agent_id=settings.device_id("client"),
                name=settings.name,
                interface_name=interface,
                options=options,
            )
            stopped_why = None
            task = asyncio.create_task(agent.run())
            while not task.done() and not stopping.is_set() and not source.changed():
                await _wait(stopping, TOKEN_POLL, task)
            if not task.done():  # down, a signal, or a new token
                await agent.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LinkFatal):
                    await task
                next_token = _reread(source) if source.changed() else None
                continue
            exc = task.exception()
            if isinstance(exc, LinkFatal):
                stopped_why = f"{exc.reason}: sign in again (zerogate sign-in) or give a new token"
                print(f"error: signaling refused this client: {exc.reason}", file=sys.stderr)  # noqa: T201
                next_token = None
                code = 1
            elif isinstance(exc, ConfigError):
                print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
                return 2
            elif exc is not None:
                raise exc
    finally:
        await control.close()
    return code


#: How often ``up`` looks for a new token in its token file (seconds).
TOKEN_POLL = 2.0


async def _wait(
    event: asyncio.Event, timeout: float, task: asyncio.Task[Any] | None = None
) -> None:
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(event.wait())}
    if task is not None:
        waiters.add(task)
    _done, pending = await asyncio.wait(
        waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    for fut in pending:
        if fut is not task:
            fut.cancel()


def _reread(source: _TokenSource) -> str | None:
    try:
        return source.read()
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return None


def _cmd_up(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.control_socket is not None:
        settings.control_socket = args.control_socket
    source = _TokenSource(settings)
    try:
        urls = settings.require_urls()
        token = source.read()
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return 2
    telemetry.setup("zerogate-client", log_level=settings.log_level)
    try:
        import uvloop

        from zerogate.client.agent import ClientOptions

        interface = args.interface or settings.client_interface
        options = ClientOptions(
            dns_control=settings.dns_control,
            dns_upstream=tuple(settings.dns_upstream),
            internet=bool(args.internet or settings.internet_resource),
            state_dir=settings.state_dir,
        )
        return int(uvloop.run(_up(settings, source, token, urls, interface, options)))
    finally:
        telemetry.shutdown()


# --------------------------------------------------------------------------- sign-in


def _cmd_sign_in(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.api_url:
        print("error: invalid setting ZG_API_URL: sign-in needs the api's URL", file=sys.stderr)  # noqa: T201
        return 2
    try:
        answer = sign_in(
            settings.api_url,
            args.account,
            provider=args.provider,
            open_browser=not args.no_browser,
            announce=lambda text: print(text, file=sys.stderr),  # noqa: T201
        )
    except SignInError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    path = token_file(settings.state_dir)
    store_token(path, str(answer["token"]))
    summary = {"token_file": str(path), "expires_at": answer.get("expires_at"),
               "actor_id": answer.get("actor_id")}  # fmt: skip
    if args.json:
        print(json.dumps(summary))  # noqa: T201
    else:
        print(f"signed in; the token expires at {summary['expires_at']} ({path})")  # noqa: T201
    return 0


def _cmd_sign_out(args: argparse.Namespace) -> int:
    del args  # nothing to choose: the one signed-in token goes
    settings = _settings()
    if not settings.api_url:
        print("error: invalid setting ZG_API_URL: sign-out needs the api's URL", file=sys.stderr)  # noqa: T201
        return 2
    try:
        had = sign_out(settings.api_url, token_file(settings.state_dir))
    except SignInError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print("signed out" if had else "not signed in")  # noqa: T201
    return 0


# --------------------------------------------------------------------------- the others


def _socket(args: argparse.Namespace) -> Path:
    if args.control_socket is not None:
        return Path(args.control_socket)
    return _settings().control_socket


def _ask(
    args: argparse.Namespace, message: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    try:
        reply = request(_socket(args), message, timeout=timeout)
    except (ConnectionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(1) from None
    if "error" in reply:
        print(f"error: {reply['error']}", file=sys.stderr)  # noqa: T201
        raise SystemExit(1)
    return reply


def _dns_lines(status: dict[str, Any]) -> list[str]:
    """The stub, how the host's DNS points at it, and the Internet resource."""
    dns = status.get("dns") or {}
    lines = []
    if dns.get("stub"):
        upstreams = " ".join(dns.get("upstreams") or []) or "none"
        lines.append(
            f"dns:        {' '.join(dns['stub'])} ({dns.get('control')}), upstream {upstreams}, "
            f"{len(dns.get('names') or [])} resource names"
        )
    internet = status.get("internet") or {}
    if internet.get("enabled"):
        routed = "routed" if internet.get("routing") else "not offered to this client"
        lines.append(f"internet:   on, {routed}")
    return lines


def _cmd_status(args: argparse.Namespace) -> int:
    status = _ask(args, {"command": "status", "verbose": args.verbose})
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))  # noqa: T201
        return 0
    iface = status.get("interface") or {}
    lines = [
        f"state:      {status.get('state')}"
        + (f" ({status['last_error']})" if status.get("last_error") else ""),
        f"interface:  {iface.get('name')} {iface.get('ipv4') or ''} {iface.get('ipv6') or ''}",
        f"signaling:  {status.get('signaling')}",
        *_dns_lines(status),
        "resources:",
    ]
    for res in status.get("resources", []):
        extra = ""
        if res.get("access") == "refused":
            violated = ",".join(res.get("violated_properties") or [])
            extra = f" {res.get('reason')}" + (f" ({violated})" if violated else "")
        elif res.get("gateway_id"):
            extra = f" via {res['gateway_id']}"
        lines.append(f"  {res['name']:<24} {res.get('address') or '':<22} {res['access']}{extra}")
    lines.append("gateways:")
    for gw in status.get("gateways", []):
        path = gw.get("path") or gw.get("state")
        if gw.get("relay_id"):
            path = f"{path} via relay {gw['relay_id']}"
        lines.append(
            f"  {gw['id']} {path} {gw.get('local') or ''} -> {gw.get('remote') or ''} "
            f"rx {gw.get('rx_bytes', 0)} tx {gw.get('tx_bytes', 0)} "
            f"handshake {gw.get('latest_handshake') or 'never'}"
        )
    print("\n".join(lines))  # noqa: T201
    return 0


def _cmd_ping(args: argparse.Namespace) -> int:
    try:
        from zerogate.client.control import check_address

        address = check_address(args.address)
    except ValueError:
        print(f"error: {args.address!r} is not an IP address", file=sys.stderr)  # noqa: T201
        return 2
    count = max(1, min(args.count, PING_MAX_COUNT))
    reply = _ask(
        args,
        {"command": "ping", "address": address, "count": count, "timeout": args.timeout},
        timeout=args.timeout + count + 10,
    )
    replies = reply.get("replies") or []
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))  # noqa: T201
    else:
        path = reply.get("path") or {}
        via = path.get("path") or "no tunnel"
        if path.get("relay_id"):
            via = f"relayed via {path['relay_id']}"
        for seq, rtt in enumerate(replies):
            if rtt is None:
                print(f"no reply from {address} (seq {seq})")  # noqa: T201
            else:
                print(f"pong from {address} via {via} ({path.get('remote')}) in {rtt} ms")  # noqa: T201
    return 0 if any(r is not None for r in replies) else 1


def _cmd_down(args: argparse.Namespace) -> int:
    _ask(args, {"command": "down"})
    print("stopping")  # noqa: T201
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "up": _cmd_up,
        "status": _cmd_status,
        "ping": _cmd_ping,
        "down": _cmd_down,
        "sign-in": _cmd_sign_in,
        "sign-out": _cmd_sign_out,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
