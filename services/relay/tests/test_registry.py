"""The pure relay registry, driven by a virtual clock."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from zerogate.common.messages.relay import RelayHeartbeat
from zerogate.relay.geo import Location
from zerogate.relay.registry import (
    Registry,
    RegistryEvent,
    RelayCameOnline,
    RelayId,
    RelayWentOffline,
)

# "One that misses three intervals is gone" (task item 8), restated.
MISSED = 3
INTERVAL = 5.0
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

FRANKFURT = (50.11, 8.68)
VIRGINIA = (38.95, -77.45)
BERLIN = Location(52.52, 13.40)
NEW_YORK = Location(40.71, -74.01)


def hb(
    relay_id: str,
    where: tuple[float, float] | None = None,
    *,
    t: float = 0.0,
    interval: float = INTERVAL,
    load: int = 0,
    ip: str = "203.0.113.1",
) -> RelayHeartbeat:
    return RelayHeartbeat(
        relay_id=relay_id,
        public_ipv4=[ip],
        port=3478,
        realm="zerogate",
        lat=None if where is None else where[0],
        lon=None if where is None else where[1],
        load=load,
        auth_secret=f"secret-{relay_id}",
        version="0.1.0",
        interval_s=interval,
        sent_at=T0 + timedelta(seconds=t),
    )


def events(reg: Registry) -> list[RegistryEvent]:
    out = []
    while (ev := reg.poll_event()) is not None:
        out.append(ev)
    return out


def ids(choices) -> list[str]:
    return [c.relay.relay_id for c in choices]


def test_first_heartbeat_brings_relay_online_once():
    reg = Registry()
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=100.0)
    reg.handle_heartbeat(hb("fra", FRANKFURT, t=5), now=105.0)
    evs = events(reg)
    assert len(evs) == 1
    assert isinstance(evs[0], RelayCameOnline)
    assert evs[0].relay_id == "fra"
    assert evs[0].at == 100.0
    assert "fra" in reg
    assert len(reg) == 1


def test_berlin_gets_frankfurt_first_new_york_gets_virginia_first():
    reg = Registry(rng=random.Random(1))
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=0.0)
    reg.handle_heartbeat(hb("iad", VIRGINIA), now=0.0)
    berlin = reg.select(BERLIN, 2)
    assert ids(berlin) == ["fra", "iad"]
    assert berlin[0].distance_km == pytest.approx(424, abs=5)
    assert berlin[1].distance_km is not None
    assert berlin[1].distance_km > 6000
    assert ids(reg.select(NEW_YORK, 2)) == ["iad", "fra"]
    assert ids(reg.select(NEW_YORK, 1)) == ["iad"]


def test_relays_without_location_come_last():
    reg = Registry(rng=random.Random(2))
    reg.handle_heartbeat(hb("nowhere-1"), now=0.0)
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=0.0)
    reg.handle_heartbeat(hb("nowhere-2"), now=0.0)
    reg.handle_heartbeat(hb("iad", VIRGINIA), now=0.0)
    for _ in range(20):
        got = reg.select(BERLIN, 4)
        assert ids(got)[:2] == ["fra", "iad"]
        assert set(ids(got)[2:]) == {"nowhere-1", "nowhere-2"}
        assert [c.distance_km is None for c in got] == [False, False, True, True]
    # Even a far-away located relay beats an unlocated one.
    assert ids(reg.select(NEW_YORK, 2)) == ["iad", "fra"]


def test_equal_distance_prefers_lower_load():
    reg = Registry(rng=random.Random(3))
    reg.handle_heartbeat(hb("busy", FRANKFURT, load=900), now=0.0)
    reg.handle_heartbeat(hb("idle", FRANKFURT, load=3), now=0.0)
    assert ids(reg.select(BERLIN, 1)) == ["idle"]


def test_unknown_asker_gets_a_random_choice():
    reg = Registry(rng=random.Random(4))
    for name in ("a", "b", "c", "d"):
        reg.handle_heartbeat(hb(name, FRANKFURT), now=0.0)
    firsts = Counter(ids(reg.select(None, 2))[0] for _ in range(400))
    assert set(firsts) == {"a", "b", "c", "d"}
    assert min(firsts.values()) > 50  # roughly uniform
    picked = reg.select(None, 2)
    assert len(picked) == 2
    assert len(set(ids(picked))) == 2
    assert all(c.distance_km is None for c in picked)


def test_count_bounds():
    reg = Registry()
    assert reg.select(BERLIN, 2) == []
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=0.0)
    assert ids(reg.select(BERLIN, 5)) == ["fra"]
    assert reg.select(BERLIN, 0) == []


def test_missing_three_heartbeats_goes_offline():
    reg = Registry()
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=10.0)
    reg.handle_heartbeat(hb("iad", VIRGINIA), now=12.0)
    events(reg)
    assert reg.poll_timeout() == 10.0 + MISSED * INTERVAL
    # Two missed intervals: still there.
    reg.handle_timeout(10.0 + 2 * INTERVAL)
    assert events(reg) == []
    assert ids(reg.select(BERLIN, 2)) == ["fra", "iad"]
    # iad keeps beating, fra stays silent.
    reg.handle_heartbeat(hb("iad", VIRGINIA, t=5), now=17.0)
    reg.handle_timeout(10.0 + MISSED * INTERVAL)
    evs = events(reg)
    assert evs == [RelayWentOffline(relay_id=RelayId("fra"), last_seen=10.0, at=25.0)]
    assert "fra" not in reg
    assert ids(reg.select(BERLIN, 2)) == ["iad"]
    assert reg.poll_timeout() == 17.0 + MISSED * INTERVAL


def test_a_relay_that_returns_comes_online_again():
    reg = Registry()
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=0.0)
    reg.handle_timeout(100.0)
    reg.handle_heartbeat(hb("fra", FRANKFURT, t=100), now=100.0)
    kinds = [type(e) for e in events(reg)]
    assert kinds == [RelayCameOnline, RelayWentOffline, RelayCameOnline]


def test_deadline_follows_announced_interval():
    reg = Registry()
    reg.handle_heartbeat(hb("slow", FRANKFURT, interval=30.0), now=0.0)
    reg.handle_heartbeat(hb("fast", VIRGINIA, interval=1.0), now=0.0)
    assert reg.poll_timeout() == MISSED * 1.0
    reg.handle_timeout(MISSED * 1.0)
    assert "fast" not in reg
    assert "slow" in reg
    assert reg.poll_timeout() == MISSED * 30.0
    reg.handle_timeout(MISSED * 30.0 - 0.001)
    assert "slow" in reg


def test_late_out_of_order_heartbeat_is_ignored():
    reg = Registry()
    reg.handle_heartbeat(hb("fra", FRANKFURT, t=10, load=7), now=10.0)
    reg.handle_heartbeat(hb("fra", FRANKFURT, t=5, load=99), now=11.0)
    live = reg.get("fra")
    assert live is not None
    assert live.heartbeat.load == 7
    assert live.last_seen == 10.0


def test_newer_heartbeat_updates_what_is_offered():
    reg = Registry()
    reg.handle_heartbeat(hb("fra", FRANKFURT, ip="203.0.113.1"), now=0.0)
    reg.handle_heartbeat(hb("fra", VIRGINIA, t=5, ip="203.0.113.2"), now=5.0)
    (choice,) = reg.select(NEW_YORK, 1)
    assert choice.relay.public_ipv4 == ["203.0.113.2"]
    assert choice.distance_km is not None
    assert choice.distance_km < 400
    assert len(events(reg)) == 1


def test_no_relays_no_timeout():
    reg = Registry()
    assert reg.poll_timeout() is None
    reg.handle_timeout(1e9)
    assert reg.poll_event() is None


def test_reconnect_restarts_missed_heartbeat_counting():
    reg = Registry()
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=0.0)
    events(reg)
    # The registry was cut off from t=1 to t=40: far past fra's deadline of 15.
    reg.handle_reconnect(40.0)
    assert reg.poll_timeout() == 40.0 + MISSED * INTERVAL
    reg.handle_timeout(40.0 + MISSED * INTERVAL - 0.001)
    assert "fra" in reg
    assert events(reg) == []
    # Silent for three intervals after the reconnect: now it is gone.
    reg.handle_timeout(40.0 + MISSED * INTERVAL)
    assert events(reg) == [RelayWentOffline(relay_id=RelayId("fra"), last_seen=0.0, at=55.0)]


def test_new_secret_reads_as_offline_then_online():
    reg = Registry()
    reg.handle_heartbeat(hb("fra", FRANKFURT), now=0.0)
    reg.handle_heartbeat(hb("fra", FRANKFURT, t=5), now=5.0)  # same secret: nothing new
    first = hb("fra", FRANKFURT, t=6)
    restarted = RelayHeartbeat.model_validate({**first.model_dump(), "auth_secret": "a-new-secret"})
    reg.handle_heartbeat(restarted, now=6.0)
    evs = events(reg)
    assert [type(e) for e in evs] == [RelayCameOnline, RelayWentOffline, RelayCameOnline]
    assert evs[1] == RelayWentOffline(relay_id=RelayId("fra"), last_seen=5.0, at=6.0)
    (choice,) = reg.select(BERLIN, 1)
    assert choice.relay.auth_secret.get_secret_value() == "a-new-secret"
