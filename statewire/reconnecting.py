"""``ReconnectingClientFactory``: a client factory that connects again, with back-off.

Twisted's class, with Twisted's attribute names and semantics. A connection attempt that
fails (``clientConnectionFailed``) or a connection that ends (``clientConnectionLost``)
makes the factory call ``connector.connect()`` again after ``delay`` seconds; the delay
then grows by ``factor`` up to ``maxDelay``, each delay shaken by a normal variate of
relative spread ``jitter`` so that many clients cut off together do not come back together.
Call :meth:`ReconnectingClientFactory.resetDelay` once connected (in ``buildProtocol`` or
the protocol's ``connectionMade``): the factory does not know by itself which connection
counts as a success. :meth:`~ReconnectingClientFactory.stopTrying` ends it all.

It works with any connector that has ``connect()`` and ``stopConnecting()``: those of
``reactor.connectTCP``/``connectUNIX``/``connectSSL``, and those behind the client
endpoints, which report to the factory in the same way (an endpoint's ``connect()``
awaitable settles with the first attempt only; later connections show in the factory's
``buildProtocol``). The delays are scheduled with ``clock.callLater``: ``clock`` defaults
to the connector's reactor, so tests can use short delays on a real reactor, or any object
with ``callLater``.

Differences with Twisted: the jittered delay is capped at ``maxDelay`` (Twisted caps
before the jitter, so a delay may pass it) and is never negative (a large ``jitter`` could
draw one; statewire's ``callLater`` refuses them), so that the documented bound holds; and
``delay`` starts at ``initialDelay`` also when a subclass or the instance sets
``initialDelay`` (in Twisted, ``delay`` keeps the base class's 1 s until ``resetDelay()``).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any, Protocol

from statewire.error import Failure
from statewire.protocol import ClientFactory

__all__ = ["ReconnectingClientFactory"]

log = logging.getLogger("statewire")


class Clock(Protocol):
    """What the factory schedules its retries with: a reactor, or a test's clock."""

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``f`` in ``delay`` seconds; return something with ``cancel()``."""
        ...


class ReconnectingClientFactory(ClientFactory):
    """A :class:`~statewire.protocol.ClientFactory` that reconnects with exponential
    back-off (see the module documentation).

    Set the class attributes on a subclass or on the instance. ``retries``, ``delay`` and
    ``continueTrying`` are its state: read them, or reset them with :meth:`resetDelay`.
    """

    #: the longest wait between two attempts, in seconds
    maxDelay: float = 3600
    #: the wait before the first retry, in seconds
    initialDelay: float = 1.0
    #: how much the wait grows after each retry (Twisted's: e)
    factor: float = math.e
    #: the relative spread of the random variation of each wait (0: none)
    jitter: float = 0.119626565582
    #: retries since the last :meth:`resetDelay`
    retries: int = 0
    #: give up after this many consecutive retries (``None``: never)
    maxRetries: int | None = None
    #: whether to retry at all (Twisted uses ints: 1 or 0); :meth:`stopTrying` clears it
    continueTrying: int = 1
    #: the connector of the last failure or loss: the one :meth:`retry` reconnects
    connector: Any = None
    #: what schedules the retries (``None``: the connector's reactor)
    clock: Clock | None = None
    _callID: Any = None
    _delay: float | None = None

    @property
    def delay(self) -> float:
        """The wait before the next retry: ``initialDelay`` at first and after
        :meth:`resetDelay`, growing by ``factor`` as retries fail."""
        return self.initialDelay if self._delay is None else self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._delay = seconds

    def startedConnecting(self, connector: Any) -> None:
        """An attempt started: remember its connector, so that :meth:`stopTrying` can
        give it up (Twisted learns of the connector only from a failure or a loss)."""
        self.connector = connector

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """The attempt failed: try again later, unless told to stop."""
        if self.continueTrying:
            self.connector = connector
            self.retry()

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        """The connection ended: connect again later, unless told to stop."""
        if self.continueTrying:
            self.connector = connector
            self.retry()

    def retry(self, connector: Any = None) -> None:
        """Have ``connector`` (default: the last one that failed or lost its connection)
        connect again after ``delay`` seconds, then grow ``delay``.

        Does nothing after :meth:`stopTrying`, nor once ``retries`` passes ``maxRetries``
        (both logged when ``noisy``). ``ValueError`` when there is no connector to retry.
        """
        if not self.continueTrying:
            if self.noisy:
                log.info("abandoning %s on explicit request", _name(connector))
            return
        if connector is None:
            if self.connector is None:
                raise ValueError("no connector to retry")
            connector = self.connector
        self.retries += 1
        if self.maxRetries is not None and self.retries > self.maxRetries:
            if self.noisy:
                log.info("abandoning %s after %d retries", _name(connector), self.retries)
            return
        if self.jitter:
            self.delay = random.normalvariate(self.delay, self.delay * self.jitter)
        self.delay = min(max(self.delay, 0.0), self.maxDelay)
        if self.noisy:
            log.info("%s will retry in %.3g seconds", _name(connector), self.delay)

        def reconnect() -> None:
            self._callID = None
            connector.connect()

        self._callID = self._clock(connector).callLater(self.delay, reconnect)
        self.delay = min(self.delay * self.factor, self.maxDelay)

    def _clock(self, connector: Any) -> Clock:
        if self.clock is not None:
            return self.clock
        reactor: Clock | None = getattr(connector, "reactor", None)
        if reactor is None:
            raise ValueError(f"{connector!r} has no reactor: set the factory's clock")
        return reactor

    def stopTrying(self) -> None:
        """Stop: cancel the retry that is waiting, give up the attempt in progress, and
        make later failures and losses final. An established connection stays open."""
        if self._callID is not None:
            self._callID.cancel()
            self._callID = None
        self.continueTrying = 0
        if self.connector is not None:
            self.connector.stopConnecting()  # a no-op when it is not connecting

    def resetDelay(self) -> None:
        """Start afresh: ``delay`` back to ``initialDelay``, ``retries`` to 0, and trying
        again after :meth:`stopTrying`. Call it once a connection succeeded."""
        self.delay = self.initialDelay
        self.retries = 0
        self._callID = None
        self.continueTrying = 1


def _name(connector: Any) -> str:
    """How the log names a connector: by where it connects, when it says."""
    destination = getattr(connector, "getDestination", None)
    return repr(destination()) if callable(destination) else repr(connector)
