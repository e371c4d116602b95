"""Listening ports: accepting connections on statewire's socket transport (or, with
``native_transports``, on the loop's own server), and stopping.

:class:`Counted` is what every owner of connections is: the reactor counts their
connections (and closes them when it stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import socket
import ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from statewire.address import Address, UNIXAddress, from_sockaddr
from statewire.runtime.asyncio_transport import Bridge
from statewire.runtime.connection import Connection, Owner
from statewire.runtime.socket_transport import SocketTransport

if TYPE_CHECKING:
    from statewire._reactor import Reactor

log = logging.getLogger("statewire")

#: accept() errors that mean "out of descriptors or memory": wait, then accept again
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: seconds to wait before accepting again after running out of descriptors
ACCEPT_RETRY_DELAY = 1.0


class Counted(Owner):
    """An owner whose connections the reactor counts (and closes when it stops)."""

    def track(self, connection: Connection) -> None:
        self.reactor.connections.add(connection)

    def untrack(self, connection: Connection) -> None:
        self.reactor.connections.discard(connection)


class Port(Counted):
    """A listening port: ``getHost()``, ``stopListening()``.

    A port accepts by itself, as many connections per wake-up as its backlog, and serves
    each with a :class:`~statewire.runtime.socket_transport.SocketTransport` (TLS from the
    first byte on a ``listenSSL`` port: the protocol is connected before the handshake,
    as Twisted connects it); with ``Reactor.native_transports`` it uses the loop's own
    server and transports (asyncio's TLS: connected once the handshake completes).
    Out of file descriptors, it closes the sockets still lingering after their
    connections (:mod:`statewire.runtime.lingering`) and accepts again; with none, it
    logs the error, stops accepting for
    :data:`ACCEPT_RETRY_DELAY` seconds (pending clients wait in the backlog) and retries.
    An ``adopted`` socket (``adoptStreamPort``) belongs to whoever made it: stopping the
    port closes our duplicate of it but never removes its UNIX socket file.
    """

    def __init__(
        self,
        reactor: Reactor,
        sock: socket.socket,
        factory: Any,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 50,
        adopted: bool = False,
    ) -> None:
        self.reactor = reactor
        self.socket = sock
        self.factory = factory
        self._ssl = ssl_context
        self._backlog = backlog
        self._unix = sock.family == socket.AF_UNIX
        self._path = sock.getsockname() if self._unix else None
        self._adopted = adopted
        self._server: asyncio.Server | None = None
        self._accepting = False
        self._retry: asyncio.TimerHandle | None = None
        self._stopped = False
        loop = reactor.loop
        try:
            factory.doStart()
        except BaseException:
            # A port whose factory cannot start must not stay bound: clients would queue
            # in its backlog with nobody ever to accept them.
            sock.close()
            self._remove_socket_file()
            raise
        waited: asyncio.Future[None] | None = None
        try:
            starting = _before_serving(factory)
            if starting is not None and not loop.is_running():
                # before the loop runs (``statewire serve``): to its end now, so that a
                # failure raises here, as a failing startFactory does
                waited = asyncio.ensure_future(starting, loop=loop)
                loop.run_until_complete(waited)
                starting = None
        except BaseException:
            with contextlib.suppress(Exception):
                factory.doStop()  # (its stopFactory may cancel the work it began)
            if waited is not None and not waited.done():  # interrupted (Ctrl-C)
                waited.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(waited)  # the work ends, nothing left pending
            sock.close()
            self._remove_socket_file()
            raise
        reactor.ports.add(self)
        reactor.factories.add(factory)
        #: resolves to this port once it accepts connections
        self.ready: asyncio.Future[Port] = loop.create_future()
        if factory.noisy:
            log.info("%s starting on %s", type(factory).__name__, self._where())
        #: what the port waits for before it accepts (``beforeServing``'s), if anything
        self._starting = starting
        self._task = loop.create_task(self._serve())

    def _where(self) -> str:
        host = self.getHost()
        if isinstance(host, UNIXAddress):
            return str(host.name)
        return f"{host.host}:{host.port}"

    async def _serve(self) -> None:
        if self._starting is not None and not await self._started(self._starting):
            return
        loop = self.reactor.loop
        if not self.reactor.native_transports:  # (TLS too: statewire's TLS session)
            self._start_accepting()
            return
        if self._unix:
            server = await loop.create_unix_server(
                self._bridge, sock=self.socket, ssl=self._ssl, backlog=self._backlog
            )
        else:
            server = await loop.create_server(
                self._bridge, sock=self.socket, ssl=self._ssl, backlog=self._backlog
            )
        self._server = server
        if not self.ready.done():
            self.ready.set_result(self)

    async def _started(self, starting: Awaitable[None]) -> bool:
        """Wait for the factory's ``beforeServing``; false (the port stopped, ``ready``
        failed) if it raised."""
        try:
            await starting
        except Exception as error:
            name = type(self.factory).__name__
            log.error("%s did not start serving on %s: %s", name, self._where(), error)
            if not self.ready.done():
                self.ready.set_exception(error)
                self.ready.exception()  # (logged: an unawaited ready must not warn again)
            self.stopListening()
            return False
        return True

    def _start_accepting(self) -> None:
        self._retry = None
        if self._stopped:
            return
        self._accepting = True
        self.reactor.loop.add_reader(self.socket.fileno(), self._accept)
        if not self.ready.done():
            self.ready.set_result(self)

    def _accept(self) -> None:
        sock = self.socket
        try:
            poller = self.reactor.poller()  # its epoll set takes a descriptor too
        except OSError as error:
            if error.errno not in _EXHAUSTED:
                raise
            self._exhausted(error)
            return
        for _ in range(max(self._backlog, 1)):
            try:
                connection, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno not in _EXHAUSTED:
                    continue  # that one connection is gone (ECONNABORTED...): the next
                if poller.stop_lingering():
                    continue  # (descriptors freed: the lingering sockets closed at once)
                self._exhausted(error)
                return
            try:
                SocketTransport.accepted(self, poller, connection, peer, self.factory, self._ssl)
            except OSError as error:  # reset before we could set it up: the next one
                log.info("%s: dropped a connection: %s", self._where(), error)
                connection.close()

    def _exhausted(self, error: OSError) -> None:
        """Out of descriptors (or memory): stop accepting, try again in a moment."""
        log.error(
            "%s: cannot accept connections (%s); retrying in %s s",
            self._where(),
            error.strerror,
            ACCEPT_RETRY_DELAY,
        )
        self._stop_accepting()
        loop = self.reactor.loop
        self._retry = loop.call_later(ACCEPT_RETRY_DELAY, self._start_accepting)

    def _stop_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            self.reactor.loop.remove_reader(self.socket.fileno())

    def _bridge(self) -> Bridge:
        return Bridge(self, self.factory)

    def getHost(self) -> Address:
        """The address this port listens on (the real port when 0 was asked for)."""
        if self._unix:
            return from_sockaddr(True, self._path)
        return from_sockaddr(False, self.socket.getsockname())

    def stopListening(self) -> asyncio.Future[None]:
        """Stop accepting (open connections stay); the factory's ``doStop`` runs.

        The port stops even when ``stopFactory`` raises: the error is logged with its
        traceback and the returned future fails with it (as Twisted's deferred does).
        """
        done: asyncio.Future[None] = self.reactor.loop.create_future()
        if self._stopped:
            done.set_result(None)
            return done
        self._stopped = True
        if not self.ready.done():
            self.ready.cancel()  # (stopped before it accepted: beforeServing still waited)
        where = self._where()  # before the socket closes
        self.reactor.ports.discard(self)
        if self._retry is not None:
            self._retry.cancel()
        if self._server is not None:
            self._server.close()  # and the socket with it
        else:
            self._stop_accepting()
            self._task.cancel()
            self.socket.close()
        starting = self._starting
        if inspect.iscoroutine(starting) and inspect.getcoroutinestate(starting) == "CORO_CREATED":
            starting.close()  # (stopped before its task began: never to be awaited)
        self._remove_socket_file()
        name = type(self.factory).__name__
        if self.factory.noisy:
            log.info("%s stopped listening", name)
        try:
            self.factory.doStop()
        except Exception as error:
            log.exception("%s.stopFactory raised after %s stopped listening", name, where)
            done.set_exception(error)
            done.exception()  # logged already: an unawaited future must not warn again
        else:
            done.set_result(None)
        return done

    def _remove_socket_file(self) -> None:
        # an abstract-namespace address (a leading NUL) has no file to remove
        if self._adopted:
            return
        if self._unix and isinstance(self._path, str) and self._path[:1] not in ("", "\0"):
            with contextlib.suppress(OSError):
                os.unlink(self._path)

    def __repr__(self) -> str:
        return f"<Port {self.getHost()} {type(self.factory).__name__}>"


def _before_serving(factory: Any) -> Awaitable[None] | None:
    """What the factory's ``beforeServing`` returned to await, if anything (a factory
    that is not statewire's may have no such method)."""
    hook = getattr(factory, "beforeServing", None)
    if hook is None:
        return None
    result = hook()
    return result if inspect.isawaitable(result) else None
