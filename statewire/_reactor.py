"""The reactor: Twisted's ``reactor`` API on an asyncio event loop.

It runs on asyncio's default loop, or on uvloop after :meth:`Reactor.use_uvloop`. Ports bind
at once (so a port in use raises :class:`~statewire.error.CannotListenError` before
``run()``) and start accepting when the loop runs. Inside an asyncio program that already
runs a loop, the reactor uses that loop and ``run()`` is not needed.

Graceful stop (``stop()``, SIGINT, SIGTERM): stop accepting, flush what every connection
has written and close it (waiting at most ``shutdown_timeout`` seconds, then aborting the
rest), so every protocol gets ``connectionLost``; every factory gets ``stopFactory``; then
``run()`` returns. A second SIGINT or SIGTERM during that stop aborts the connections still
open instead of waiting for them.

User code never stops the stop: a ``stopFactory``, ``connectionLost`` or client factory hook
that raises is logged with its traceback and the shutdown goes on, so ``run()`` always
returns. Arguments that would corrupt the loop are refused where they are given: a delay
that is NaN, infinite or negative (``ValueError``), a callback that is not callable
(``TypeError``), ``stop()`` when not running (:class:`~statewire.error.ReactorNotRunning`).

The connections, transports and pollers beneath, the delayed calls and the listening
sockets are in :mod:`statewire.runtime` (its docstring has the map).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from statewire.address import Address, UNIXAddress, from_sockaddr
from statewire.error import ConnectError, Failure, ReactorNotRunning
from statewire.error import TimeoutError as ConnectTimeout
from statewire.runtime.asyncio_transport import Bridge
from statewire.runtime.connecting import Opened, tcp_socket, unix_socket
from statewire.runtime.connection import Connection, Owner
from statewire.runtime.delayed_call import AlreadyCalled as AlreadyCalled
from statewire.runtime.delayed_call import AlreadyCancelled as AlreadyCancelled
from statewire.runtime.delayed_call import DelayedCall, checked_callable, checked_delay
from statewire.runtime.listening import adopted_stream, bound_tcp, bound_unix
from statewire.runtime.pollers import Poller
from statewire.runtime.socket_transport import SocketTransport

log = logging.getLogger("statewire")


#: accept() errors that mean "out of descriptors or memory": wait, then accept again
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: seconds to wait before accepting again after running out of descriptors
ACCEPT_RETRY_DELAY = 1.0
#: seconds a shutdown waits for aborted connections to report their loss
ABORT_GRACE = 1.0


class _Counted(Owner):
    """An owner whose connections the reactor counts (and closes when it stops)."""

    def track(self, connection: Connection) -> None:
        self.reactor._connections.add(connection)

    def untrack(self, connection: Connection) -> None:
        self.reactor._connections.discard(connection)


class Port(_Counted):
    """A listening port: ``getHost()``, ``stopListening()``.

    A plain (not TLS) port accepts by itself, as many connections per wake-up as its
    backlog, and serves each with a
    :class:`~statewire.runtime.socket_transport.SocketTransport`; a TLS port (or any
    port, with ``Reactor.native_transports``) uses the loop's own server and transports.
    Out of file descriptors, it logs the error, stops accepting for
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
        reactor._ports.add(self)
        #: resolves to this port once it accepts connections
        self.ready: asyncio.Future[Port] = loop.create_future()
        if factory.noisy:
            log.info("%s starting on %s", type(factory).__name__, self._where())
        self._task = loop.create_task(self._serve())

    def _where(self) -> str:
        host = self.getHost()
        if isinstance(host, UNIXAddress):
            return str(host.name)
        return f"{host.host}:{host.port}"

    async def _serve(self) -> None:
        loop = self.reactor.loop
        if self._ssl is None and not self.reactor.native_transports:
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
            poller = self.reactor._poller()  # its epoll set takes a descriptor too
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
                self._exhausted(error)
                return
            try:
                SocketTransport.accepted(self, poller, connection, peer, self.factory)
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
        where = self._where()  # before the socket closes
        self.reactor._ports.discard(self)
        if self._retry is not None:
            self._retry.cancel()
        if self._server is not None:
            self._server.close()  # and the socket with it
        else:
            self._stop_accepting()
            self._task.cancel()
            self.socket.close()
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


