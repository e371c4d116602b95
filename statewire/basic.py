"""Twisted's basic protocols, declared as statewire machines.

A protocol written for ``twisted.protocols.basic`` runs after changing one import::

    from statewire.basic import LineReceiver

Each helper is a :class:`~statewire.declarative.MachineProtocol`: ``LineReceiver`` is a
machine with a ``line`` state (framed by ``line(delimiter, MAX_LENGTH)``) and a ``raw``
state, and ``setRawMode`` / ``setLineMode`` are its transitions; the others have one state.
Frames reach ``lineReceived`` / ``stringReceived`` straight from the framer (the compiled
dispatch of :func:`~statewire.machine.forward`), so they cost less than Twisted's own loops.

Where statewire differs from Twisted, on purpose:

* A mode switch (``setRawMode``, ``setLineMode``) made inside a callback takes effect when
  the callback returns: the bytes after the current frame go to the new mode, whatever the
  read boundaries, with no recursion (a protocol may flip modes on every byte).
* ``setLineMode(extra)`` frames ``extra`` after the bytes already received but not yet
  delivered, which is what Twisted does too when it is called from ``lineReceived`` (the
  quirk its docstring warns about); from ``rawDataReceived`` nothing else is buffered, so
  ``extra`` simply comes first.
* The value returned by ``lineReceived`` is ignored (Twisted stops the read loop on a true
  value), unless it is awaitable: a callback may be ``async def`` or return a future, and
  no frame is delivered after it until that completes (see
  :mod:`statewire.declarative`, "Asynchronous outputs"); so do ``rawDataReceived`` and
  ``stringReceived``. ``StatefulProtocol``'s handlers return the next state, not work.
* Closing the connection from a callback (on statewire's transports and its in-memory
  ``StringTransport``) stops the delivery of the frames already received, in every helper.
  Twisted's line receivers and ``StatefulProtocol`` do the same; its ``NetstringReceiver``
  and ``IntNStringReceiver`` go on delivering the rest of the read.
* A line is refused as soon as it cannot fit ``MAX_LENGTH`` any more; Twisted's
  ``LineReceiver`` waits until ``MAX_LENGTH + len(delimiter)`` bytes have no delimiter.
  Conversely a line of exactly ``MAX_LENGTH`` bytes is accepted however its delimiter is
  split across reads (Twisted's ``LineOnlyReceiver`` refuses it when the split falls
  inside the delimiter).
* ``lineLengthExceeded`` is called once per too-long line; what followed it in the buffer
  is dropped and framing starts afresh with the next read (Twisted's ``LineOnlyReceiver``
  reports the same line again on the next read when the method does not close).
* The machine's state is ``machine_state``; ``state`` stays free for protocols of their own
  (Twisted's chat example keeps ``self.state``).
* ``delimiter`` and ``MAX_LENGTH`` may be changed per instance; the change applies from the
  next read.
* After ``lengthLimitExceeded`` (``IntNStringReceiver``) nothing more is framed on that
  connection (Twisted would call it again on each later read of the same header).
* A peer that does not read what the callbacks write holds them back: once the
  transport's unsent data passes its high-water mark, no more frames are delivered (the
  rest of the read waits, in order) until it drains; Twisted's helpers go on through the
  whole read. This pause and the protocol's own ``pauseProducing`` are independent: each
  resume lifts only its own.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Protocol

from automat import TypeMachineBuilder

from grammars import fixed, line, netstring, prefixed, raw
from statewire.declarative import MachineProtocol, ProtocolHost
from statewire.machine import RemoteProtocolError, forward

__all__ = [
    "Int8StringReceiver",
    "Int16StringReceiver",
    "Int32StringReceiver",
    "IntNStringReceiver",
    "LineOnlyReceiver",
    "LineReceiver",
    "NetstringParseError",
    "NetstringReceiver",
    "StatefulProtocol",
    "StringTooLongError",
]


class NetstringParseError(ValueError):
    """The peer sent something that is not a netstring (Twisted's name)."""


class StringTooLongError(AssertionError):
    """``sendString`` was given a string too long for the length prefix."""


# Grammars are shared between connections (and their decoders cached per connection).
@lru_cache(maxsize=256)
def _line(delimiter: bytes, max_length: int) -> Any:
    return line(delimiter, max_length=max_length)


@lru_cache(maxsize=256)
def _netstring(max_length: int) -> Any:
    return netstring(max_length=max_length)


@lru_cache(maxsize=256)
def _prefixed(struct_format: str, max_length: int) -> Any:
    width = struct.calcsize(struct_format)
    little = struct_format[:1] == "<"
    return prefixed(width, byteorder="little" if little else "big", max_length=max_length)


@lru_cache(maxsize=256)
def _block(size: int) -> Any:
    return fixed(size)


class _Frames(Protocol):
    """The one input of the single-state helpers."""

    def frame(self, data: bytes) -> None: ...


def _single_state(state: str, hook: str) -> Any:
    """A machine with one state in which every frame goes to the protocol's ``hook``."""
    builder = TypeMachineBuilder(_Frames, MachineProtocol)
    builder.state(state).upon(_Frames.frame).loop()(forward(hook))
    return builder.build()


class _Receiver(MachineProtocol):
    """What the helpers share: pausing, and framings read from class attributes."""

    #: whether delivery is paused (``pauseProducing``)
    paused = False

    def dataReceived(self, data: bytes) -> None:
        """Frame ``data`` (after taking in a changed delimiter or limit)."""
        self.refresh_framing()
        super().dataReceived(data)

    def pauseProducing(self) -> None:
        """Stop delivering (after the current frame) and stop reading."""
        self.paused = True
        self.transport.pauseProducing()
        if self.machine_engine is not None:
            self.machine_engine.hold("producer")

    def resumeProducing(self) -> None:
        """Deliver what is buffered, then read again (unless the transport's write buffer
        is still over its high-water mark: that pause is the transport's to lift; nor
        while too much arrived during a callback's pending work)."""
        self.paused = False
        engine = self.machine_engine
        if engine is None or not engine.reading_held:
            self.transport.resumeProducing()
        if engine is not None:
            engine.release("producer")

    def stopProducing(self) -> None:
        """Stop delivering and tell the transport to stop."""
        self.paused = True
        self.transport.stopProducing()
        if self.machine_engine is not None:
            self.machine_engine.hold("stopped")


class _ReceiverHost(ProtocolHost):
    """A helper's host: reading paused by the protocol itself is for it to resume."""

    __slots__ = ()

    def resume_reading(self, core: MachineProtocol) -> None:
        assert isinstance(core, _Receiver)
        if not core.paused:
            super().resume_reading(core)


_Receiver.machine_host = _ReceiverHost()


class _Lines(Protocol):
    def line(self, line: bytes) -> None: ...
    def raw(self, data: bytes) -> None: ...
    def setRawMode(self) -> None: ...
    def setLineMode(self) -> None: ...


_lines = TypeMachineBuilder(_Lines, MachineProtocol)
_line_mode = _lines.state("line")
_raw_mode = _lines.state("raw")
_line_mode.upon(_Lines.line).loop()(forward("lineReceived"))
_raw_mode.upon(_Lines.raw).loop()(forward("rawDataReceived"))
_line_mode.upon(_Lines.setRawMode).to(_raw_mode).returns(None)
_raw_mode.upon(_Lines.setLineMode).to(_line_mode).returns(None)
_line_mode.upon(_Lines.setLineMode).loop().returns(None)
_raw_mode.upon(_Lines.setRawMode).loop().returns(None)


def _line_grammar(protocol: Any, data: object) -> Any:
    return _line(protocol.delimiter, protocol.MAX_LENGTH)


class LineReceiver(_Receiver):
    """Lines, or raw data, depending on the mode (Twisted's ``LineReceiver``).

    Override :meth:`lineReceived` (and :meth:`rawDataReceived` if you use raw mode).
    """

    #: the line delimiter
    delimiter = b"\r\n"
    #: longest line accepted (without the delimiter)
    MAX_LENGTH = 16384
    #: 1 in line mode, 0 in raw mode
    line_mode = 1

    machine = _lines.build()
    framings = {_line_mode: _line_grammar, _raw_mode: raw()}
    routes = {_line_mode: _Lines.line, _raw_mode: _Lines.raw}

    def lineReceived(self, line: bytes) -> None:
        """Called with each line, without its delimiter."""
        raise NotImplementedError

    def rawDataReceived(self, data: bytes) -> None:
        """Called with the bytes received in raw mode."""
        raise NotImplementedError

    def setRawMode(self) -> None:
        """Deliver what follows to :meth:`rawDataReceived`."""
        self.line_mode = 0
        self.inputs.setRawMode()

    def setLineMode(self, extra: bytes = b"") -> None:
        """Deliver what follows as lines; ``extra`` (bytes a ``rawDataReceived`` did not
        use) is framed as lines too (see the module docs for the order)."""
        self.line_mode = 1
        self.inputs.setLineMode()
        if extra:
            self.machine_engine.feed(extra)  # type: ignore[union-attr]

    def clearLineBuffer(self) -> bytes:
        """Drop and return the bytes received but not yet delivered."""
        return self.discard_input()

    def sendLine(self, line: bytes) -> None:
        """Send ``line`` followed by the delimiter."""
        self.transport.write(line + self.delimiter)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line longer than ``MAX_LENGTH`` arrived; ``line`` holds it and whatever was
        buffered after it (all dropped). By default the connection is closed."""
        self.transport.loseConnection()

    def remoteError(self, error: RemoteProtocolError) -> None:
        """A line too long: :meth:`lineLengthExceeded` with the buffered bytes."""
        self.lineLengthExceeded(self.discard_input())


class LineOnlyReceiver(_Receiver):
    """Lines only, no raw mode (Twisted's ``LineOnlyReceiver``)."""

    delimiter = b"\r\n"
    MAX_LENGTH = 16384

    machine = _single_state("line", "lineReceived")
    framings = {"line": _line_grammar}
    routes = {"line": _Frames.frame}

    def lineReceived(self, line: bytes) -> None:
        """Called with each line, without its delimiter."""
        raise NotImplementedError

    def sendLine(self, line: bytes) -> None:
        """Send ``line`` followed by the delimiter."""
        self.transport.write(line + self.delimiter)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line longer than ``MAX_LENGTH`` arrived (``line``: that line, without what
        followed it, which is dropped). By default the connection is closed."""
        self.transport.loseConnection()

    def remoteError(self, error: RemoteProtocolError) -> None:
        """A line too long: :meth:`lineLengthExceeded` with that line."""
        line = self.discard_input().partition(self.delimiter)[0]
        self.lineLengthExceeded(line)


class NetstringReceiver(_Receiver):
    """Netstrings (``b"5:hello,"``), as Twisted's ``NetstringReceiver``.

    A malformed or oversize netstring sets :attr:`brokenPeer` and closes the connection.
    """

    #: longest string accepted
    MAX_LENGTH = 99999
    #: set to 1 when the peer sent something that is not a netstring
    brokenPeer = 0

    machine = _single_state("string", "stringReceived")
    framings = {"string": lambda protocol, data: _netstring(protocol.MAX_LENGTH)}
    routes = {"string": _Frames.frame}

    def stringReceived(self, string: bytes) -> None:
        """Called with the payload of each netstring."""
        raise NotImplementedError

    def sendString(self, string: bytes) -> None:
        """Send ``string`` as a netstring."""
        self.transport.write(b"%d:%s," % (len(string), string))

    def remoteError(self, error: RemoteProtocolError) -> None:
        """Not a netstring, or too long: set :attr:`brokenPeer` and close."""
        self.brokenPeer = 1
        self.transport.loseConnection()


class IntNStringReceiver(_Receiver):
    """Strings after an N-byte length prefix (Twisted's ``IntNStringReceiver``).

    Subclasses set ``structFormat`` (a :mod:`struct` format such as ``"!I"``) and
    ``prefixLength``.
    """

    structFormat = "!I"
    prefixLength = 4
    #: longest string accepted
    MAX_LENGTH = 99999

    machine = _single_state("string", "stringReceived")
    framings = {
        "string": lambda protocol, data: _prefixed(protocol.structFormat, protocol.MAX_LENGTH)
    }
    routes = {"string": _Frames.frame}

    def stringReceived(self, string: bytes) -> None:
        """Called with each string, without its prefix."""
        raise NotImplementedError

    def sendString(self, string: bytes) -> None:
        """Send ``string`` after its length; too long for the prefix raises
        :class:`StringTooLongError`."""
        if len(string) >= 2 ** (8 * self.prefixLength):
            raise StringTooLongError(
                f"cannot send {len(string)} bytes: the maximum is "
                f"{2 ** (8 * self.prefixLength) - 1}"
            )
        self.transport.write(struct.pack(self.structFormat, len(string)) + string)

    def lengthLimitExceeded(self, length: int) -> None:
        """A prefix announced ``length`` bytes, over ``MAX_LENGTH``. By default the
        connection is closed."""
        self.transport.loseConnection()

    def remoteError(self, error: RemoteProtocolError) -> None:
        """A prefix over the limit: :meth:`lengthLimitExceeded` with its length."""
        header = self.machine_engine.framer().buffered[: self.prefixLength]  # type: ignore[union-attr]
        (length,) = struct.unpack(self.structFormat, header)
        self.lengthLimitExceeded(length)

    @property
    def recvd(self) -> bytes:
        """The bytes received but not yet delivered (Twisted's compatibility buffer);
        assigning it replaces them."""
        return b"" if self.machine_engine is None else self.machine_engine.buffered

    @recvd.setter
    def recvd(self, data: bytes) -> None:
        self.discard_input()
        self.machine_engine.feed(data)  # type: ignore[union-attr]


class Int32StringReceiver(IntNStringReceiver):
    """Strings after a 4-byte big-endian length."""

    structFormat = "!I"
    prefixLength = 4


class Int16StringReceiver(IntNStringReceiver):
    """Strings after a 2-byte big-endian length."""

    structFormat = "!H"
    prefixLength = 2


class Int8StringReceiver(IntNStringReceiver):
    """Strings after a 1-byte length."""

    structFormat = "!B"
    prefixLength = 1


def _block_grammar(protocol: Any, data: object) -> Any:
    state = protocol._sful_state
    return _WAITING if state is None else _block(state[1])


_WAITING = raw()  # no bytes can arrive before getInitialState has been called


class StatefulProtocol(_Receiver):
    """Blocks of sizes chosen as the protocol goes (Twisted's ``StatefulProtocol``).

    :meth:`getInitialState` returns ``(handler, size)``; each handler is called with exactly
    ``size`` bytes and returns the next ``(handler, size)``, or ``None`` to keep the current
    one. A size of 0 gives the handler one empty block.
    """

    _sful_state: tuple[Any, int] | None = None

    machine = _single_state("block", "_sful_block")
    framings = {"block": _block_grammar}
    routes = {"block": _Frames.frame}

    def makeConnection(self, transport: Any) -> None:
        """Connect, then ask :meth:`getInitialState` for the first block (as Twisted)."""
        super().makeConnection(transport)
        self._sful_state = self.getInitialState()
        self.refresh_framing()

    def getInitialState(self) -> tuple[Any, int]:
        """Return ``(handler, size)`` for the first block."""
        raise NotImplementedError

    def _sful_block(self, data: bytes) -> None:
        state = self._sful_state
        assert state is not None
        following = state[0](data)
        if following is not None:
            self._sful_state = following
            if following[1] != state[1]:
                self.refresh_framing()
