"""The relay registry's state: which relays are alive, and which to offer.

A sans-IO core: it never reads a clock and never touches the bus. Time comes
in as ``now`` (seconds of a monotonic clock) on every call.

* :meth:`Registry.handle_heartbeat` records a relay's :class:`RelayHeartbeat`.
  A relay heard of for the first time (or again after it went offline) yields
  :class:`RelayCameOnline`.
* A relay is gone once it has missed :data:`MISSED_HEARTBEATS` intervals: its
  deadline is ``last heartbeat + MISSED_HEARTBEATS × interval_s`` (the interval
  it announced itself). :meth:`Registry.poll_timeout` gives the earliest
  deadline; :meth:`Registry.handle_timeout` removes every relay past its
  deadline and yields :class:`RelayWentOffline`.
* :meth:`Registry.select` answers "which relays for someone at this place":
  live relays by great-circle distance, nearest first, ties by lower load;
  relays that announced no location come after every located one; when the
  asker's location is unknown the choice is random (as in Firezone's portal).

A relay whose heartbeat carries a different ``auth_secret`` than before was
restarted: credentials minted with the old secret are void, so the registry
reports it offline and at once online again (consumers re-fetch offers).

Heartbeats may arrive out of order (the bus runs handlers concurrently); one
older than the relay's latest (by ``sent_at``) is ignored.

After the registry's own bus connection drops and comes back nothing is
reset (:meth:`Registry.handle_reconnect`): every known relay gets a fresh
three intervals from the reconnect, since the heartbeats it missed meanwhile
say nothing about the relays. Relays keep heartbeating, so state converges
within one interval; relays that died meanwhile expire one deadline later.
"""

from __future__ import annotations

import heapq
import hmac
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Final, NewType

from zerogate.common.messages.relay import RelayHeartbeat
from zerogate.relay.geo import Location, haversine_km

__all__ = [
    "MISSED_HEARTBEATS",
    "LiveRelay",
    "Registry",
    "RegistryEvent",
    "RelayCameOnline",
    "RelayChoice",
    "RelayId",
    "RelayWentOffline",
]

RelayId = NewType("RelayId", str)

#: A relay that misses this many heartbeat intervals is considered gone.
MISSED_HEARTBEATS: Final = 3


@dataclass(frozen=True, slots=True)
class RelayCameOnline:
    relay_id: RelayId
    heartbeat: RelayHeartbeat
    at: float


@dataclass(frozen=True, slots=True)
class RelayWentOffline:
    relay_id: RelayId
    last_seen: float
    at: float


RegistryEvent = RelayCameOnline | RelayWentOffline


class LiveRelay:
    """What the registry knows of one live relay."""

    __slots__ = ("_heartbeat", "first_seen", "grace_from", "last_seen", "location")

    def __init__(self, heartbeat: RelayHeartbeat, first_seen: float, last_seen: float) -> None:
        self.first_seen = first_seen
        self.last_seen = last_seen
        #: Counting of missed heartbeats restarts here after the registry itself
        #: was cut off from the bus (see :meth:`Registry.handle_reconnect`).
        self.grace_from = last_seen
        self.heartbeat = heartbeat

    @property
    def heartbeat(self) -> RelayHeartbeat:
        return self._heartbeat

    @heartbeat.setter
    def heartbeat(self, heartbeat: RelayHeartbeat) -> None:
        self._heartbeat = heartbeat
        self.location: Location | None = (
            None
            if heartbeat.lat is None or heartbeat.lon is None
            else Location(lat=heartbeat.lat, lon=heartbeat.lon, source="given")
        )

    @property
    def relay_id(self) -> RelayId:
        return RelayId(self._heartbeat.relay_id)

    @property
    def deadline(self) -> float:
        start = max(self.last_seen, self.grace_from)
        return start + MISSED_HEARTBEATS * self._heartbeat.interval_s


@dataclass(frozen=True, slots=True)
class RelayChoice:
    """A relay picked for an asker, with the distance when both places are known."""

    relay: RelayHeartbeat
    distance_km: float | None


