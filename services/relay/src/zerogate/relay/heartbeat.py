"""The relay's heartbeat on the bus (``zg.v1.relay.heartbeat``).

Every ``interval`` seconds (5 s by default) the relay publishes a
:class:`~zerogate.common.messages.relay.RelayHeartbeat`: its id, public
addresses, location, load (active allocations) and the TURN REST secret its
credentials are minted with. The registry drops a relay after three missed
intervals. Core NATS is at-most-once, so a heartbeat sent while the bus is down
is simply the next one's job; after a reconnect the relay re-publishes at once
(:meth:`Heartbeat.poke`) so the registry sees it again without waiting.

The secret travels on the internal bus only; NATS must run with TLS and auth in
production (see the service README). It is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata

from pydantic import SecretStr

from zerogate.common import subjects
from zerogate.common.bus import Bus
from zerogate.common.messages.relay import RelayHeartbeat
from zerogate.relay.settings import RelaySettings

log = logging.getLogger(__name__)


def relay_version() -> str:
    try:
        return metadata.version("zerogate-relay")
    except metadata.PackageNotFoundError:
        return "0"


def build_heartbeat(
    settings: RelaySettings,
    *,
    port: int,
    load: int,
    auth_secret: str,
    now: datetime | None = None,
) -> RelayHeartbeat:
    """The heartbeat message for this relay's current state."""
    return RelayHeartbeat(
        relay_id=settings.relay_id,
        public_ipv4=[str(ip) for ip in settings.public_ips(4)],
        public_ipv6=[str(ip) for ip in settings.public_ips(6)],
        port=port,
        realm=settings.realm,
        lat=settings.lat,
        lon=settings.lon,
        load=load,
        auth_secret=SecretStr(auth_secret),
        version=relay_version(),
        interval_s=settings.heartbeat_interval,
        sent_at=now or datetime.now(UTC),
    )


class Heartbeat:
    """Publishes ``make()`` every ``interval`` seconds and whenever poked."""

    def __init__(self, make: Callable[[], RelayHeartbeat], interval: float) -> None:
        self._make = make
        self._interval = interval
        self._wake = asyncio.Event()
        self._failing = False
        self.sent = 0

    async def poke(self) -> None:
        """Publish now (used as the bus's ``on_reconnect``)."""
        self._wake.set()

    async def run(self, bus: Bus) -> None:
        """Publish until cancelled."""
        while True:
            self._wake.clear()
            try:
                await bus.publish(subjects.RELAY_HEARTBEAT, self._make())
            except Exception as exc:  # the next beat tries again
                if not self._failing:
                    log.warning("heartbeat publish failed", extra={"error": type(exc).__name__})
                self._failing = True
            else:
                self.sent += 1
                if self._failing:
                    log.info("heartbeat publishing again")
                self._failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
