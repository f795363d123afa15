"""One relay process: the TURN shell, the HTTP probes and (with a bus) the heartbeat.

:class:`RelayService` is what ``zerogate-relay`` runs and what the tests start
in-process; :func:`run` adds signal handling around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Final

from zerogate.common import subjects
from zerogate.common.bus import Bus, BusError
from zerogate.common.listen import announce_ports, bind_failure
from zerogate.common.messages.relay import RelayHeartbeat
from zerogate.proto.turn import LocalProtocolError, Server, ServerConfig
from zerogate.relay import metrics
from zerogate.relay.heartbeat import Heartbeat, build_heartbeat
from zerogate.relay.httpd import HttpProbe
from zerogate.relay.settings import RelaySettings
from zerogate.relay.shell import RelayShell, RelayStartError

log = logging.getLogger(__name__)

__all__ = [
    "RelayService",
    "RelayStartError",
    "ephemeral_port_range",
    "local_addresses",
    "run",
    "warn_if_ephemeral_overlap",
]

#: Linux's ephemeral port range (sysctl ``net.ipv4.ip_local_port_range``, used for
#: IPv6 too): the kernel hands these ports to sockets that bind port 0 or connect.
EPHEMERAL_PORT_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: The host's IPv4 routing tables, whose "/32 host LOCAL" entries are its addresses.
FIB_TRIE: Final = Path("/proc/net/fib_trie")
#: The host's IPv6 addresses, one per line, 32 hex digits first.
IF_INET6: Final = Path("/proc/net/if_inet6")
#: The interval announced by a relay's last heartbeat when it shuts down: the
#: registry drops a relay three intervals after its latest heartbeat, so it stops
#: offering this one at once instead of after three missed heartbeats.
GOING_AWAY_INTERVAL_S: Final = 0.001
#: Seconds the last heartbeat may take to reach the bus at shutdown.
GOING_AWAY_TIMEOUT_S: Final = 2.0


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def ephemeral_port_range(path: Path = EPHEMERAL_PORT_RANGE) -> tuple[int, int] | None:
    """``net.ipv4.ip_local_port_range`` as ``(low, high)``, or None where unreadable."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def warn_if_ephemeral_overlap(
    relay_ports: tuple[int, int], ephemeral: tuple[int, int] | None
) -> bool:
    """Log a warning when the relay port range overlaps the kernel's ephemeral ports.

    Such a port may be held by any outgoing socket of the host when an allocation
    wants it; the core then tries another port, so it costs a bind, not an
    allocation, but the range is smaller than it looks. Returns True if it warned.
    """
    if ephemeral is None:
        return False
    low, high = relay_ports
    eph_low, eph_high = ephemeral
    if high < eph_low or eph_high < low:
        return False
    log.warning(
        "the relay port range %d-%d (--relay-ports / ZG_RELAY_RELAY_PORTS) overlaps the "
        "kernel's ephemeral ports %d-%d (sysctl net.ipv4.ip_local_port_range): local "
        "sockets may hold relay ports, which are then skipped; move one range off the other",
        low,
        high,
        eph_low,
        eph_high,
        extra={"relay_ports": f"{low}-{high}", "ephemeral_ports": f"{eph_low}-{eph_high}"},
    )
    return True


def local_addresses(fib_trie: Path = FIB_TRIE, if_inet6: Path = IF_INET6) -> list[str]:
    """Every address of this host's interfaces (Linux ``/proc``; empty where unreadable).

    A relay listening on a wildcard is reachable on each of them, so each is one of
    its own hosts, never a peer (``zerogate.proto.turn.peers``). Addresses added
    after start-up are not known; list them with ``--public-ip`` or listen on a
    specific address.
    """
    found: set[str] = set()
    with contextlib.suppress(OSError):
        last: str | None = None
        for line in fib_trie.read_text().splitlines():
            text = line.strip()
            if text.startswith("|-- "):
                last = text[4:]
            elif last is not None and text.startswith("/32 host LOCAL"):
                with contextlib.suppress(ValueError):
                    found.add(str(ipaddress.IPv4Address(last)))
    with contextlib.suppress(OSError):
        for line in if_inet6.read_text().splitlines():
            fields = line.split()
            if fields and len(fields[0]) == 32:
                with contextlib.suppress(ValueError):
                    found.add(str(ipaddress.IPv6Address(int(fields[0], 16))))
    return sorted(found)


def core_config(settings: RelaySettings, auth_secret: str) -> ServerConfig:
    """The TURN core's configuration for these settings."""
    own = {str(ip) for ip in settings.listen_ip if not ip.is_unspecified}
    own |= {str(ip) for ip in settings.public_ip}
    wildcard = {ip.version for ip in settings.listen_ip if ip.is_unspecified}
    if wildcard:
        own |= {ip for ip in local_addresses() if ipaddress.ip_address(ip).version in wildcard}
    low, high = settings.relay_ports
    config = ServerConfig(
        realm=settings.realm,
        nonce_secret=os.urandom(32),
        auth_secret=auth_secret.encode(),
        relay_addresses_v4=[str(ip) for ip in settings.public_ips(4)],
        relay_addresses_v6=[str(ip) for ip in settings.public_ips(6)],
        own_addresses=sorted(own),
        allow_peers=list(settings.allow_peer),
        relay_port_min=low,
        relay_port_max=high,
        default_lifetime=settings.default_lifetime,
        max_lifetime=settings.max_lifetime,
        max_credential_lifetime=settings.max_credential_lifetime,
        max_allocations_per_user=settings.user_quota,
        max_allocations_total=settings.total_quota,
        rfc5766_channel_numbers=settings.rfc5766_channel_numbers,
    )
    try:
        config.validate()
    except LocalProtocolError as exc:
        raise RelayStartError(str(exc)) from exc
    return config


