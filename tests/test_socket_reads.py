"""How much statewire's socket transport asks of the socket a read: ``READ_SIZE`` (64 KiB),
``BIG_READ_SIZE`` (256 KiB) after a read that brought 64 KiB or more, until one brings
less. Real sockets on 127.0.0.1; the server pauses reading while the client's bytes queue
in the kernel, in a receive buffer the test sets large enough to hold them all (a
kernel's default may hold less than one read), so what each read can bring does not
depend on timing or on the machine."""

from __future__ import annotations

import asyncio
import socket

from runtime_helpers import HOST, client_socket, scenario

from statewire._reactor import Reactor
from statewire.protocol import Factory, Protocol
from statewire.runtime.socket_transport import BIG_READ_SIZE, READ_SIZE

QUEUED = 512 * 1024


def test_reads_grow_while_they_come_full_and_shrink_after_a_short_one() -> None:
    sizes: list[int] = []
    served: list[Protocol] = []

    class Counting(Protocol):
        def connectionMade(self) -> None:
            self.transport.pauseProducing()
            served.append(self)

        def dataReceived(self, data: bytes) -> None:
            sizes.append(len(data))

    async def received(total: int) -> None:
        while sum(sizes) < total:  # (bounded by the scenario's timeout)
            await asyncio.sleep(0.005)

    async def body(reactor: Reactor) -> None:
        listening = reactor.listenTCP(0, Factory.forProtocol(Counting), interface=HOST)
        # (accepted connections inherit it; set before any handshake, so windows follow)
        listening.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * QUEUED)
        await listening.ready
        port = listening.getHost().port
        loop = asyncio.get_running_loop()
        sock = await client_socket(port, b"x" * QUEUED)
        while not served:
            await asyncio.sleep(0.005)
        transport = served[0].transport
        transport.resumeProducing()
        await received(QUEUED)
        assert sizes[0] == READ_SIZE  # a first read asks READ_SIZE, and the kernel has more
        assert READ_SIZE < max(sizes) <= BIG_READ_SIZE  # then larger reads
        # a short read: the next one asks READ_SIZE again
        transport.pauseProducing()
        await loop.sock_sendall(sock, b"y" * 10)
        transport.resumeProducing()
        await received(QUEUED + 10)
        transport.pauseProducing()
        before = len(sizes)
        await loop.sock_sendall(sock, b"z" * QUEUED)
        transport.resumeProducing()
        await received(2 * QUEUED + 10)
        assert sizes[before] == READ_SIZE
        assert max(sizes[before:]) > READ_SIZE
        sock.close()

    scenario(body, timeout=30)