def _same_secret(a: RelayHeartbeat, b: RelayHeartbeat) -> bool:
    return hmac.compare_digest(
        a.auth_secret.get_secret_value().encode("utf-8", "surrogatepass"),
        b.auth_secret.get_secret_value().encode("utf-8", "surrogatepass"),
    )


class Registry:
    """Live relays, fed by heartbeats and a clock; see the module docstring."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._relays: dict[RelayId, LiveRelay] = {}
        self._events: deque[RegistryEvent] = deque()
        self._rng = rng if rng is not None else random.Random()

    # -- input ---------------------------------------------------------------

    def handle_heartbeat(self, heartbeat: RelayHeartbeat, now: float) -> None:
        relay_id = RelayId(heartbeat.relay_id)
        known = self._relays.get(relay_id)
        if known is None:
            self._relays[relay_id] = LiveRelay(heartbeat=heartbeat, first_seen=now, last_seen=now)
            self._events.append(RelayCameOnline(relay_id=relay_id, heartbeat=heartbeat, at=now))
            return
        if heartbeat.sent_at < known.heartbeat.sent_at:
            return  # a late, out-of-order heartbeat says nothing new
        if not _same_secret(known.heartbeat, heartbeat):
            # Restarted with a new secret: every credential handed out for it
            # is void, so tell consumers it went away and came back.
            self._events.append(
                RelayWentOffline(relay_id=relay_id, last_seen=known.last_seen, at=now)
            )
            self._relays[relay_id] = LiveRelay(heartbeat=heartbeat, first_seen=now, last_seen=now)
            self._events.append(RelayCameOnline(relay_id=relay_id, heartbeat=heartbeat, at=now))
            return
        known.heartbeat = heartbeat
        known.last_seen = max(known.last_seen, now)

    def handle_reconnect(self, now: float) -> None:
        """The registry was cut off from the bus and is back.

        Heartbeats missed meanwhile say nothing about the relays, so every relay
        gets a fresh :data:`MISSED_HEARTBEATS` intervals from ``now``.
        """
        for relay in self._relays.values():
            relay.grace_from = max(relay.grace_from, now)

    def handle_timeout(self, now: float) -> None:
        """Remove every relay whose deadline has passed."""
        expired = [r for r in self._relays.values() if r.deadline <= now]
        for relay in sorted(expired, key=lambda r: (r.deadline, r.relay_id)):
            del self._relays[relay.relay_id]
            self._events.append(
                RelayWentOffline(relay_id=relay.relay_id, last_seen=relay.last_seen, at=now)
            )

    # -- output --------------------------------------------------------------

    def poll_event(self) -> RegistryEvent | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        """The next moment a relay may expire, ``None`` with no live relay."""
        return min((r.deadline for r in self._relays.values()), default=None)

    # -- queries -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._relays)

    def __contains__(self, relay_id: object) -> bool:
        return relay_id in self._relays

    def live(self) -> list[LiveRelay]:
        return sorted(self._relays.values(), key=lambda r: r.relay_id)

    def get(self, relay_id: str) -> LiveRelay | None:
        return self._relays.get(RelayId(relay_id))

    def select(self, near: Location | None, count: int) -> list[RelayChoice]:
        """Up to ``count`` live relays for an asker at ``near`` (see module docstring)."""
        if count <= 0:
            return []
        relays = list(self._relays.values())
        if near is None:
            picked = self._rng.sample(relays, min(count, len(relays)))
            return [RelayChoice(relay=r.heartbeat, distance_km=None) for r in picked]
        # Key: located first, then distance, then load, then a random tie-breaker
        # that spreads askers over equally good relays.
        rand = self._rng.random
        keyed: list[tuple[bool, float, int, float, LiveRelay]] = []
        for relay in relays:
            where = relay.location
            km = math.inf if where is None else haversine_km(near, where)
            keyed.append((where is None, km, relay.heartbeat.load, rand(), relay))
        best = heapq.nsmallest(count, keyed, key=lambda k: k[:4])
        return [
            RelayChoice(relay=r.heartbeat, distance_km=None if unlocated else km)
            for unlocated, km, _, _, r in best
        ]
