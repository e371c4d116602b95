"""Replies of the sockets read in one batch leave at the batch's end
(``statewire.runtime.pollers``): real sockets on loopback, three clients whose requests are
all waiting when the loop next polls. Each read sees no client holding a reply yet, and
every client gets its own; past ``FLUSH_SPAN`` the replies waiting go before the next."""

from __future__ import annotations

import asyncio
import socket
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
        self.factory.seen.append((data, [_holds(sock) for sock in self.factory.clients]))
        self.transport.write(b"ok:" + data)


class Watching(Factory):
    protocol = Answer

    def __init__(self) -> None:
        self.clients: list[socket.socket] = []
        self.seen: list[tuple[bytes, list[bool]]] = []
        self.connected = 0


def _holds(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(16, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def _run(reactor: Reactor) -> Any:
    async def body() -> tuple[list[tuple[bytes, list[bool]]], list[bytes]]:
        factory = Watching()
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
    # each read sends the replies waiting before its own waits: the third read of the
    # batch sees the first's reply, the second's still waiting with it
    assert [sum(held) for _, held in seen] == [0, 0, 1]
