"""The DNS-over-TCP serve loop on a real loopback connection: framing, pipelining, idling."""

from __future__ import annotations

import asyncio

from zerogate.common.dnstcp import serve_connection


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


async def _read(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(2), 5)
    return await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), 5)


async def test_pipelined_queries_are_answered_in_order_and_silence_is_skipped() -> None:
    asked: list[bytes] = []

    async def answer(query: bytes) -> bytes | None:
        asked.append(query)
        if query == b"slow":
            await asyncio.sleep(0.05)
        return None if query == b"none" else b"re:" + query

    server = await asyncio.start_server(
        lambda r, w: serve_connection(r, w, answer, idle=5.0), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # three queries in one segment, the second needing no answer, one cut in two writes
        writer.write(_frame(b"slow") + _frame(b"none") + _frame(b"q3")[:3])
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(_frame(b"q3")[3:])
        await writer.drain()
        assert await _read(reader) == b"re:slow"
        assert await _read(reader) == b"re:q3"
        assert asked == [b"slow", b"none", b"q3"]
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_an_idle_connection_is_closed() -> None:
    async def answer(query: bytes) -> bytes | None:
        return query

    server = await asyncio.start_server(
        lambda r, w: serve_connection(r, w, answer, idle=0.2), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\x00")  # half a length, then nothing
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
