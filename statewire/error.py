"""Connection errors and :class:`Failure`, with Twisted's names; the roots of protocol
errors.

``connectionLost(reason)`` receives a :class:`Failure` wrapping :class:`ConnectionDone` (a
clean close) or :class:`ConnectionLost` (anything else), so code written for Twisted that
calls ``reason.check(ConnectionDone)`` or ``reason.getErrorMessage()`` keeps working.

Protocol errors say whose fault they were, as h11's do: :class:`RemoteProtocolError` when
the peer broke the protocol (framing errors — :class:`statewire.framing.FramingError` and
its kinds — and the machine's refusals, :class:`statewire.machine.UnexpectedInput` and
:class:`statewire.machine.UnroutableFrame`), :class:`LocalProtocolError` when our side did;
both are :class:`ProtocolError`. This module imports nothing of statewire, so every layer
can build on these roots.
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

from grammars.errors import restored


class ProtocolError(Exception):
    """Root of the protocol errors: catch it for "the protocol was broken, by either side"."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled by its attributes: its subclasses' arguments are keyword-only
        return (restored, (type(self), self.args, self.__dict__))


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. ``state`` names the state the connection was in (and is
    still in), when a machine was running; ``frame`` is the frame at fault, if any."""

    def __init__(self, message: str, *, state: str | None = None, frame: Any = None) -> None:
        super().__init__(message)
        self.state = state
        self.frame = frame


class LocalProtocolError(ProtocolError):
    """Our side broke the protocol: a reply the protocol's grammar cannot build, an output
    used out of turn. Code raising it in an output gets the local-error handling (logged,
    that connection aborted)."""


class ConnectionDone(Exception):
    """The connection was closed cleanly."""

    def __str__(self) -> str:
        return "Connection was closed cleanly."


class ConnectionLost(Exception):
    """The connection was lost in a non-clean fashion (reset, error, abort)."""

    def __str__(self) -> str:
        detail = f": {self.args[0]}" if self.args else "."
        return f"Connection to the other side was lost in a non-clean fashion{detail}"


class ConnectionAborted(ConnectionLost):
    """The connection was aborted on this side (``abortConnection``)."""

    def __str__(self) -> str:
        return "Connection was aborted locally."


class ConnectionRefusedError(ConnectionLost):
    """The other side refused the connection."""

    def __str__(self) -> str:
        detail = f": {self.args[0]}" if self.args else "."
        return f"Connection was refused by other side{detail}"


class ConnectError(Exception):
    """A client connection could not be made (see ``args`` for why)."""


class TimeoutError(ConnectError):
    """A client connection attempt timed out."""


class ReactorNotRunning(RuntimeError):
    """``reactor.stop()`` was called when the reactor is not running, or already stopping
    (as Twisted's ``twisted.internet.error.ReactorNotRunning``)."""


class CannotListenError(OSError):
    """A port could not be bound; says which address and why."""

    def __init__(self, interface: str, port: int | str, reason: BaseException) -> None:
        self.interface = interface
        self.port = port
        self.reason = reason
        where = f"{interface or 'any'}:{port}" if port != "" else interface
        super().__init__(f"Couldn't listen on {where}: {reason}.")


class Failure:
    """An exception with its traceback, as passed to ``connectionLost`` and errbacks."""

    def __init__(self, value: BaseException, tb: TracebackType | None = None) -> None:
        self.value = value
        self.type = type(value)
        self.tb = tb if tb is not None else value.__traceback__

    def check(self, *types: type[BaseException]) -> type[BaseException] | None:
        """The first of ``types`` the error is an instance of, else ``None``."""
        for kind in types:
            if isinstance(self.value, kind):
                return kind
        return None

    def trap(self, *types: type[BaseException]) -> type[BaseException]:
        """Like :meth:`check`, but re-raise the error when it matches none of ``types``."""
        kind = self.check(*types)
        if kind is None:
            self.raiseException()
        assert kind is not None
        return kind

    def raiseException(self) -> None:
        raise self.value.with_traceback(self.tb)

    def getErrorMessage(self) -> str:
        return str(self.value)

    def getTraceback(self) -> str:
        return "".join(traceback.format_exception(self.type, self.value, self.tb))

    def __repr__(self) -> str:
        return f"<Failure {self.type.__module__}.{self.type.__qualname__}: {self.value}>"


#: The reason given for a clean close.
connectionDone = Failure(ConnectionDone())
