"""A worker's side of the link to its supervisor (``statewire serve --worker-of FD``): the
worker says it is ``ready``, answers for its metrics, asks to be replaced (``retire``), and
drains or stops when told, or when the supervisor is gone. The supervisor's side and the
whole design: :mod:`statewire.workers`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Awaitable, Sequence
from typing import Any

from statewire import metrics
from statewire.error import ReactorNotRunning

log = logging.getLogger("statewire.workers")


class WorkerLink:
    """A worker's side of the link to its supervisor (``serve --worker-of FD``).

    It writes ``ready`` once every one of ``ports`` (the endpoints' ``listen`` results)
    accepts; on ``metrics`` it answers ``metrics N`` and the N bytes of ``counting``'s
    exposition (an empty one when it counts nothing); on ``drain`` it drains the reactor
    (stops accepting, asks the connections with a graceful close of their own to use it,
    waits at most ``drain_timeout`` seconds for the connections to finish:
    :meth:`statewire._reactor.Reactor.drain`) and stops it; at the end
    of the stream (the supervisor is gone) it stops the reactor gracefully.
    """

    def __init__(
        self,
        reactor: Any,
        fileno: int,
        ports: Sequence[Awaitable[Any]],
        drain_timeout: float,
        counting: metrics.Metrics | None = None,
    ) -> None:
        self.reactor = reactor
        self.drain_timeout = drain_timeout
        self.metrics = counting
        self._heard = b""
        #: what is to be written to the supervisor, in order: the metrics asked and not
        #: answered yet (their numbers), ``retire``; and whether draining
        self._outbox: collections.deque[int | bytes] = collections.deque()
        self._draining = False
        self._retired = False
        self._link = socket.socket(fileno=fileno)
        self._link.setblocking(False)
        self._ports = list(ports)
        self._tasks: set[asyncio.Task[None]] = set()
        reactor.loop.add_reader(self._link.fileno(), self._readable)
        reactor.callWhenRunning(self._spawn, self._ready())

    def _spawn(self, coroutine: Any) -> None:
        task = self.reactor.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ready(self) -> None:
        await asyncio.gather(*self._ports)
        with contextlib.suppress(OSError):
            self._link.send(b"ready\n")

    def _readable(self) -> None:
        try:
            data = self._link.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            log.warning("the supervisor is gone: stopping")
            self.reactor.loop.remove_reader(self._link.fileno())
            self._stop()
            return
        *lines, self._heard = (self._heard + data).split(b"\n")
        if len(self._heard) > 64:  # (the supervisor's words are short)
            self._heard = b""
        for line in lines:
            word, _, number = line.partition(b" ")
            if word == b"metrics" and number.isdigit() and len(number) < 20:
                self._post(int(number))
            elif line == b"drain" and not self._draining:
                # (the link is still read: a draining worker answers for its metrics, and
                # stops if the supervisor goes)
                self._draining = True
                self._spawn(self._drain())

    def _post(self, entry: int | bytes) -> None:
        """Write ``entry`` after what is being written: a metrics answer (its number) or a
        line (``retire``)."""
        self._outbox.append(entry)
        if len(self._outbox) == 1:  # (else the writing task is at work)
            self._spawn(self._write())

    async def _write(self) -> None:
        """Write what is posted, one after another (two writes at once would interleave):
        for metrics asked, ``metrics ID N`` and the N bytes of the exposition made then."""
        outbox = self._outbox
        while outbox:
            entry = outbox[0]
            if isinstance(entry, bytes):
                data = entry
            else:
                text = b"" if self.metrics is None else self.metrics.exposition().encode()
                data = b"metrics %d %d\n" % (entry, len(text)) + text
            try:
                await self.reactor.loop.sock_sendall(self._link, data)
            except OSError:  # (the supervisor gone: its end is read next)
                outbox.clear()
                return
            outbox.popleft()

    async def _drain(self) -> None:
        log.info("draining (at most %s s)", self.drain_timeout)
        await self.reactor.drain(self.drain_timeout)
        self._stop()

    def _stop(self) -> None:
        with contextlib.suppress(ReactorNotRunning):  # stopping already
            self.reactor.stop()

    def retire(self) -> None:
        """Ask the supervisor for this worker's replacement (``retire``; the request
        limit reached, :mod:`statewire._request_limit`): it answers ``drain`` once the new
        worker accepts. Asked once; nothing while draining already."""
        if self._retired or self._draining:
            return
        self._retired = True
        self._post(b"retire\n")

    def close(self) -> None:
        """Stop listening to the supervisor (the reactor has stopped)."""
        with contextlib.suppress(ValueError, OSError):
            self.reactor.loop.remove_reader(self._link.fileno())
        self._link.close()
