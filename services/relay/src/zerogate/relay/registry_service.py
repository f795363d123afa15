"""The relay registry on the bus: heartbeats in, relay choices and events out.

:class:`RegistryService` wraps the pure :class:`~zerogate.relay.registry.Registry`:

* subscribes ``RELAY_HEARTBEAT`` (no queue group: every registry instance sees
  every heartbeat, so each one has the full picture);
* answers ``RELAY_SELECT`` in the queue group ``REGISTRY_QUEUE`` (one instance
  answers each request) with the nearest relays and fresh TURN credentials
  (:mod:`zerogate.relay.credentials`; expiry = ``min(expires_at, now + TTL)``,
  with the TTL at most, and by default, 24 h less 5 minutes of clock skew: never
  longer than a relay's default ``--max-credential-lifetime`` accepts);
* publishes :class:`RelayOnline` on ``event("relay", "online")`` and
  :class:`RelayOffline` on ``event("relay", "offline")``. With several registry
  instances each publishes its own events, so consumers must treat them as
  idempotent hints (at-least-once).

One task sweeps expired relays: it sleeps until the registry's next deadline
(or until a heartbeat brings one closer), then hands the registry the time.
A select request also sweeps first, so a relay is never offered after its
deadline even if the sweep is late.

After a NATS reconnect the registry keeps its state: nats-py re-subscribes by
itself, relays keep heartbeating (and re-announce at once on their own
reconnect), so the picture is current again within one heartbeat interval.
While the registry's own connection is down the sweep expires nothing, and
once it is back every relay gets a fresh three intervals
(:meth:`~zerogate.relay.registry.Registry.handle_reconnect`), so an outage of
the bus does not read as every relay dying; relays that died meanwhile expire
one deadline after the reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from zerogate.common import subjects
from zerogate.common.bus import Bus, Subscription
from zerogate.common.errors import ConfigError
from zerogate.common.messages.relay import (
    RelayHeartbeat,
    RelayOffer,
    RelayOffline,
    RelayOnline,
    RelaySelectReply,
    RelaySelectRequest,
)
from zerogate.relay.credentials import DEFAULT_TTL, MAX_TTL, mint
from zerogate.relay.geo import Geolocator, Location, country_centroid
from zerogate.relay.registry import (
    Registry,
    RegistryEvent,
    RelayCameOnline,
    RelayWentOffline,
)

__all__ = ["RegistryService", "run"]

log = logging.getLogger(__name__)

EVENT_ONLINE = subjects.event("relay", "online")
EVENT_OFFLINE = subjects.event("relay", "offline")
#: How often the sweep checks whether the bus is back while it is cut off.
DISCONNECTED_POLL_S = 0.5


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RegistryService:
    """The registry on a bus; ``start(bus)`` / ``stop()``, reusable in tests and dev.

    ``geolocator`` locates askers that send only their ``ip``; without one
    (the default) such askers are located by ``country`` if sent, else get a
    random choice. Pass ``Geolocator.from_env()`` for the usual behaviour.
    ``stop()`` leaves the bus open: whoever connected it closes it.
    """

    def __init__(
        self,
        *,
        geolocator: Geolocator | None = None,
        credential_ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        if not timedelta(0) < credential_ttl <= MAX_TTL:
            raise ConfigError(f"credential TTL must be positive and at most {MAX_TTL}")
        self.registry = Registry(rng=rng)
        self._geo = geolocator
        self._ttl = credential_ttl
        self._clock = clock
        self._wall = wall_clock
        self._bus: Bus | None = None
        self._subs: list[Subscription] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._armed: float | None = None
        self._cut_off = False

    async def start(self, bus: Bus) -> None:
        if self._bus is not None:
            raise RuntimeError("registry service already started")
        self._bus = bus
        self._subs.append(
            await bus.subscribe(subjects.RELAY_HEARTBEAT, RelayHeartbeat, self._on_heartbeat)
        )
        self._subs.append(
            await bus.subscribe(
                subjects.RELAY_SELECT,
                RelaySelectRequest,
                self._on_select,
                queue=subjects.REGISTRY_QUEUE,
            )
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="relay-registry-sweep")
        log.info("relay registry started")

    async def stop(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._bus = None

    # -- handlers ------------------------------------------------------------

    async def _on_heartbeat(self, heartbeat: RelayHeartbeat) -> None:
        self.registry.handle_heartbeat(heartbeat, self._clock())
        deadline = self.registry.poll_timeout()
        if deadline is not None and (self._armed is None or deadline < self._armed):
            self._wake.set()
        await self._publish_events()

    async def _on_select(self, request: RelaySelectRequest) -> RelaySelectReply:
        self._end_cut_off()  # a request came in, so the bus is back
        self.registry.handle_timeout(self._clock())
        await self._publish_events()
        near = self.locate(request)
        now = self._wall()
        offers = []
        for choice in self.registry.select(near, request.count):
            relay = choice.relay
            creds = mint(
                relay.auth_secret.get_secret_value(),
                request.for_id,
                now=now,
                expires_at=request.expires_at,
                ttl=self._ttl,
            )
            offers.append(
                RelayOffer(
                    relay_id=relay.relay_id,
                    addresses=relay.addresses,
                    realm=relay.realm,
                    username=creds.username,
                    password=SecretStr(creds.password),
                    expires_at=creds.expires_at,
                    distance_km=(
                        None if choice.distance_km is None else round(choice.distance_km, 1)
                    ),
                )
            )
        log.debug(
            "relays selected",
            extra={"for_id": request.for_id, "located": near is not None, "offers": len(offers)},
        )
        return RelaySelectReply(offers=offers)

    def locate(self, request: RelaySelectRequest) -> Location | None:
        """The asker's place: given coordinates, else its IP, else its country's centre."""
        if request.lat is not None and request.lon is not None:
            return Location(lat=request.lat, lon=request.lon, country=request.country)
        if request.ip is not None and self._geo is not None:
            found = self._geo.locate(request.ip)
            if found is not None:
                return found
        if request.country is not None:
            return country_centroid(request.country)
        return None

    # -- timers and events -----------------------------------------------------

    async def on_reconnect(self) -> None:
        """Pass to ``Bus.connect(on_reconnect=...)``: restart missed-heartbeat counting."""
        self._cut_off = True
        self._end_cut_off()
        self._wake.set()

    def _end_cut_off(self) -> None:
        if self._cut_off:
            self._cut_off = False
            self.registry.handle_reconnect(self._clock())
            log.info("bus back; relays get a fresh heartbeat deadline")

    async def _sweep(self) -> None:
        while True:
            self._armed = self.registry.poll_timeout()
            self._wake.clear()
            delay = None if self._armed is None else max(0.0, self._armed - self._clock())
            if self._cut_off:
                # Deadlines are moot while cut off (and may be past): just poll.
                delay = DISCONNECTED_POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            bus = self._bus
            if bus is not None and not bus.is_connected:
                # No heartbeats can arrive: expiring relays now would be wrong.
                self._cut_off = True
                continue
            self._end_cut_off()
            self.registry.handle_timeout(self._clock())
            await self._publish_events()

    async def _publish_events(self) -> None:
        while (event := self.registry.poll_event()) is not None:
            await self._publish(event)

    async def _publish(self, event: RegistryEvent) -> None:
        bus = self._bus
        if bus is None:
            return
        at = self._wall()
        subject: str
        message: RelayOnline | RelayOffline
        if isinstance(event, RelayCameOnline):
            hb = event.heartbeat
            subject = EVENT_ONLINE
            message = RelayOnline(
                relay_id=hb.relay_id,
                addresses=hb.addresses,
                lat=hb.lat,
                lon=hb.lon,
                version=hb.version,
                at=at,
            )
            log.info("relay online", extra={"relay_id": hb.relay_id, "version": hb.version})
        elif isinstance(event, RelayWentOffline):
            subject = EVENT_OFFLINE
            last_seen = at - timedelta(seconds=max(0.0, event.at - event.last_seen))
            message = RelayOffline(relay_id=event.relay_id, last_seen=last_seen, at=at)
            log.info("relay offline", extra={"relay_id": event.relay_id})
        try:
            await bus.publish(subject, message)
        except Exception:
            # The registry's state is right regardless; the next event will go out.
            log.warning("could not publish relay event", exc_info=True)


async def run(
    nats_url: str,
    *,
    geoip_db: str | None = None,
    credential_ttl_s: float = DEFAULT_TTL.total_seconds(),
    name: str = "relay-registry",
) -> None:
    """Run a registry until cancelled.

    ``geoip_db`` names a MaxMind-format city database; without it
    ``ZG_GEOIP_DB`` is used if set, else country-level offline lookups.
    """
    geolocator = Geolocator(geoip_db) if geoip_db else Geolocator.from_env()
    try:
        await asyncio.to_thread(geolocator.warm_up)
        service = RegistryService(
            geolocator=geolocator, credential_ttl=timedelta(seconds=credential_ttl_s)
        )

        async def reconnected() -> None:
            log.info("registry keeps its %d relays across the reconnect", len(service.registry))
            await service.on_reconnect()

        bus = await Bus.connect(nats_url, name=name, on_reconnect=reconnected)
        try:
            await service.start(bus)
            await asyncio.Event().wait()
        finally:
            await service.stop()
            await bus.close()
    finally:
        geolocator.close()
