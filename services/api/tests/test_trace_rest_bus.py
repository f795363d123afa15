"""One REST call that makes a bus request is one trace (DESIGN: traces cross the bus).

``GET /v1/relays/nearest`` asks the relay registry over the real NATS; the
SDK's in-memory exporter must see HTTP server span → ``publish`` → ``process``
under one trace id, each the child of the one before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zerogate.common import subjects, telemetry
from zerogate.common.bus import Bus
from zerogate.common.messages.relay import RelayHeartbeat
from zerogate.relay.registry_service import RegistryService


@pytest.fixture
async def registry(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_url, name="registry-test")
    service = RegistryService()
    await service.start(bus)
    try:
        yield bus
    finally:
        await service.stop()
        await bus.close()


async def test_rest_call_through_the_bus_is_one_trace(tenant, registry: Bus) -> None:
    await registry.publish(
        subjects.RELAY_HEARTBEAT,
        RelayHeartbeat(
            relay_id="relay-fra",
            public_ipv4=["192.0.2.10"],
            realm="zerogate",
            lat=50.11,
            lon=8.68,
            auth_secret="s3cret-for-the-test",
            interval_s=5,
            sent_at=datetime.now(UTC),
        ),
    )
    exporter = InMemorySpanExporter()
    processor = telemetry.add_exporter(exporter)
    try:
        for _ in range(50):  # the heartbeat crosses the bus asynchronously
            r = await tenant.http.get("/v1/relays/nearest", params={"lat": 52.52, "lon": 13.40})
            if r.status_code == 200 and r.json()["data"]:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["data"][0]["relay_id"] == "relay-fra"
        assert body["metadata"]["count"] == len(body["data"])
        assert "password" not in r.text
        assert "s3cret" not in r.text
        await asyncio.sleep(0.05)
        spans = exporter.get_finished_spans()
    finally:
        processor.shutdown()

    server = [s for s in spans if s.name == "GET /v1/relays/nearest" and s.parent is None]
    assert server, [s.name for s in spans]
    trace_id = server[-1].context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}
    publish = next(s for s in in_trace if s.name == f"publish {subjects.RELAY_SELECT}")
    process = next(s for s in in_trace if s.name == f"process {subjects.RELAY_SELECT}")
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "nats"
    # publish descends from the HTTP server span
    node = publish
    while node.parent is not None and node.parent.span_id in by_id:
        node = by_id[node.parent.span_id]
    assert node is server[-1]


async def test_nearest_relays_without_registry_is_503(tenant) -> None:
    r = await tenant.http.get("/v1/relays/nearest", params={"ip": "192.0.2.1"})
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_nearest_relays_rejects_half_a_location(tenant) -> None:
    r = await tenant.http.get("/v1/relays/nearest", params={"lat": 10})
    assert r.status_code == 422, r.text