class Connector(_Counted):
    """A client connection attempt (``connectTCP``/``connectUNIX``)."""

    def __init__(
        self,
        reactor: Reactor,
        factory: Any,
        open_connection: Callable[[Callable[[], Bridge]], Any],
        destination: Address,
        timeout: float,
    ) -> None:
        self.reactor = reactor
        self.factory = factory
        self._open = open_connection
        self._destination = destination
        self.timeout = timeout
        self.protocol: Any = None
        self.state = "disconnected"
        self._task: asyncio.Task[None] | None = None
        #: whether the factory was started for the current attempt (stopped after it)
        self.factoryStarted = False
        #: resolves to the protocol once connected; fails when the attempt fails
        self.connected: asyncio.Future[Any] = reactor.loop.create_future()
        self.connect()

    def getDestination(self) -> Address:
        """Where this connector connects to."""
        return self._destination

    def connect(self) -> None:
        """Start (or restart, from ``clientConnectionLost``) a connection attempt.

        As in Twisted: only a disconnected connector connects (``RuntimeError`` otherwise),
        the factory is started again if the last attempt stopped it, and a reactor that is
        stopping fails the attempt at once.
        """
        if self.state != "disconnected":
            raise RuntimeError(f"can't connect in this state ({self.state})")
        if not self.factoryStarted:
            self.factory.doStart()
            self.factoryStarted = True
        self.state = "connecting"
        self.reactor._connectors.add(self)
        self._hook("startedConnecting", self)
        if self.reactor.stopping:
            self._failed(ConnectError("the reactor is stopping"))
            return
        self._task = self.reactor.loop.create_task(self._attempt())
        self._task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        # cancelled before it ran: the attempt never got to say it failed
        if task.cancelled() and self.state == "connecting":
            self._failed(ConnectError("connection attempt cancelled"))

    async def _attempt(self) -> None:
        bridge: Bridge | None = None

        def make() -> Bridge:
            nonlocal bridge
            bridge = Bridge(self, self.factory)
            return bridge

        try:
            opened = await asyncio.wait_for(self._open(make), self.timeout)
        except asyncio.CancelledError:
            self._failed(ConnectError("connection attempt cancelled"))
            return
        except ConnectError as error:  # the opener's own words (a HostnameEndpoint's)
            self._failed(error)
            return
        except asyncio.TimeoutError:
            self._failed(ConnectTimeout(f"connecting to {self._destination} timed out"))
            return
        except ConnectionRefusedError as error:
            from statewire.error import ConnectionRefusedError as Refused

            self._failed(Refused(str(error)))
            return
        except OSError as error:
            self._failed(ConnectError(str(error)))
            return
        if bridge is not None:
            protocol = bridge.protocol
        elif isinstance(opened, Opened):  # statewire's own socket transport
            protocol = opened.protocol
        else:
            protocol = None
        if protocol is None:  # buildProtocol refused or raised
            self._failed(ConnectError(f"no protocol for the connection to {self._destination}"))
            return
        # (the connector was marked connected when the protocol was built, see ``track``:
        # the connection may even be lost already, and the attempt made again)
        if not self.connected.done():
            self.connected.set_result(protocol)

    def track(self, connection: Connection) -> None:
        """The attempt connected and its protocol is built: connected from now on, before
        the protocol can lose the connection (a peer closing at once) and the factory's
        ``clientConnectionLost`` can connect again."""
        super().track(connection)
        self.state = "connected"
        self.protocol = connection.protocol

    def _failed(self, error: Exception) -> None:
        self.state = "disconnected"
        self._hook("clientConnectionFailed", self, Failure(error))
        if not self.connected.done():
            self.connected.set_exception(error)
            self.connected.exception()  # retrieved: an unawaited attempt logs no warning
        self._maybe_stop()

    def connectionLost(self, reason: Failure) -> None:
        """The connection is gone: ``clientConnectionLost``, then the factory stops
        unless the hook connected again (as Twisted)."""
        self.state = "disconnected"
        self._hook("clientConnectionLost", self, reason)
        self._maybe_stop()

    def _hook(self, name: str, *args: Any) -> None:
        """Call a ClientFactory hook; a plain Factory (as endpoints take) may lack it."""
        hook = getattr(self.factory, name, None)
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            log.exception("%s.%s raised", type(self.factory).__name__, name)

    def _maybe_stop(self) -> None:
        if self.state != "disconnected":
            return
        self.reactor._connectors.discard(self)
        if not self.factoryStarted:
            return
        self.factoryStarted = False
        # Called from the loop (a failed attempt, a lost connection): raising here would
        # escape into the event loop, or into a shutdown, instead of being reported.
        try:
            self.factory.doStop()
        except Exception:
            log.exception("%s.stopFactory raised", type(self.factory).__name__)

    def stopConnecting(self) -> None:
        """Give up a connection attempt in progress."""
        if self.state == "connecting" and self._task is not None:
            self._task.cancel()

    def disconnect(self) -> None:
        """Close the connection, or give up the attempt."""
        if self.state == "connecting":
            self.stopConnecting()
        elif self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.loseConnection()


