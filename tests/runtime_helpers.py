"""Helpers for the runtime tests: run a scenario on a fresh reactor, talk to it over sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from statewire._reactor import Reactor

T = TypeVar("T")


def scenario(body: Callable[[Reactor], Awaitable[T]], timeout: float = 60) -> T:
    """Run ``body(reactor)`` inside a fresh asyncio loop, then shut the reactor down."""

    async def main() -> T:
        reactor = Reactor()
        try:
            return await asyncio.wait_for(body(reactor), timeout)
        finally:
            await reactor.shutdown()

    return asyncio.run(main())


async def exchange(host: str, port: int, data: bytes, expect: int) -> bytes:
    """Connect, send ``data``, read ``expect`` bytes, close."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    got = await reader.readexactly(expect)
    writer.close()
    await writer.wait_closed()
    return got


async def read_all(host: str, port: int, send: bytes = b"") -> bytes:
    """Connect, optionally send, read until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    if send:
        writer.write(send)
    data = await reader.read()
    writer.close()
    return data
