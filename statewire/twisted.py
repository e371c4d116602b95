"""Serve statewire protocols on Twisted's reactor: :func:`adapt` a statewire ``Factory``.

Needs Twisted (``pip install 'statewire[twisted]'``)::

    from twisted.internet import reactor
    from statewire.twisted import adapt
    from examples.upload import factory        # a statewire Factory

    reactor.listenTCP(8007, adapt(factory), interface="127.0.0.1")
    reactor.run()

Theory of operation
-------------------
:func:`adapt` wraps a statewire :class:`~statewire.protocol.Factory` (of declared
protocols, :mod:`statewire.basic` helpers or plain :class:`~statewire.protocol.Protocol`
subclasses) as a Twisted ``IProtocolFactory``. For each connection it builds the statewire
protocol and a :class:`TwistedProtocol`, the Twisted protocol Twisted's transport talks to,
which hands the statewire protocol a :class:`TwistedTransport`: statewire's transport
methods over Twisted's transport. Neither side is changed: the statewire protocol sees a
statewire transport, Twisted sees a Twisted protocol.

* **Events.** ``makeConnection``, ``dataReceived`` and ``connectionLost`` are forwarded;
  the ``Failure`` Twisted gives ``connectionLost`` becomes statewire's
  (:func:`failure_from_twisted`: ``ConnectionDone``, ``ConnectionLost``,
  ``ConnectionAborted``... of :mod:`statewire.error`, the original as ``__cause__``).
  Addresses (``buildProtocol``, ``getPeer``, ``getHost``) become statewire's
  (:func:`address_from_twisted`).
* **Time.** The transport's ``reactor`` is the Twisted reactor serving the connection (or
  the ``clock`` given to :func:`adapt`, such as ``twisted.internet.task.Clock`` in tests):
  declared timeouts are scheduled with its ``callLater`` and measured with its
  ``seconds``.
* **Flow control.** The :class:`TwistedProtocol` registers itself with Twisted's transport
  as a streaming producer. When Twisted's write buffer fills (its ``bufferSize``, 64 KiB)
  Twisted calls its ``pauseProducing``; as on statewire's own transports, reading from the
  peer then stops, the statewire protocol gets ``transportCongested(True)`` (a declared
  protocol stops cutting frames after the current one) and a producer the protocol
  registered is paused. When Twisted's buffer is empty again, all resume (the held frames
  are answered before reading starts again). A declared protocol's ``write_timeout``
  counts from that pause: a buffer that stays full that long aborts the connection.
  Closing unregisters it first (Twisted would not close a connection with a paused
  producer registered).
* **Closing.** ``loseConnection`` and ``abortConnection`` tell a declared protocol to stop
  delivering the frames it holds (``on_closing``), as statewire's transports do;
  ``close_timeout`` (a declared protocol's, else 30 s) bounds how long a closing
  connection may wait for the peer to take its unsent data before it is aborted. The
  peer's end of stream (a half-close) closes our side once what was written is sent, as
  on statewire's transports (Twisted alone would drop the unsent replies). When Twisted's
  global reactor stops, each adapted factory stops first and its connections close
  flushed (:meth:`AdaptedFactory._before_shutdown`), as at statewire's reactor's shutdown.
* **Starting and stopping.** A factory's ``beforeServing`` is waited for before its port's
  connections are read (those accepted meanwhile are held, their reading paused), and
  its ``afterServing`` at the end of that shutdown: ``asgi(app)`` keeps its lifespan.

* **TLS.** Behind Twisted's TLS (``listenSSL``, ``connectSSL``) the transport's ``TLS`` is
  true; a pause from Twisted's TLS transport before its handshake completed (it holds
  what was written until then) does not stop reading, which would stall the handshake.
  The handshake counts as complete from ``handshakeCompleted`` or the first bytes read
  over TLS. There is no ``startTLS`` here (Twisted's own, on ``transport.twisted``, works).

Asynchronous outputs. A declared output may return a coroutine, an asyncio future or
anything with ``add_done_callback``: on Twisted's asyncio reactor
(``twisted.internet.asyncioreactor``) every callback runs inside the asyncio loop, so a
coroutine runs as a task of that loop, and a Twisted ``Deferred`` can be awaited as
``await d.asFuture(loop)``. On any other reactor (epoll, select, a ``task.Clock`` test)
there is no running asyncio loop: an output returning a coroutine is a local error (the
connection is aborted). A ``Deferred`` returned as it is is waited for on every reactor
(the engine sees anything with ``addBoth`` and ``cancel`` as a future), as is
:func:`from_deferred` (``d``), kept for code written before.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from typing import Any

try:
    from twisted.internet import defer
    from twisted.internet.interfaces import ILoggingContext, IProtocolFactory
    from twisted.internet.protocol import Protocol as TwistedBaseProtocol
    from twisted.python.failure import Failure
    from zope.interface import implementer  # type: ignore[import-untyped]
except ImportError as missing:  # pragma: no cover - the test environment has Twisted
    raise ImportError(
        "statewire.twisted needs Twisted: install the extra, pip install 'statewire[twisted]'"
    ) from missing

from statewire._reactor import ABORT_GRACE, Reactor
from statewire._twisted_connection import (
    TwistedProtocol,
    TwistedTransport,
    address_from_twisted,
    failure_from_twisted,
)
from statewire.machine import DeferredFuture
from statewire.protocol import ClientFactory, Factory, close_gracefully

__all__ = [
    "ABORT_GRACE",
    "AdaptedClientFactory",
    "AdaptedFactory",
    "DeferredFuture",
    "TwistedProtocol",
    "TwistedTransport",
    "adapt",
    "address_from_twisted",
    "failure_from_twisted",
    "from_deferred",
]

log = logging.getLogger("statewire.twisted")


# -- Deferreds as awaitables ----------------------------------------------------------------
# (the engine waits for a Deferred itself: :class:`statewire.machine.DeferredFuture`)


def from_deferred(deferred: Any) -> DeferredFuture:
    """Wrap a Twisted ``Deferred`` so that a declared output (or a ``basic`` callback) can
    return it and have the connection wait for it, on any reactor: no frame after the
    current one is delivered until it fires; a failure is a local error."""
    return DeferredFuture(deferred)


# -- factories -----------------------------------------------------------------------------


@implementer(IProtocolFactory, ILoggingContext)
class AdaptedFactory:
    """A statewire ``Factory`` as a Twisted ``IProtocolFactory`` (made by :func:`adapt`)."""

    #: seconds a Twisted reactor's shutdown waits for the open connections to close once
    #: asked to (flushed), before it aborts the rest (statewire's reactor's own)
    shutdown_timeout = Reactor.shutdown_timeout
    #: seconds the reactor's shutdown waits for the statewire factory's ``afterServing``
    #: (an ASGI application's shutdown): Twisted's has no second signal that ends it
    after_serving_timeout = 30.0
    #: connections held at most while ``beforeServing`` runs (more are refused): a
    #: backlog, as the kernel's bounds the one of statewire's own ports
    held_limit = 1024
    #: whether the factory's ``beforeServing`` and ``afterServing`` are called: a port's
    #: factory (not a client's, as on statewire's reactor)
    serves = True

    def __init__(self, factory: Any, clock: Any = None) -> None:
        #: the statewire factory
        self.factory = factory
        #: timer source given to every connection, or ``None``: the serving reactor
        self.clock = clock
        #: a connection was refused for want of an asyncio loop (said once at ERROR)
        self._refused = False
        #: the ports (or client connectors) using it: ``doStart`` calls not yet stopped
        self._ports = 0
        #: its open connections
        self._live: set[TwistedProtocol] = set()
        #: the reactor's shutdown trigger (see :meth:`_before_shutdown`) and its reactor
        self._trigger: Any = None
        self._reactor: Any = None
        #: fired once the connections closed at a shutdown
        self._drained: Any = None
        #: the reactor's shutdown began: no new connection (its ports still accept)
        self._shutting_down = False
        #: the wait for aborted connections to be reported lost (see ABORT_GRACE)
        self._grace: Any = None
        #: the statewire factory's ``beforeServing`` runs still: what it returned (as
        #: Deferreds), and the connections held until they end
        self._startups: list[Any] = []
        self._held: list[TwistedProtocol] = []
        #: a port started since the last ``afterServing``: one is owed at the shutdown
        self._after_owed = False
        #: a connection was refused past ``held_limit`` during this startup (said once)
        self._refused_held = False

    @property
    def noisy(self) -> bool:
        """The statewire factory's ``noisy``."""
        return bool(getattr(self.factory, "noisy", True))

    def logPrefix(self) -> str:
        """How Twisted's logs name the port: the statewire factory's class."""
        return type(self.factory).__name__

    def doStart(self) -> None:
        """A Twisted port starts using the factory: the statewire factory's ``doStart``
        (its ``startFactory`` for the first one). On Twisted's global reactor, the first
        also arranges the graceful stop of :meth:`_before_shutdown`. Once that shutdown
        began, nothing (a reconnecting client's connector starts it again and again: its
        connections are refused, its factory stays stopped)."""
        if self._shutting_down:
            return
        self.factory.doStart()
        self._ports += 1
        self._watch_shutdown()
        self._before_serving()

    # -- beforeServing and afterServing (an ASGI application's lifespan) -------------------

    def _before_serving(self) -> None:
        """The statewire factory's ``beforeServing``: what it returns, if anything, is
        waited for before the port's connections are read (they are held meanwhile): an
        ASGI application's startup. A ``Deferred`` is waited for on any reactor; a
        coroutine or an asyncio future runs on the asyncio loop (Twisted's asyncio
        reactor), from the loop's first turn if it does not run yet. A failure is logged
        at ERROR, and the connections are then served (an ``asgi(app)`` whose startup
        failed answers ``503``)."""
        hook = getattr(self.factory, "beforeServing", None) if self.serves else None
        after = getattr(type(self.factory), "afterServing", None)
        if after is not None and after is not Factory.afterServing and self.serves:
            self._after_owed = True  # (its own: the base one does nothing)
        try:
            returned = None if hook is None else hook()
        except Exception:
            self._failed(Failure())  # type: ignore[no-untyped-call]
            return
        if returned is None:
            return
        running: list[Any] = []  # (the Deferred waited for, once made: what a cancel cancels)
        startup: defer.Deferred[None] = defer.Deferred(
            lambda _: running[0].cancel() if running else _closed(returned)
        )
        self._startups.append(startup)
        startup.addBoth(self._started, startup)
        reactor = sys.modules.get("twisted.internet.reactor")
        if hasattr(returned, "addBoth") or _asyncio_runs() or reactor is None:
            self._wait(returned, startup, running)
        else:
            # (from the loop's first turn: the connections accepted before are held)
            reactor.callLater(0, self._wait, returned, startup, running)

    def _wait(self, returned: Any, done: defer.Deferred[None], running: list[Any]) -> None:
        """``done`` fires once ``returned`` is done (``running`` gets its Deferred)."""
        if done.called:
            return  # (cancelled by a shutdown before the loop ran: closed then)
        try:
            waited = _as_deferred(returned)
        except Exception:
            done.errback()
            return
        running.append(waited)
        waited.addBoth(_pass_on, done)

    def _failed(self, failure: Failure) -> None:
        if failure.type is not defer.CancelledError:
            log.error(
                "%s did not start: %s: %s",
                type(self.factory).__name__,
                failure.type.__name__ if failure.type is not None else "error",
                failure.getErrorMessage(),
            )

    def _started(self, result: Any, startup: defer.Deferred[None]) -> None:
        """A ``beforeServing`` ended: once none runs, the held connections go on (closed,
        when the reactor's shutdown began meanwhile)."""
        self._startups.remove(startup)
        if isinstance(result, Failure):
            self._failed(result)
        if self._startups:
            return
        self._refused_held = False
        held, self._held = self._held, []
        closing = self._shutting_down or not self._ports  # (the port stopped meanwhile)
        for shim in held:
            try:
                if closing:
                    shim.transport.loseConnection()
                else:
                    shim.release()
            except Exception:  # (that connection's protocol failed: the others go on)
                log.exception("connecting a connection held for the startup; aborting it")
                shim.transport.abortConnection()

    def hold(self, shim: TwistedProtocol) -> bool:
        """Whether ``shim``'s connection waits for the factory's startup (it is then
        given :meth:`TwistedProtocol.release` once it ended)."""
        if not self._startups:
            return False
        self._held.append(shim)
        return True

    def _too_many_held(self) -> bool:
        if not self._startups or len(self._held) < self.held_limit:
            return False
        level = logging.DEBUG if self._refused_held else logging.WARNING
        self._refused_held = True  # (said once a startup: no flood of the same line)
        log.log(
            level,
            "%s: %d connections wait for the startup already; connection refused",
            type(self.factory).__name__,
            len(self._held),
        )
        return True

    def _after_serving(self, result: Any = None) -> Any:
        """At the shutdown, the connections gone: the statewire factory's
        ``afterServing``, waited for (an ASGI application's own shutdown); a failure is
        logged and the shutdown goes on."""
        if not self._after_owed:
            return None
        self._after_owed = False
        hook = self.factory.afterServing  # (owed: it has one)
        try:
            waited = _as_deferred(hook())
        except Exception:
            log.exception("%s.afterServing raised", type(self.factory).__name__)
            return None
        if waited is None:
            return None
        name = type(self.factory).__name__
        waited.addErrback(
            lambda failure: (
                None
                if failure.check(defer.CancelledError, asyncio.CancelledError)
                else log.error("%s.afterServing failed: %s", name, failure.getErrorMessage())
            )
        )
        if self._reactor is None:
            return waited
        # bounded by a timer of its own, not by the cancel (a cancelled coroutine may
        # take its time, or never end): past it, the hook is cancelled and given
        # ABORT_GRACE seconds to end (its cleanup, the application's lifespan task's
        # cancel), then the shutdown goes on
        bounded: defer.Deferred[None] = defer.Deferred()
        timeout = self.after_serving_timeout
        timers: list[Any] = []

        def finish() -> None:
            for timer in timers:
                if timer.active():
                    timer.cancel()
            if not bounded.called:
                bounded.callback(None)

        def expired() -> None:
            log.error("%s.afterServing did not end within %s s; cancelled", name, timeout)
            timers.append(self._reactor.callLater(ABORT_GRACE, finish))
            waited.cancel()

        timers.append(self._reactor.callLater(timeout, expired))
        waited.addBoth(lambda _: finish())
        return bounded

    def doStop(self) -> None:
        """A Twisted port stopped using it: ``doStop`` (``stopFactory`` for the last, and
        a startup still running cancelled, its held connections closed); nothing once a
        shutdown stopped it already."""
        if self._ports <= 0:
            return
        self._ports -= 1
        if not self._ports:
            for startup in list(self._startups):
                startup.cancel()
        self._unwatch_shutdown()
        self.factory.doStop()

    def _watch_shutdown(self) -> None:
        # (the global reactor only if it is installed already: never install one here)
        reactor = sys.modules.get("twisted.internet.reactor")
        if self._trigger is None and self.clock is None and reactor is not None:
            self._reactor = reactor
            self._trigger = reactor.addSystemEventTrigger(
                "before", "shutdown", self._before_shutdown
            )

    def _unwatch_shutdown(self) -> None:
        # kept while a port or a connection is left (a port stopped, its connections
        # open: they are still closed gracefully at the shutdown)
        # (and while an afterServing is owed: the application's shutdown)
        idle = not self._ports and not self._live and not self._after_owed
        if self._trigger is not None and idle:
            trigger, self._trigger = self._trigger, None
            self._reactor.removeSystemEventTrigger(trigger)

    def _before_shutdown(self) -> Any:
        """Twisted's reactor is stopping: what statewire's reactor does at its shutdown,
        before Twisted drops every connection. The statewire factory stops first (SMTP's
        sessions are told ``421``), then each open connection closes once flushed; the
        shutdown waits for them at most :attr:`shutdown_timeout` seconds, then aborts the
        rest and gives them ``ABORT_GRACE`` seconds more to be gone. It ends a loop turn
        after the last is gone, so that the handlers they cancelled run their cleanup."""
        self._trigger = None
        self._shutting_down = True
        for startup in list(self._startups):
            startup.cancel()  # (a startup still running: cancelled, its held connections closed)
        while self._ports:
            self._ports -= 1
            try:
                self.factory.doStop()
            except Exception:
                log.exception("stopping %r at the reactor's shutdown", self.factory)
        for shim in list(self._live):
            if shim.facade is not None:
                close_gracefully(shim.protocol, shim.facade)
        drained: defer.Deferred[None] = defer.Deferred()
        self._drained = drained
        timer = self._reactor.callLater(self.shutdown_timeout, self._shutdown_expired)
        if not self._live:
            self._settled()
        drained.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return drained.addCallback(self._after_serving)

    def _shutdown_expired(self) -> None:
        log.info(
            "%d connections open after %s s; aborting", len(self._live), self.shutdown_timeout
        )
        for shim in list(self._live):
            if shim.facade is not None:
                shim.facade.abortConnection()
        # Twisted reports an abort's loss a reactor turn later: wait for it, boundedly
        # (else the socket outlives the reactor, never closed)
        self._grace = self._reactor.callLater(ABORT_GRACE, self._settle)

    def _settled(self) -> None:
        """Every connection is gone: the shutdown goes on after a loop turn."""
        if self._drained is not None:
            self._reactor.callLater(0, self._settle)

    def _settle(self) -> None:
        grace, self._grace = self._grace, None
        if grace is not None and grace.active():
            grace.cancel()
        drained, self._drained = self._drained, None
        if drained is not None:
            drained.callback(None)

    def track(self, shim: TwistedProtocol) -> None:
        """``shim`` connected: it is closed at a shutdown (:meth:`_before_shutdown`)."""
        self._live.add(shim)

    def untrack(self, shim: TwistedProtocol) -> None:
        """``shim``'s connection is gone."""
        if shim in self._held:
            self._held.remove(shim)
        self._live.discard(shim)
        if not self._live:
            self._settled()
            self._unwatch_shutdown()

    def buildProtocol(self, addr: Any) -> TwistedProtocol | None:
        """The statewire factory's protocol for ``addr`` (a statewire address), wrapped;
        ``None`` when it refuses the connection."""
        if self._shutting_down:
            return None  # (Twisted's ports accept until the shutdown's end: refused)
        if self._too_many_held():
            # (a protocol that aborts, not None: Twisted's wrapping factories, TLS's
            # among them, take a None for a protocol)
            return _Refused()  # type: ignore[return-value]
        protocol = self.factory.buildProtocol(address_from_twisted(addr))
        if protocol is None:
            return None
        if getattr(protocol, "requires_asyncio", False) and not _asyncio_runs():
            # (an HTTP server on Twisted's epoll reactor: it would half work, then fail
            # at its first wait with errors that do not say why)
            level = logging.DEBUG if self._refused else logging.ERROR
            self._refused = True
            log.log(
                level,
                "%s needs a running asyncio event loop: serve it on Twisted's asyncio "
                "reactor (twisted.internet.asyncioreactor.install(), before the reactor "
                "is imported), from inside the running reactor; connection refused",
                type(protocol).__name__,
            )
            return None
        shim = TwistedProtocol(protocol, self.clock)
        shim.factory = self
        return shim

    def __repr__(self) -> str:
        return f"<adapt({self.factory!r})>"