def ssl_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server-side TLS context from a certificate file and its private key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


class Reactor:
    """Twisted's reactor API over asyncio. Use the shared instance: ``statewire.reactor``."""

    #: seconds a graceful stop waits for connections to flush and close
    shutdown_timeout = 5.0
    #: serve plain TCP/UNIX ports with the loop's own transports (``loop.create_server``)
    #: instead of statewire's socket transports; for comparison, or for loops without
    #: ``add_reader``
    native_transports = False

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvloop = False
        self._connections: set[Connection] = set()
        self._ports: set[Port] = set()
        #: client connectors connecting or connected (a shutdown gives up their attempts)
        self._connectors: set[Connector] = set()
        self._when_running: list[tuple[Callable[..., Any], Any, Any]] = []
        self._stopping: asyncio.Task[None] | None = None
        #: whether a shutdown is under way (new client attempts then fail at once)
        self.stopping = False
        self._current_poller: Poller | None = None
        self.running = False

    # -- the loop ------------------------------------------------------------------------

    def use_uvloop(self, enabled: bool = True) -> None:
        """Run on uvloop (``pip install uvloop``); call before anything uses the loop."""
        if enabled:
            import uvloop  # noqa: F401 - fail now, with a clear ImportError

        if self._loop is not None and enabled != self._uvloop:
            raise RuntimeError("use_uvloop() must come before the reactor's loop is made")
        self._uvloop = enabled

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running asyncio loop if there is one, else the reactor's own."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            self._loop = running
            return running
        if self._loop is None or self._loop.is_closed():
            if self._uvloop:
                import uvloop

                self._loop = uvloop.new_event_loop()
            else:
                self._loop = asyncio.new_event_loop()
        return self._loop

    def _poller(self) -> Poller:
        """The poller of the current loop's socket transports."""
        poller = self._current_poller
        loop = self.loop
        if poller is None or poller.loop is not loop:
            if poller is not None:
                poller.close()
            poller = self._current_poller = Poller.make(loop)
        return poller

    def seconds(self) -> float:
        """The reactor's clock (the loop's monotonic time)."""
        loop = self._loop
        if loop is not None and loop is asyncio._get_running_loop():
            return loop.time()  # the common case without the ``loop`` property's checks
        return self.loop.time()

    # -- listening -----------------------------------------------------------------------

    def listenTCP(
        self,
        port: int,
        factory: Any,
        backlog: int = 50,
        interface: str = "",
        reusePort: bool = False,
    ) -> Port:
        """Listen on TCP ``port`` (0: any free port); binds now, serves when running.

        ``reusePort=True`` binds with ``SO_REUSEPORT``: other sockets (of this user) may
        listen on the same port, and the kernel spreads the new connections among them.
        Where the platform has no ``SO_REUSEPORT`` it raises
        :class:`~statewire.error.CannotListenError` saying so.
        """
        sock = bound_tcp(port, interface, backlog, reuse_port=reusePort)
        return Port(self, sock, factory, backlog=backlog)

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: int, factory: Any) -> Port:
        """Serve an already-listening stream socket (as Twisted's ``adoptStreamPort``).

        ``fileDescriptor`` must be a listening stream socket of ``addressFamily``
        (``socket.AF_INET``, ``AF_INET6`` or ``AF_UNIX``), else
        :class:`~statewire.error.CannotListenError`. The port serves a duplicate of it:
        the caller still owns ``fileDescriptor`` and should close it. Stopping the port
        never removes a UNIX socket's file (it is not ours).
        """
        sock = adopted_stream(fileDescriptor, addressFamily)
        return Port(self, sock, factory, adopted=True)

    def listenSSL(
        self,
        port: int,
        factory: Any,
        contextFactory: ssl.SSLContext,
        backlog: int = 50,
        interface: str = "",
    ) -> Port:
        """Listen on TCP ``port`` with TLS, using a stdlib ``ssl.SSLContext``."""
        sock = bound_tcp(port, interface, backlog)
        return Port(self, sock, factory, ssl_context=contextFactory, backlog=backlog)

    def listenUNIX(self, address: str, factory: Any, backlog: int = 50, mode: int = 0o666) -> Port:
        """Listen on the UNIX socket ``address`` (a stale socket file is replaced)."""
        sock = bound_unix(address, backlog, mode)
        return Port(self, sock, factory, backlog=backlog)

    # -- connecting ----------------------------------------------------------------------

    def connectTCP(
        self, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None
    ) -> Connector:
        """Connect to ``host:port``; the factory hears of failure or loss.

        The connection is served by statewire's own socket transport, as accepted ones are
        (``native_transports``: by the loop's)."""
        loop = self.loop
        kind = from_sockaddr(False, (host, port, 0, 0) if ":" in host else (host, port))
        if self.native_transports:
            return Connector(
                self,
                factory,
                lambda make: loop.create_connection(make, host, port, local_addr=bindAddress),
                kind,
                timeout,
            )

        async def open_socket(make: Any) -> Opened:
            sock = await tcp_socket(loop, host, port, bindAddress)
            return self._serve_socket(connector, sock, factory, (host, port))

        connector = Connector(self, factory, open_socket, kind, timeout)
        return connector

    def _serve_socket(
        self, connector: Connector, sock: socket.socket, factory: Any, destination: Any
    ) -> Opened:
        """Serve a connected client socket with statewire's socket transport."""
        try:
            peer = sock.getpeername()
        except OSError:  # reset already: served, it reads the end at once
            peer = destination
        transport = SocketTransport.accepted(connector, self._poller(), sock, peer, factory)
        return Opened(None if transport is None else transport.protocol)

    def connectSSL(
        self,
        host: str,
        port: int,
        factory: Any,
        contextFactory: ssl.SSLContext,
        timeout: float = 30,
    ) -> Connector:
        """Connect with TLS, using a stdlib client ``ssl.SSLContext``."""
        loop = self.loop
        return Connector(
            self,
            factory,
            lambda make: loop.create_connection(make, host, port, ssl=contextFactory),
            from_sockaddr(False, (host, port)),
            timeout,
        )

    def connectUNIX(self, address: str, factory: Any, timeout: float = 30) -> Connector:
        """Connect to the UNIX socket ``address`` (served as ``connectTCP``'s are)."""
        loop = self.loop
        if self.native_transports:
            return Connector(
                self,
                factory,
                lambda make: loop.create_unix_connection(make, address),
                from_sockaddr(True, address),
                timeout,
            )

        async def open_socket(make: Any) -> Opened:
            sock = await unix_socket(loop, address)
            return self._serve_socket(connector, sock, factory, address)

        connector = Connector(self, factory, open_socket, from_sockaddr(True, address), timeout)
        return connector

    # -- time ----------------------------------------------------------------------------

    def callLater(
        self, delay: float, f: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> DelayedCall:
        """Call ``f(*args, **kwargs)`` in ``delay`` seconds.

        ``delay`` must be a finite number >= 0 (else ``ValueError`` naming it) and ``f``
        callable (else ``TypeError``): a bad value would otherwise disorder the timers of
        every connection on the loop.
        """
        checked_delay(delay, "callLater()'s delay")
        checked_callable(f)
        return DelayedCall(self, self.seconds() + delay, f, args, kwargs)

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``f`` in the reactor's thread, soon; safe from any thread."""
        checked_callable(f)
        self.loop.call_soon_threadsafe(lambda: f(*args, **kwargs))

    def callWhenRunning(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``f`` once the reactor runs (at once if it already does)."""
        checked_callable(f)
        if self.running:
            f(*args, **kwargs)
        else:
            self._when_running.append((f, args, kwargs))

    # -- running and stopping ------------------------------------------------------------

    def run(self, installSignalHandlers: bool = True) -> None:
        """Run until :meth:`stop` (or SIGINT/SIGTERM, which stop gracefully)."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        # signal handlers can only be installed from the main thread (as Twisted, run
        # without them elsewhere)
        main = threading.current_thread() is threading.main_thread()
        signals = [signal.SIGINT, signal.SIGTERM] if installSignalHandlers and main else []
        for number in signals:
            loop.add_signal_handler(number, self._signalled, number)
        self.running = True
        self._stopping = None
        loop.call_soon(self._started)
        try:
            loop.run_forever()
        finally:
            self.running = False
            for number in signals:
                loop.remove_signal_handler(number)

    def _started(self) -> None:
        pending, self._when_running = self._when_running, []
        for f, args, kwargs in pending:
            try:
                f(*args, **kwargs)
            except Exception:
                log.exception("callWhenRunning callback %r raised", f)

    def stop(self) -> None:
        """Stop gracefully (see the module documentation); ``run()`` then returns.

        As in Twisted, stopping a reactor that is not running, or that is stopping already,
        raises :class:`~statewire.error.ReactorNotRunning`: a ``stop()`` before ``run()``
        is a mistake, not a request to make the next ``run()`` return at once. (A second
        SIGINT or SIGTERM is not an error: it aborts the connections still open.) Inside an
        asyncio program that did not call ``run()``, ``await reactor.shutdown()`` instead.
        """
        if not self.running:
            raise ReactorNotRunning(
                "Can't stop reactor that isn't running "
                "(inside an asyncio program without run(), await reactor.shutdown())."
            )
        if self._stopping is not None:
            raise ReactorNotRunning("Can't stop reactor that is already stopping.")
        self._stopping = self.loop.create_task(self._stop())

    def _signalled(self, number: int) -> None:
        """SIGINT or SIGTERM: stop; again during the stop: stop waiting for connections."""
        if self._stopping is None:
            self.stop()
            return
        log.warning(
            "%s during shutdown: aborting the %d connections still open",
            signal.Signals(number).name,
            len(self._connections),
        )
        for connection in list(self._connections):
            _guarded(connection.abortConnection)

    async def _stop(self) -> None:
        try:
            await self.shutdown()
        finally:  # whatever happened, run() returns
            if self.running:
                self.loop.stop()

    async def drain(self, timeout: float) -> None:
        """Stop accepting on every port (their factories stop), then wait at most
        ``timeout`` seconds for the open connections to close by themselves; the ones
        still open are left for :meth:`stop` to close. A reloaded worker drains so that
        no request in progress is cut."""
        checked_delay(timeout, "drain()'s timeout")
        for port in list(self._ports):
            _guarded(port.stopListening)
        deadline = self.seconds() + timeout
        while self._connections and self.seconds() < deadline:
            await asyncio.sleep(0.01)

    async def shutdown(self) -> None:
        """Stop accepting, close every connection (flushed), stop every factory.

        What raises on the way (a factory's ``stopFactory``...) is logged with its
        traceback, and the shutdown goes on.
        """
        self.stopping = True
        try:
            await self._shut_down()
        finally:
            self.stopping = False

    async def _shut_down(self) -> None:
        for port in list(self._ports):
            _guarded(port.stopListening)
        attempts = [c._task for c in list(self._connectors) if c.state == "connecting"]
        for connector in list(self._connectors):
            _guarded(connector.stopConnecting)  # clientConnectionFailed, then stopFactory
        pending = [task for task in attempts if task is not None and not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=ABORT_GRACE)
        for connection in list(self._connections):
            _guarded(connection.loseConnection)
        deadline = self.seconds() + self.shutdown_timeout
        while self._connections and self.seconds() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._connections):
            _guarded(connection.abortConnection)
        # An aborted connection is gone within a loop turn or two; bound the wait anyway,
        # so that a transport that never reports its loss cannot hang the shutdown.
        deadline = self.seconds() + ABORT_GRACE
        while self._connections and self.seconds() < deadline:
            await asyncio.sleep(0)
        if self._connections:
            log.error("%d connections did not close; dropped", len(self._connections))
            self._connections.clear()
        poller, self._current_poller = self._current_poller, None
        if poller is not None:
            poller.close()


def _guarded(step: Callable[[], object]) -> None:
    """Run one step of a shutdown; log what it raises, so the next steps still run."""
    try:
        step()
    except Exception:
        log.exception("%s raised during shutdown", getattr(step, "__qualname__", step))