class RelayService:
    """Start with :meth:`start`, stop with :meth:`close` (both inside the running loop)."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        # Without a configured secret a bus-connected relay mints its own and
        # announces it in every heartbeat; credentials then come from the registry.
        self._auth_secret = (
            settings.auth_secret.get_secret_value()
            if settings.auth_secret is not None
            else secrets.token_urlsafe(32)
        )
        self.core = Server(
            core_config(settings, self._auth_secret), now=time.monotonic(), unix_now=time.time()
        )
        # The default listens on both wildcards; skip IPv6 quietly where the
        # kernel has none. An address the operator gave must bind or fail.
        skip_v6 = "listen_ip" not in settings.model_fields_set and not ipv6_available()
        listen = [
            (str(ip), settings.port)
            for ip in settings.listen_ip
            if not (skip_v6 and ip.version == 6 and ip.is_unspecified)
        ]
        self.shell = RelayShell(
            self.core, listen, socket_buffer=settings.socket_buffer, gso=settings.udp_gso
        )
        self.http = HttpProbe(self.health, self.metrics_text)
        self.http_port: int | None = None
        self.bus: Bus | None = None
        self.heartbeat = Heartbeat(self.heartbeat_message, settings.heartbeat_interval)
        self._bus_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound STUN/TURN port."""
        return self.shell.bound[0][1]

    async def start(self) -> None:
        """Bind everything; raises :class:`RelayStartError` naming the setting at fault."""
        warn_if_ephemeral_overlap(self.settings.relay_ports, ephemeral_port_range())
        self.shell.start()
        try:
            self.http_port = await self.http.start(
                str(self.settings.http_ip), self.settings.http_port
            )
        except OSError as exc:
            self.shell.close()
            failure = bind_failure(
                "relay HTTP probes",
                str(self.settings.http_ip),
                self.settings.http_port,
                "--http-port/ZG_RELAY_HTTP_PORT",
                exc,
            )
            raise RelayStartError(failure.detail) from exc
        announce_ports(turn=self.port, http=self.http_port)
        if self.settings.nats_url:
            # The relay serves TURN whether or not the bus is up: join it in the
            # background (nats-py keeps retrying an unreachable server) and start
            # heartbeating once connected.
            self._bus_task = asyncio.create_task(self._join_bus(self.settings.nats_url))
        log.info(
            "relay started",
            extra={
                "relay_id": self.settings.relay_id,
                "port": self.port,
                "http_port": self.http_port,
                "bus": self.settings.nats_url is not None,
            },
        )

    async def _join_bus(self, url: str) -> None:
        delay = 1.0
        while True:
            try:
                self.bus = await Bus.connect(
                    url, name=self.settings.relay_id, on_reconnect=self.heartbeat.poke
                )
            except BusError as exc:
                # not exc.detail: it quotes the URL, which may hold credentials
                cause = type(exc.__cause__ or exc).__name__
                log.warning("cannot join the bus yet", extra={"error": cause})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            log.info("joined the bus", extra={"relay_id": self.settings.relay_id})
            await self.heartbeat.run(self.bus)

    async def close(self) -> None:
        """Stop heartbeating, say goodbye to the registry, then stop serving."""
        if self._bus_task is not None:
            self._bus_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bus_task
            self._bus_task = None
        await self.going_away()
        if self.bus is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bus.close(), 5.0)
            self.bus = None
        await self.http.close()
        self.shell.close()

    async def going_away(self) -> None:
        """Publish a last heartbeat announcing :data:`GOING_AWAY_INTERVAL_S`.

        The registry then hands out other relays at once (and publishes this
        one's ``RelayOffline``) rather than for three more heartbeat intervals.
        Best effort: without a bus the registry expires the relay as usual.
        """
        bus = self.bus
        if bus is None or not bus.is_connected:
            return
        last = self.heartbeat_message().model_copy(update={"interval_s": GOING_AWAY_INTERVAL_S})
        try:
            publish = bus.publish(subjects.RELAY_HEARTBEAT, last)
            await asyncio.wait_for(publish, GOING_AWAY_TIMEOUT_S)
            await bus.flush(timeout=int(GOING_AWAY_TIMEOUT_S))
        except Exception as exc:  # the registry expires it after three intervals instead
            log.warning("could not announce going away", extra={"error": type(exc).__name__})
        else:
            log.info("told the registry this relay is going away")

    # -- what the probes and the heartbeat report ------------------------------
    def heartbeat_message(self) -> RelayHeartbeat:
        return build_heartbeat(
            self.settings,
            port=self.port,
            load=self.core.stats().allocations,
            auth_secret=self._auth_secret,
        )

    def health(self) -> tuple[bool, str]:
        bound = bool(self.shell.bound)
        lines = ["ok" if bound else "not listening"]
        if self.settings.nats_url:
            lines.append(f"bus {'connected' if self.bus and self.bus.is_connected else 'down'}")
        return bound, "\n".join(lines)

    def metrics_text(self) -> str:
        return metrics.render(
            self.core.stats(),
            self.shell.counters,
            relay_sockets=self.shell.relay_sockets,
            bus_connected=(self.bus.is_connected if self.bus else False)
            if self.settings.nats_url
            else None,
            heartbeats_sent=self.heartbeat.sent,
        )


async def run(settings: RelaySettings) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    service = RelayService(settings)
    try:
        await service.start()
    except RelayStartError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - one line for the operator
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await service.close()
    log.info("relay stopped")
    return 0
