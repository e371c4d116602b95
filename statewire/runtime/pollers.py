"""What tells statewire's socket transports that their sockets are ready.

All the sockets of one loop share one :class:`Poller`: an :class:`EpollPoller` (one epoll
set, which the loop watches as a single reader) where the platform has epoll, else a
:class:`LoopPoller` (each socket registered with the loop's ``add_reader`` and
``add_writer``). What a poller watches is a :class:`Watched` (a socket transport): it
calls :meth:`Poller.update` whenever what it waits for changes, and the poller calls it
back directly, with no layer between the ready socket and ``recv``.

Replies are sent at the end of the batch of ready sockets (:meth:`Poller.defer_flush`): a
transport that read, and was written to while its protocol handled the read, sends once
every socket of the batch was read, or after the first read that ends :data:`FLUSH_SPAN`
seconds or more after the batch's first deferred send. So a peer that keeps many
connections busy (a load balancer, a benchmark) is woken by one reply for many, rather
than by each; over loopback on a virtual machine a wake-up costs more than a small
request's whole handling. What a reply waits is the reads of the other sockets ready at
the same moment: the span, and at most one read more (a read is not interrupted). A
transport aborted before the batch's end sends what it deferred first
(:meth:`Poller.flush_deferred`), as it would have before the abort.
"""

from __future__ import annotations

import asyncio
import select
import time
from typing import Any

#: the longest a reply waits for the other sockets of its batch to be read (seconds)
FLUSH_SPAN = 0.001


class Watched:
    """What a poller watches (:class:`~statewire.runtime.socket_transport.SocketTransport`).

    The poller reads these members, declared here as its contract with the transport;
    the transport keeps them current and calls :meth:`Poller.update` when either flag
    changes.
    """

    __slots__ = ()

    #: whether the socket is to be watched for reads
    _reading: bool
    #: bytes the socket has not taken yet (``None``: nothing waits, no write interest)
    _pending: bytearray | None

    def _read_ready(self) -> None:
        """The socket is readable (or hung up)."""
        raise NotImplementedError

    def _write_ready(self) -> None:
        """The socket is writable (or hung up)."""
        raise NotImplementedError

    def _flush(self) -> None:
        """Send what was written."""
        raise NotImplementedError


#: poller interest bits
READ = 1
WRITE = 2


class Poller:
    """What tells the socket transports of one loop that their sockets are ready:
    :class:`EpollPoller`, or :class:`LoopPoller` where epoll is missing."""

    loop: asyncio.AbstractEventLoop
    #: the closed connections' sockets still read before they close, oldest first (see
    #: :mod:`statewire.runtime.lingering`): closed with the poller
    lingering: dict[Any, None]

    @staticmethod
    def make(loop: asyncio.AbstractEventLoop) -> Poller:
        """An epoll poller where the platform has epoll, else one on the loop's readers."""
        if hasattr(select, "epoll"):
            return EpollPoller(loop)
        return LoopPoller(loop)

    def update(self, fd: int, transport: Watched, interest: int) -> None:
        """Watch ``fd`` for ``interest`` (``READ | WRITE``; 0: not at all)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop watching (the reactor shut down, or its loop changed): the sockets still
        lingering close now."""
        self.stop_lingering()

    def stop_lingering(self) -> int:
        """Close every socket still lingering now (out of descriptors, or closing); how
        many there were."""
        lingering = list(self.lingering)
        for lingerer in lingering:
            lingerer.close()
        return len(lingering)

    def defer_flush(self, transport: Watched) -> bool:
        """From a transport that read, in a batch of ready sockets: its :meth:`Watched._flush`
        is called at the batch's end, or once the batch has run :data:`FLUSH_SPAN` (True);
        False outside a batch, or where the poller has none."""
        return False

    def flush_deferred(self, transport: Watched) -> None:
        """Send now what ``transport`` deferred to the end of the batch, if it did (it
        is about to close at once: what it wrote in its read would have left by now)."""


class EpollPoller(Poller):
    """Every socket transport of one loop, in one epoll set the loop watches.

    Level-triggered; a socket is in the set only while its transport reads or has bytes
    to send (so a paused, hung-up socket does not wake the loop). When the loop reports
    the set readable, one ``epoll.poll(0)`` returns the ready sockets and each transport
    is called directly.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lingering = {}
        #: inside a batch: the transports whose sends wait for its end, and since when
        self._deferred: list[Watched] | None = None
        self._since = 0.0
        self._epoll = select.epoll()
        self._watched: dict[int, Watched] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def update(self, fd: int, transport: Watched, interest: int) -> None:
        mask = (select.EPOLLIN if interest & READ else 0) | (
            select.EPOLLOUT if interest & WRITE else 0
        )
        watched = self._watched
        if fd in watched:
            if mask:
                self._epoll.modify(fd, mask)
            else:
                del watched[fd]
                self._epoll.unregister(fd)
        elif mask:
            self._epoll.register(fd, mask)
            watched[fd] = transport

    def _ready(self) -> None:
        watched = self._watched
        self._deferred = []
        try:
            for fd, events in self._epoll.poll(0):
                transport = watched.get(fd)
                if transport is None:
                    continue
                if events & _READABLE and transport._reading:
                    transport._read_ready()
                if events & _WRITABLE and transport._pending is not None:
                    transport._write_ready()
                deferred = self._deferred
                if deferred and time.monotonic() - self._since > FLUSH_SPAN:
                    # the batch has run long (a slow read among them): what waits goes now
                    self._deferred = []
                    _flush_all(deferred)
        finally:
            deferred, self._deferred = self._deferred, None
            if deferred:
                _flush_all(deferred)

    def defer_flush(self, transport: Watched) -> bool:
        deferred = self._deferred
        if deferred is None:
            return False
        if not deferred:
            self._since = time.monotonic()
        deferred.append(transport)
        return True

    def flush_deferred(self, transport: Watched) -> None:
        deferred = self._deferred
        if deferred and transport in deferred:
            deferred.remove(transport)
            transport._flush()

    def close(self) -> None:
        super().close()
        if not self.loop.is_closed():
            self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()


def _flush_all(transports: list[Watched]) -> None:
    for transport in transports:
        transport._flush()  # (a transport's flush reports its own failures)


_READABLE = (
    getattr(select, "EPOLLIN", 1) | getattr(select, "EPOLLHUP", 0) | getattr(select, "EPOLLERR", 0)
)
_WRITABLE = (
    getattr(select, "EPOLLOUT", 4)
    | getattr(select, "EPOLLHUP", 0)
    | getattr(select, "EPOLLERR", 0)
)


class LoopPoller(Poller):
    """The fallback: each socket registered with the loop's ``add_reader``/``add_writer``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lingering = {}
        self._interest: dict[int, int] = {}

    def update(self, fd: int, transport: Watched, interest: int) -> None:
        before = self._interest.pop(fd, 0)
        if interest:
            self._interest[fd] = interest
        loop = self.loop
        if interest & READ and not before & READ:
            loop.add_reader(fd, transport._read_ready)
        elif before & READ and not interest & READ:
            loop.remove_reader(fd)
        if interest & WRITE and not before & WRITE:
            loop.add_writer(fd, transport._write_ready)
        elif before & WRITE and not interest & WRITE:
            loop.remove_writer(fd)