class AdaptedClientFactory(AdaptedFactory):
    """A statewire ``ClientFactory`` as a Twisted client factory: Twisted's connector
    events reach it with statewire's failures (the connector is Twisted's). Its
    ``beforeServing`` and ``afterServing`` are not called (a port's, as on statewire's
    reactor)."""

    serves = False

    def startedConnecting(self, connector: Any) -> None:
        """A connection attempt started."""
        self.factory.startedConnecting(connector)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        """The connection could not be made; ``reason`` as statewire's ``Failure``."""
        self.factory.clientConnectionFailed(connector, failure_from_twisted(reason))

    def clientConnectionLost(self, connector: Any, reason: Any) -> None:
        """An established connection ended; ``reason`` as statewire's ``Failure``."""
        self.factory.clientConnectionLost(connector, failure_from_twisted(reason))


class _Refused(TwistedBaseProtocol):
    """The protocol of a connection refused after its accept: it aborts at once."""

    def makeConnection(self, transport: Any) -> None:
        transport.abortConnection()


def _pass_on(result: Any, done: defer.Deferred[None]) -> None:
    """``result`` to ``done``, unless it fired already (cancelled): then dropped."""
    if done.called:
        return
    if isinstance(result, Failure):
        done.errback(result)
    else:
        done.callback(None)


