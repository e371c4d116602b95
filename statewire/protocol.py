"""``Protocol`` and ``Factory``: Twisted's server API, with Twisted's names and semantics.

A server written against ``twisted.internet.protocol`` runs after changing its imports::

    from statewire.protocol import Protocol, Factory

One protocol instance serves one connection. The factory builds it (``buildProtocol``,
which sets ``protocol.factory``), is told when the first port using it starts listening
(``startFactory``) and after the last one stops (``stopFactory``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statewire.error import Failure, connectionDone

log = logging.getLogger("statewire")

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from statewire.address import Address


def close_gracefully(protocol: Any, transport: Any) -> None:
    """At a shutdown: ``protocol.closeGracefully()``, or, for a protocol without it (not
    statewire's, or none made yet), ``transport.loseConnection()``."""
    hook = getattr(protocol, "closeGracefully", None)
    if hook is None:
        transport.loseConnection()
        return
    try:
        hook()
    except Exception:
        log.exception("%s.closeGracefully raised; closing", type(protocol).__name__)
        transport.loseConnection()


def has_own_graceful_close(protocol: Any) -> bool:
    """Whether ``protocol`` closes gracefully in a way of its own (finishing what is under
    way), not by the default close at once: what a drain asks to close (statewire's
    reactor's ``drain``). A protocol that passes the close on to another (a PROXY relay,
    an HTTP connection after an upgrade) answers for it: its ``closesGracefully()``."""
    answer = getattr(protocol, "closesGracefully", None)
    if answer is not None:
        return bool(answer())
    graceful = getattr(type(protocol), "closeGracefully", None)
    return graceful is not None and graceful is not BaseProtocol.closeGracefully


class BaseProtocol:
    """The connection half of a protocol: ``makeConnection`` and ``connectionMade``."""

    #: 1 while connected (Twisted uses ints)
    connected = 0
    #: the transport: ``write``, ``loseConnection``, ``getPeer``, ... (set on connection)
    transport: Any = None

    def makeConnection(self, transport: Any) -> None:
        """Attach ``transport`` (any object with the transport methods), then call
        :meth:`connectionMade`."""
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        """Called when the connection is made; override to greet the peer."""

    def closeGracefully(self) -> None:
        """statewire's own: the server is shutting down (statewire's reactor, or Twisted's
        under :func:`statewire.twisted.adapt`): close once what is under way is done. The
        default closes now, flushed (``transport.loseConnection()``); an HTTP connection
        first finishes the response under way. The shutdown aborts what is still open
        after its ``shutdown_timeout``."""
        self.transport.loseConnection()


class Protocol(BaseProtocol):
    """A stream protocol: override :meth:`dataReceived` and the connection hooks.

    Flow control. When what the transport has not yet sent passes its high-water mark
    (256 KiB; a peer that does not read), the transport stops reading from the peer,
    calls :meth:`transportCongested` with ``True`` and ``pauseProducing`` on the producer
    registered with it; once the peer has taken enough, ``transportCongested(False)`` and
    ``resumeProducing``. The check is made as you write, so these calls come between two
    writes of one callback. What a plain protocol gets depends on whether it listens:

    * a protocol that only overrides :meth:`dataReceived` receives whole reads (a read
      cannot be split): it handles every request in the read it was given, however much
      that writes, but no more reads come until the peer catches up. A peer pipelining
      many requests in one read can still make it queue one reply per request of that
      read (one read: 64 KiB on statewire's socket transport, 256 KiB while reads come
      full);
    * a protocol that stops working through its own buffer of requests when told
      (:meth:`transportCongested`, or ``pauseProducing`` after registering itself with
      ``transport.registerProducer(self, True)``) and goes on when told again holds at
      most the mark plus one reply, whatever the peer sends.

    Declared protocols (:mod:`statewire.declarative`) and the helpers of
    :mod:`statewire.basic` do the second without being asked: frames stop being cut
    after the current one and wait, in order, until the transport drains.
    """

    #: the factory that built this protocol (set by ``Factory.buildProtocol``)
    factory: Any = None

    def dataReceived(self, data: bytes) -> None:
        """Called with bytes as they arrive, in chunks of any size."""

    def transportCongested(self, congested: bool) -> None:
        """Called with ``True`` when the transport's unsent data passes its high-water
        mark (reading from the peer has stopped), with ``False`` once the peer has taken
        enough (reading goes on). Override it to stop making replies in between, even in
        the middle of a read; it is called from inside ``write``. (Not Twisted's: there,
        only a registered producer hears of it.)"""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Called once when the connection closes; ``reason`` says how."""


class Factory:
    """Builds one :class:`Protocol` per connection.

    Set ``protocol`` to the protocol class, or override :meth:`buildProtocol`; returning
    ``None`` from it refuses the connection.
    """

    protocol: Any = None
    #: how many listening ports use this factory
    numPorts = 0
    #: log when ports start and stop
    noisy = True

    @classmethod
    def forProtocol(cls, protocol: Any, *args: Any, **kwargs: Any) -> Any:
        """A factory of this class (made with ``args``/``kwargs``) building ``protocol``."""
        factory = cls(*args, **kwargs)
        factory.protocol = protocol
        return factory

    def doStart(self) -> None:
        """A port starts using this factory: the first one calls :meth:`startFactory`."""
        if not self.numPorts:
            self.startFactory()
        self.numPorts += 1

    def doStop(self) -> None:
        """A port stopped using this factory: the last one calls :meth:`stopFactory`."""
        if self.numPorts <= 0:
            return
        self.numPorts -= 1
        if not self.numPorts:
            self.stopFactory()

    def startFactory(self) -> None:
        """Open what the protocols share (files, pools); called once before serving."""

    def stopFactory(self) -> None:
        """Release what :meth:`startFactory` opened; called once after serving."""

    # statewire's own, for work that waits (Twisted has no counterpart on a factory):

    def beforeServing(self) -> Awaitable[None] | None:
        """Called each time one of statewire's ports starts with this factory, after
        :meth:`doStart`: what it returns, if anything, is awaited before the port accepts
        a connection (run to its end at once when no loop runs yet, as before
        ``reactor.run()``: a failure then raises from ``listenTCP``, as a failing
        :meth:`startFactory` does; beside a running loop, a failure stops the port and
        fails its ``ready``). An application's startup: ``asgi(app)``'s ``lifespan``."""
        return None

    def afterServing(self) -> Awaitable[None] | None:
        """Called at statewire's reactor's shutdown, once every connection has closed,
        when the factory's ports have all stopped: what it returns, if anything, is
        awaited before the shutdown ends (``run()`` returns). An application's own
        shutdown: ``asgi(app)``'s ``lifespan``."""
        return None

    def buildProtocol(self, addr: Address) -> Any:
        """A protocol for a connection from ``addr``, or ``None`` to refuse it."""
        if self.protocol is None:
            raise TypeError(f"{type(self).__name__}.protocol is not set")
        protocol = self.protocol()
        protocol.factory = self
        return protocol


class ServerFactory(Factory):
    """A factory for servers (Twisted's name; the same as :class:`Factory`)."""


class ClientFactory(Factory):
    """A factory for client connections, told when they fail or end."""

    def startedConnecting(self, connector: Any) -> None:
        """A connection attempt started."""

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """The connection could not be made (refused, unreachable, timed out)."""

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        """An established connection ended."""


def innermost(factory: object, wanted: Callable[[object], bool]) -> object:
    """``factory``, or the factory it wraps (statewire's PROXY reader's ``wrapped``,
    Twisted's ``wrappedFactory``), and so on, the first that is ``wanted``; the last found
    when none is (bounded: 8 wrappers)."""
    found = factory
    for _ in range(8):
        if wanted(found):
            return found
        inner = getattr(found, "wrapped", None) or getattr(found, "wrappedFactory", None)
        if inner is None:
            return found
        found = inner
    return found
