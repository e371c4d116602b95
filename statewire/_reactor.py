"""The reactor: Twisted's ``reactor`` API on an asyncio event loop.

It runs on asyncio's default loop, or on uvloop after :meth:`Reactor.use_uvloop`. Ports bind
at once (so a port in use raises :class:`~statewire.error.CannotListenError` before
``run()``) and start accepting when the loop runs. Inside an asyncio program that already
runs a loop, the reactor uses that loop and ``run()`` is not needed.

Graceful stop (``stop()``, SIGINT, SIGTERM): stop accepting, let every connection finish
what is under way (its protocol's ``closeGracefully``: at once by default, after the
response being written for HTTP) and close it, flushed (waiting at most
``shutdown_timeout`` seconds, then aborting the rest), so every protocol gets
``connectionLost``; every factory gets ``stopFactory``, then, its connections gone,
``afterServing``; the asyncio tasks still pending on the loop (a handler's work after its
response, say) are cancelled and given the turns to end, as ``asyncio.run`` ends its
tasks; then ``run()`` returns. A second SIGINT or SIGTERM during that stop aborts the
connections still open instead of waiting for them. Code of its own joins the shutdown
through :meth:`Reactor.addSystemEventTrigger` (Twisted's ``"shutdown"`` triggers, in its
three phases: :mod:`statewire._triggers`).

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
import contextvars
import functools
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from time import monotonic as _monotonic
from typing import Any

from statewire._tls import check_server_context
from statewire._tls_context import ssl_context as ssl_context
from statewire._triggers import SystemEvents, call_hook
from statewire.address import Address, from_sockaddr
from statewire.error import ReactorNotRunning
from statewire.protocol import close_gracefully, has_own_graceful_close
from statewire.runtime.asyncio_transport import Bridge
from statewire.runtime.connecting import Opened, tcp_socket, unix_socket
from statewire.runtime.connection import Connection
from statewire.runtime.connector import Connector as Connector
from statewire.runtime.delayed_call import AlreadyCalled as AlreadyCalled
from statewire.runtime.delayed_call import AlreadyCancelled as AlreadyCancelled
from statewire.runtime.delayed_call import DelayedCall, checked_callable, checked_delay
from statewire.runtime.listening import adopted_stream, bound_tcp, bound_unix
from statewire.runtime.pollers import Poller
from statewire.runtime.ports import Port as Port
from statewire.runtime.socket_transport import SocketTransport

#: asyncio's loops' clock (uvloop's has its own)
_ASYNCIO_TIME = asyncio.BaseEventLoop.time

log = logging.getLogger("statewire")


#: seconds a shutdown waits for aborted connections to report their loss
ABORT_GRACE = 1.0


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
        #: the connections open (accepted and client ones; a shutdown closes them)
        self.connections: set[Connection] = set()
        #: the ports listening
        self.ports: set[Port] = set()
        #: client connectors connecting or connected (a shutdown gives up their attempts)
        self.connectors: set[Connector] = set()
        self._when_running: list[tuple[Callable[..., Any], Any, Any]] = []
        self._stopping: asyncio.Task[None] | None = None
        #: whether a shutdown is under way (new client attempts then fail at once)
        self.stopping = False
        self._current_poller: Poller | None = None
        self.running = False
        self._events = SystemEvents()
        #: resolved when the shutdown under way ends (a second caller waits for it)
        self._shutting_down: asyncio.Future[None] | None = None
        #: the factories its ports started (their ``afterServing`` at the shutdown)
        self.factories: set[Any] = set()

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

    def poller(self) -> Poller:
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
        if loop is not None and loop.is_running():
            # the common case without the ``loop`` property's checks (the loop running is
            # the one this thread runs: the reactor is not shared between threads). Not
            # ``asyncio._get_running_loop()``: on CPython 3.11 it makes a ``getpid`` system
            # call, once a read. asyncio's own loops tell ``time.monotonic()`` (read here
            # with no call more), unless their ``time`` was replaced (a virtual clock in a
            # test: callLater counts with it)
            if type(loop).time is _ASYNCIO_TIME and "time" not in loop.__dict__:
                return _monotonic()
            return loop.time()
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

    def adoptStreamPort(
        self,
        fileDescriptor: int,
        addressFamily: int,
        factory: Any,
        contextFactory: ssl.SSLContext | None = None,
    ) -> Port:
        """Serve an already-listening stream socket (as Twisted's ``adoptStreamPort``).

        ``fileDescriptor`` must be a listening stream socket of ``addressFamily``
        (``socket.AF_INET``, ``AF_INET6`` or ``AF_UNIX``), else
        :class:`~statewire.error.CannotListenError`. The port serves a duplicate of it:
        the caller still owns ``fileDescriptor`` and should close it. Stopping the port
        never removes a UNIX socket's file (it is not ours). With ``contextFactory`` (a
        statewire addition) its connections are TLS, as a ``listenSSL`` port's.
        """
        if contextFactory is not None:
            check_server_context(contextFactory, "adoptStreamPort()")
        sock = adopted_stream(fileDescriptor, addressFamily)
        return Port(self, sock, factory, ssl_context=contextFactory, adopted=True)

    def listenSSL(
        self,
        port: int,
        factory: Any,
        contextFactory: ssl.SSLContext,
        backlog: int = 50,
        interface: str = "",
    ) -> Port:
        """Listen on TCP ``port`` with TLS, using a stdlib ``ssl.SSLContext``.

        Each connection is TLS from its first byte, its protocol connected before the
        handshake (docs/tls.md). ``TypeError`` when ``contextFactory`` is not an
        ``SSLContext``, ``ValueError`` when it cannot serve (a client context): said
        here, not on each connection."""
        check_server_context(contextFactory, "listenSSL()")
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
        return self._connect(
            factory,
            from_sockaddr(False, (host, port, 0, 0) if ":" in host else (host, port)),
            timeout,
            lambda make: loop.create_connection(make, host, port, local_addr=bindAddress),
            lambda: tcp_socket(loop, host, port, bindAddress),
            (host, port),
        )

    def _connect(
        self,
        factory: Any,
        destination: Address,
        timeout: float,
        native: Callable[[Callable[[], Bridge]], Any],
        connected: Callable[[], Awaitable[socket.socket]],
        peer: Any,
    ) -> Connector:
        """A connector whose attempt is served by statewire's socket transport (the socket
        ``connected()`` makes, served as an accepted one), or with ``native_transports``
        by the loop's transport ``native`` makes. ``peer``: the address ``getPeer`` gives
        if the socket was reset before it could be asked."""
        if self.native_transports:
            return Connector(self, factory, native, destination, timeout)

        async def open_socket(make: Any) -> Opened:
            sock = await connected()
            try:
                peer_now = sock.getpeername()
            except OSError:  # reset already: served, it reads the end at once
                peer_now = peer
            transport = SocketTransport.accepted(connector, self.poller(), sock, peer_now, factory)
            return Opened(None if transport is None else transport.protocol)

        connector = Connector(self, factory, open_socket, destination, timeout)
        return connector

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
        return self._connect(
            factory,
            from_sockaddr(True, address),
            timeout,
            lambda make: loop.create_unix_connection(make, address),
            lambda: unix_socket(loop, address),
            address,
        )

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

    def addSystemEventTrigger(
        self, phase: str, eventType: str, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> int:
        """Call ``callable(*args, **kw)`` at each shutdown, in ``phase`` (``"before"``,
        ``"during"`` or ``"after"``); ``eventType`` is ``"shutdown"`` (the only event fired
        here: ``callWhenRunning`` runs code at the start). An awaitable returned by a
        ``"before"`` or ``"after"`` trigger is awaited (see :mod:`statewire._triggers`).
        Returns the identifier :meth:`removeSystemEventTrigger` takes."""
        return self._events.add(phase, eventType, callable, args, kw)

    def removeSystemEventTrigger(self, triggerID: int) -> None:
        """Remove a trigger :meth:`addSystemEventTrigger` added (``ValueError`` if gone)."""
        self._events.remove(triggerID)

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
            _end_tasks(loop)
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
            len(self.connections),
        )
        for connection in list(self.connections):
            _guarded(connection.abortConnection)
        self._events.stop_waiting()

    async def _stop(self) -> None:
        # (a stop asked from inside a shutdown, a protocol's connectionLost say, waits for
        # it: run() returns once it is done)
        _SHUTTING_DOWN.set(None)
        try:
            await self.shutdown()
        finally:  # whatever happened, run() returns
            if self.running:
                self.loop.stop()

    async def drain(self, timeout: float) -> None:
        """Stop accepting on every port (their factories stop), ask the connections whose
        protocol has a graceful close of its own to use it (HTTP: an idle kept-alive
        connection closes now, a response under way says ``Connection: close``, a new
        connection's first request is answered so), then wait at most ``timeout``
        seconds for the open connections to close; the ones still open are left for
        :meth:`stop` to close. A connection is asked as soon as its protocol has such a
        close (behind a PROXY relay: once the header is read and the wrapped protocol
        took over). A protocol without a ``closeGracefully`` of its own, whose default
        closes at once, is left to end by itself. A reloaded worker drains so that no
        request in progress is cut, and no kept-alive client stays with its code."""
        checked_delay(timeout, "drain()'s timeout")
        for port in list(self.ports):
            _guarded(port.stopListening)
        seen: dict[Connection, Any] = {}  # (the protocol of each connection looked at)
        deadline = self.seconds() + timeout
        while self.connections:
            for connection in list(self.connections):
                protocol = getattr(connection, "protocol", None)
                if seen.get(connection) is protocol:
                    continue
                seen[connection] = protocol
                if has_own_graceful_close(protocol):
                    _guarded(functools.partial(close_gracefully, protocol, connection))
            if self.seconds() >= deadline:
                break
            await asyncio.sleep(0.05)

    async def shutdown(self) -> None:
        """Stop accepting, close every connection (flushed), stop every factory; with
        the shutdown triggers' phases around (:meth:`addSystemEventTrigger`).

        What raises on the way (a factory's ``stopFactory``, a trigger...) is logged with
        its traceback, and the shutdown goes on. Called while a shutdown runs, it waits
        for that one; called from that shutdown's own work (a trigger, a hook, a protocol's
        ``connectionLost`` it caused, or a task any of them started: code whose context
        was copied inside it), it returns at once (waiting would wait for itself).
        """
        if self._shutting_down is not None:  # (one shutdown at a time: join it)
            if _SHUTTING_DOWN.get() is self._shutting_down:
                return  # (asked by the shutdown's own work, a trigger: it would wait for itself)
            await asyncio.shield(self._shutting_down)
            return
        self._shutting_down = asyncio.get_running_loop().create_future()
        self.stopping = True
        self._events.begin()
        within = _SHUTTING_DOWN.set(self._shutting_down)
        try:
            await self._events.fire_and_wait("before")
            self._events.fire_during()
            await self._shut_down()
            await self._events.wait(self._after_serving(), "the factories' afterServing")
            await self._events.fire_and_wait("after")
        finally:
            _SHUTTING_DOWN.reset(within)
            self.stopping = False
            done, self._shutting_down = self._shutting_down, None
            done.set_result(None)

    async def _shut_down(self) -> None:
        for port in list(self.ports):
            _guarded(port.stopListening)
        attempts = [c._task for c in list(self.connectors) if c.state == "connecting"]
        for connector in list(self.connectors):
            _guarded(connector.stopConnecting)  # clientConnectionFailed, then stopFactory
        pending = [task for task in attempts if task is not None and not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=ABORT_GRACE)
        for connection in list(self.connections):
            # each closes once what is under way is done (a response being written)
            protocol = getattr(connection, "protocol", None)
            _guarded(functools.partial(close_gracefully, protocol, connection))
        deadline = self.seconds() + self.shutdown_timeout
        while self.connections and self.seconds() < deadline:
            await asyncio.sleep(0.01)
        if self.connections:
            log.info(
                "%d connections still open after %s s; aborting",
                len(self.connections),
                self.shutdown_timeout,
            )
        for connection in list(self.connections):
            _guarded(connection.abortConnection)
        # An aborted connection is gone within a loop turn or two; bound the wait anyway,
        # so that a transport that never reports its loss cannot hang the shutdown.
        deadline = self.seconds() + ABORT_GRACE
        while self.connections and self.seconds() < deadline:
            await asyncio.sleep(0)
        if self.connections:
            log.error("%d connections did not close; dropped", len(self.connections))
            self.connections.clear()
        poller, self._current_poller = self._current_poller, None
        if poller is not None:
            poller.close()

    def _after_serving(self) -> list[Any]:
        """Call ``afterServing`` of each factory whose ports have all stopped; what the
        calls returned to await."""
        awaitables: list[Any] = []
        for factory in list(self.factories):
            if getattr(factory, "numPorts", 0) > 0:
                continue  # (started again by a port since)
            self.factories.discard(factory)
            hook = getattr(factory, "afterServing", None)
            if hook is not None:
                call_hook(awaitables, ("%s.afterServing", type(factory).__name__), hook)
        return awaitables


#: the future of the shutdown running, in that shutdown's own context: what its triggers
#: and hooks (and the tasks they start) run in
_SHUTTING_DOWN: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "statewire_shutting_down", default=None
)


def _end_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still pending on ``loop`` once it stopped, and run it until they
    end (their ``finally`` blocks run: no "Task was destroyed but it is pending"); what
    one raises other than its cancellation is logged, as ``asyncio.run`` does."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception of a task ended by the reactor's stop",
                    "exception": task.exception(),
                    "task": task,
                }
            )


def _guarded(step: Callable[[], object]) -> None:
    """Run one step of a shutdown; log what it raises, so the next steps still run."""
    try:
        step()
    except Exception:
        log.exception("%s raised during shutdown", getattr(step, "__qualname__", step))
