"""DNS over TCP, the server side (RFC 1035 §4.2.2, RFC 7766 §6.2): one connection's loop.

The client's stub resolver and the gateway's DNS server both answer queries
framed with a 2-byte length, pipelined, on connections that close after
``idle`` seconds without a whole query; :func:`serve_connection` is that loop
for both. ``answer(query)`` gives the answer to write, or ``None`` when no
answer is due (the connection stays open).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

#: The largest message a 2-byte length frames.
MAX_MESSAGE: Final = 65535


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Callable[[bytes], Awaitable[bytes | None]],
    *,
    idle: float,
) -> None:
    """Answer the connection's queries in order until it ends, breaks or idles; close it."""
    try:
        while True:
            head = await asyncio.wait_for(reader.readexactly(2), idle)
            query = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), idle)
            reply = await answer(query)
            if reply is None or len(reply) > MAX_MESSAGE:
                continue
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
