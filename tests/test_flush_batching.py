"""Replies of the sockets read in one batch leave at the batch's end
(``statewire.runtime.pollers``): real sockets on loopback, three clients whose requests are
all waiting when the loop next polls. Each read sees no client holding a reply yet, and
every client gets its own; past ``FLUSH_SPAN`` the replies waiting go before the next."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from runtime_helpers import HOST, listen, scenario

from statewire._reactor import Reactor
from statewire.protocol import Factory, Protocol
from statewire.runtime import pollers

CLIENTS = 3


class Answer(Protocol):
    """Answers each read with ``ok:`` and what it read; notes, as it reads, which of the
    test's clients hold a reply already."""

    factory: Watching

    def connectionMade(self) -> None:
        self.factory.connected += 1

    def dataReceived(self, data: bytes) -> None:
        factory = self.factory
        factory.seen.append((data, [_holds(sock) for sock in factory.clients]))
        self.transport.write(b"ok:" + data)
        if len(factory.seen) == factory.slow_read:
            time.sleep(0.005)  # a read that takes longer than FLUSH_SPAN
        if data == b"kill":
            factory.killed.transport.abortConnection()


class Watching(Factory):
    protocol = Answer

    def __init__(self, slow_read: int = 0) -> None:
        self.clients: list[socket.socket] = []
        self.seen: list[tuple[bytes, list[bool]]] = []
        self.connected = 0
        #: the read (1, 2...) that lasts longer than the span (0: none)
        self.slow_read = slow_read
        self.killed: Any = None


def _holds(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(16, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def _run(reactor: Reactor, slow_read: int = 0) -> Any:
    async def body() -> tuple[list[tuple[bytes, list[bool]]], list[bytes]]:
        factory = Watching(slow_read)
        port = await listen(reactor, factory)
        loop = asyncio.get_running_loop()
        for _ in range(CLIENTS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            await loop.sock_connect(sock, (HOST, port))
            factory.clients.append(sock)
        for _ in range(200):  # every connection accepted and made
            if factory.connected == CLIENTS:
                break
            await asyncio.sleep(0.01)
        try:
            for number, sock in enumerate(factory.clients):  # all sent before the loop polls
                sock.send(b"%d" % number)
            replies = []
            for sock in factory.clients:
                replies.append(await asyncio.wait_for(loop.sock_recv(sock, 16), 10))
            return factory.seen, replies
        finally:
            for sock in factory.clients:
                sock.close()

    return body()


def test_the_replies_of_one_batch_leave_at_its_end() -> None:
    seen, replies = scenario(_run)
    assert replies == [b"ok:%d" % n for n in range(CLIENTS)]
    assert sorted(data for data, _ in seen) == [b"%d" % n for n in range(CLIENTS)]
    # no read saw a reply of its batch already sent
    assert all(not any(held) for _, held in seen), seen


def test_past_the_span_the_replies_waiting_leave_before_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pollers, "FLUSH_SPAN", -1.0)  # every batch has run too long
    seen, replies = scenario(_run)
    assert replies == [b"ok:%d" % n for n in range(CLIENTS)]
    # after each read, what waits goes: each read sees the replies of the reads before it
    assert [sum(held) for _, held in seen] == [0, 1, 2]


def test_after_a_read_that_outlasts_the_span_what_waits_leaves() -> None:
    seen, replies = scenario(lambda reactor: _run(reactor, slow_read=2))
    assert replies == [b"ok:%d" % n for n in range(CLIENTS)]
    # the second read took 5 ms: its reply and the first's left before the third read
    assert [sum(held) for _, held in seen] == [0, 0, 2]


class Killing(Answer):
    def connectionMade(self) -> None:
        super().connectionMade()
        if self.factory.killed is None:
            self.factory.killed = self


def test_a_connection_aborted_later_in_the_batch_still_sent_its_reply() -> None:
    """A reads and is answered; B, read after it in the same batch, aborts A (a "kill
    client" command): A's reply, held for the batch's end, leaves before the abort, as it
    did when replies left at once."""

    def run(reactor: Reactor) -> Any:
        async def body() -> tuple[bytes, bytes]:
            factory = Watching()
            factory.protocol = Killing
            port = await listen(reactor, factory)
            loop = asyncio.get_running_loop()
            for _ in range(2):  # A, then B (A connected first: the one aborted)
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                await loop.sock_connect(sock, (HOST, port))
                factory.clients.append(sock)
                for _ in range(200):
                    if factory.connected == len(factory.clients):
                        break
                    await asyncio.sleep(0.01)
            a, b = factory.clients
            try:
                a.send(b"req")
                b.send(b"kill")
                got_b = await asyncio.wait_for(loop.sock_recv(b, 16), 10)
                got_a = await asyncio.wait_for(loop.sock_recv(a, 16), 10)
                return got_a, got_b
            finally:
                a.close()
                b.close()

        return body()

    got_a, got_b = scenario(run)
    assert got_b == b"ok:kill"
    assert got_a == b"ok:req"
