"""Serve the HTTP machine in memory for a test: bytes in (in any chunks), responses out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.testing.memory import Clock, StringTransport

#: loop turns given to the handlers after each chunk (they finish in a few)
TURNS = 50


async def application(request: Request, response: Response) -> None:
    """Answers what it got: method, target, body length and body (read whole)."""
    body = await request.body.read()
    trailers = b"".join(b"%s=%s;" % pair for pair in request.body.trailers)
    await response.send(
        200,
        [("Content-Type", "text/plain")],
        b"%s %s %d %s %s" % (request.method, request.target, len(body), body, trailers),
    )


@dataclass
class Served:
    """What the server wrote, whether it closed, and the state it was left in."""

    output: bytes
    closed: bool
    state: str


def serve(
    chunks: list[bytes],
    handler: object = application,
    *,
    max_body: int = 1 << 20,
    clock: Clock | None = None,
    advance: float = 0.0,
    half_close: bool = False,
) -> Served:
    """Feed ``chunks`` to one server connection, letting handlers run between them; then,
    with ``half_close``, the end of the client's stream (``readConnectionLost``)."""

    async def main() -> Served:
        factory = HTTPFactory(handler, max_body=max_body, date=False)  # type: ignore[arg-type]
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = clock or Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        for chunk in chunks:
            protocol.dataReceived(chunk)
            for _ in range(TURNS):
                await asyncio.sleep(0)
        if half_close:
            protocol.readConnectionLost()
            for _ in range(TURNS):
                await asyncio.sleep(0)
        if advance:
            assert clock is not None
            clock.advance(advance)
            for _ in range(TURNS):
                await asyncio.sleep(0)
        state = protocol.machine_state
        protocol.connectionLost()
        for _ in range(TURNS):
            await asyncio.sleep(0)
        return Served(transport.value(), transport.disconnecting, state)

    return asyncio.run(main())


async def serve_until_quiet(
    reads: list[bytes], factory: HTTPFactory, *, half_close: bool = False
) -> tuple[bytes, bool]:
    """Feed ``reads`` to one connection of ``factory`` (a few loop turns after each), then,
    with ``half_close``, the end of the client's stream; return what it wrote once 20
    turns pass with nothing more, and whether it is closing."""
    protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    for data in reads:
        protocol.dataReceived(data)
        for _ in range(3):
            await asyncio.sleep(0)
    if half_close:
        protocol.readConnectionLost()
    quiet = 0
    while quiet < 20:  # until the handlers and the held framing are done
        before = len(transport.value())
        await asyncio.sleep(0)
        quiet = quiet + 1 if len(transport.value()) == before else 0
    return transport.value(), transport.disconnecting


def responses(wire: bytes) -> list[tuple[int, bytes]]:
    """The (status, body) of each response in ``wire``, read by h11's client."""
    if not wire:
        return []  # (h11 takes b"" as the end of the stream)
    client = h11.Connection(h11.CLIENT)
    client.receive_data(wire)
    found: list[tuple[int, bytes]] = []
    status, body = 0, b""
    while True:
        # h11's client needs a request for each response; the method does not matter
        if client.our_state is h11.IDLE:
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
        event = client.next_event()
        if isinstance(event, h11.Response):
            status, body = event.status_code, b""
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            found.append((status, body))
            if client.their_state is h11.MUST_CLOSE:
                return found
            client.start_next_cycle()
        else:
            return found
