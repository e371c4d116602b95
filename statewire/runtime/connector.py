"""Client connection attempts (``connectTCP``, ``connectUNIX``, ``connectSSL`` and the
endpoints built on them), with Twisted's ``IConnector`` semantics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statewire.address import Address
from statewire.error import ConnectError, Failure
from statewire.error import TimeoutError as ConnectTimeout
from statewire.runtime.asyncio_transport import Bridge
from statewire.runtime.connecting import Opened
from statewire.runtime.connection import Connection
from statewire.runtime.ports import Counted

if TYPE_CHECKING:
    from statewire._reactor import Reactor

log = logging.getLogger("statewire")


class Connector(Counted):
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
        self.reactor.connectors.add(self)
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
        self.reactor.connectors.discard(self)
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
