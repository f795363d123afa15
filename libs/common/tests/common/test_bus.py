"""The bus against a real nats-server: request/reply, errors, queue groups, traces."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zerogate.common import subjects, telemetry
from zerogate.common.bus import ERROR_HEADER, Bus, BusError, BusTimeout, RemoteError
from zerogate.common.errors import NotFound
from zerogate.common.messages import ErrorReply, Message


class Ping(Message):
    n: int


class Pong(Message):
    n: int
    by: str = ""


def _subject() -> str:
    return f"zg.test.{uuid.uuid4().hex}"


async def test_request_reply_roundtrip(bus: Bus) -> None:
    subject = _subject()

    async def handler(msg: Ping) -> Pong:
        return Pong(n=msg.n + 1)

    await bus.subscribe(subject, Ping, handler)
    reply = await bus.request(subject, Ping(n=41), Pong, timeout=2)
    assert reply == Pong(n=42)


async def test_handler_error_reaches_requester_with_its_code(bus: Bus) -> None:
    subject = _subject()

    async def handler(msg: Ping) -> Pong:
        raise NotFound("no such thing")

    await bus.subscribe(subject, Ping, handler)
    with pytest.raises(RemoteError) as info:
        await bus.request(subject, Ping(n=1), Pong, timeout=2)
    assert info.value.code == "not_found"
    assert info.value.detail == "no such thing"


async def test_malformed_request_is_answered_with_bad_request(bus: Bus) -> None:
    subject = _subject()
    called: list[Ping] = []

    async def handler(msg: Ping) -> Pong:
        called.append(msg)
        return Pong(n=msg.n)

    await bus.subscribe(subject, Ping, handler)
    for garbage in [b"not json", b'{"n": "seven"}', b"{}", b"\xff\xfe"]:
        raw = await bus.nats.request(subject, garbage, timeout=2)
        assert raw.headers is not None
        assert raw.headers.get(ERROR_HEADER) == "1"
        assert ErrorReply.model_validate_json(raw.data).error == "bad_request"
    assert called == []


async def test_no_responder_and_timeout(bus: Bus) -> None:
    with pytest.raises(BusError) as info:
        await bus.request(_subject(), Ping(n=1), Pong, timeout=0.5)
    assert info.value.code == "no_responders"

    subject = _subject()
    release = asyncio.Event()

    async def slow(msg: Ping) -> Pong:
        await release.wait()
        return Pong(n=0)

    await bus.subscribe(subject, Ping, slow)
    with pytest.raises(BusTimeout):
        await bus.request(subject, Ping(n=1), Pong, timeout=0.2)
    release.set()


async def test_queue_group_delivers_each_request_once(nats_url: str) -> None:
    subject = _subject()
    seen: list[str] = []
    buses = [await Bus.connect(nats_url, name=f"q{i}") for i in range(3)]
    try:
        for i, b in enumerate(buses[:2]):

            async def handler(msg: Ping, who: str = f"w{i}") -> Pong:
                seen.append(who)
                return Pong(n=msg.n, by=who)

            await b.subscribe(subject, Ping, handler, queue="workers")
        await buses[0].flush()
        await buses[1].flush()
        replies = await asyncio.gather(
            *(buses[2].request(subject, Ping(n=i), Pong, timeout=2) for i in range(40))
        )
        assert sorted(r.n for r in replies) == list(range(40))
        assert len(seen) == 40
    finally:
        for b in buses:
            await b.close()


async def test_handlers_run_concurrently(bus: Bus) -> None:
    subject = _subject()
    both = asyncio.Barrier(2)

    async def handler(msg: Ping) -> Pong:
        await asyncio.wait_for(both.wait(), 2)  # deadlocks if handlers ran one at a time
        return Pong(n=msg.n)

    await bus.subscribe(subject, Ping, handler)
    replies = await asyncio.gather(
        bus.request(subject, Ping(n=1), Pong, timeout=3),
        bus.request(subject, Ping(n=2), Pong, timeout=3),
    )
    assert {r.n for r in replies} == {1, 2}


async def test_trace_context_crosses_the_bus(bus: Bus) -> None:
    exporter = InMemorySpanExporter()
    processor = telemetry.add_exporter(exporter)
    try:
        subject = _subject()

        async def handler(msg: Ping) -> Pong:
            return Pong(n=msg.n)

        await bus.subscribe(subject, Ping, handler)
        tracer = telemetry.tracer("test")
        with tracer.start_as_current_span("root") as root:
            await bus.request(subject, Ping(n=1), Pong, timeout=2)
        await asyncio.sleep(0.05)
        spans = {s.name: s for s in exporter.get_finished_spans()}
        publish = spans[f"publish {subject}"]
        process = spans[f"process {subject}"]
        trace_id = root.get_span_context().trace_id
        assert publish.context.trace_id == trace_id
        assert process.context.trace_id == trace_id
        assert process.parent is not None
        assert process.parent.span_id == publish.context.span_id
        assert process.attributes["messaging.system"] == "nats"
    finally:
        processor.shutdown()


def test_subjects_refuse_tokens_that_would_change_the_subject() -> None:
    assert subjects.agent("client", "abc-123") == "zg.v1.agent.client.abc-123"
    assert subjects.event("policy", "deleted") == "zg.v1.events.policy.deleted"
    for bad in ["a.b", "*", ">", "", "a b"]:
        with pytest.raises(ValueError):
            subjects.agent("client", bad)
    with pytest.raises(ValueError):
        subjects.agent("server", "x")  # type: ignore[arg-type]