def _closed(awaitable: Any) -> None:
    """A coroutine never to run, closed (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


def _as_deferred(awaitable: Any) -> Any:
    """What a factory's hook returned, as a ``Deferred`` (``None`` for nothing): a
    ``Deferred`` itself; a coroutine or an asyncio future, run on the running asyncio loop
    (Twisted's asyncio reactor); without one, a ``RuntimeError``."""
    if awaitable is None or hasattr(awaitable, "addBoth"):
        return awaitable
    if not inspect.isawaitable(awaitable):
        return None  # (nothing to wait for, as statewire's reactor takes it)
    if not _asyncio_runs():
        _closed(awaitable)
        raise RuntimeError(
            "it returned an awaitable, which needs a running asyncio event loop: serve it "
            "on Twisted's asyncio reactor (twisted.internet.asyncioreactor.install())"
        )
    return defer.Deferred.fromFuture(asyncio.ensure_future(awaitable))


def _asyncio_runs() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def adapt(factory: Any, clock: Any = None) -> AdaptedFactory:
    """Wrap the statewire ``factory`` for Twisted's ``listenTCP``/``listenUNIX``/endpoints
    (an :class:`AdaptedClientFactory`, for ``connectTCP``, when it is a ``ClientFactory``).

    ``clock`` (``callLater`` and ``seconds``; a ``twisted.internet.task.Clock`` in tests)
    drives the connections' timeouts; by default the reactor of Twisted's transport, else
    ``twisted.internet.reactor``.
    """
    if isinstance(factory, ClientFactory):
        return AdaptedClientFactory(factory, clock)
    return AdaptedFactory(factory, clock)
