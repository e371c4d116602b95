"""The small standard services of the seed document: RFCs 862-868.

Each is a :class:`~statewire.protocol.Protocol` to serve with a :class:`Factory`, e.g.
``Factory.forProtocol(Echo)``.
"""

from __future__ import annotations

import struct
import time

from statewire.protocol import Protocol


class Echo(Protocol):
    """Echo (RFC 862): send back every byte received."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Discard(Protocol):
    """Discard (RFC 863): read and throw away every byte."""


class Chargen(Protocol):
    """Character generator (RFC 864): an endless rotating pattern of printable ASCII.

    It is a pull producer on its transport: each time the transport has room it asks for
    more, so a slow reader costs no memory and no timer is needed.
    """

    LINE = 72
    _pattern = bytes(range(0x20, 0x7F))

    def connectionMade(self) -> None:
        self._offset = 0
        self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        """Write the next 64 lines (the transport calls this while it has room)."""
        pattern = self._pattern * 2
        lines = []
        for _ in range(64):
            start = self._offset % len(self._pattern)
            lines.append(pattern[start : start + self.LINE] + b"\r\n")
            self._offset += 1
        self.transport.write(b"".join(lines))

    def stopProducing(self) -> None:
        """The connection closed; nothing to release."""


class QOTD(Protocol):
    """Quote of the day (RFC 865): send a quote and CRLF, then close.

    The quote is the factory's ``quote`` attribute when it has one (bytes or text),
    else :attr:`quote`.
    """

    quote = b"An apple a day keeps the doctor away"

    def connectionMade(self) -> None:
        quote = getattr(self.factory, "quote", None) or self.quote
        text = quote if isinstance(quote, bytes) else quote.encode("utf-8")
        self.transport.write(text + b"\r\n")
        self.transport.loseConnection()


class Daytime(Protocol):
    """Daytime (RFC 867): send the date and time as text, then close."""

    def connectionMade(self) -> None:
        self.transport.write(time.asctime(time.gmtime()).encode("ascii") + b"\r\n")
        self.transport.loseConnection()


#: Seconds from 1900-01-01 (the RFC 868 epoch) to 1970-01-01.
_RFC868_OFFSET = 2208988800


class Time(Protocol):
    """Time (RFC 868): send the seconds since 1900 as a 32-bit big-endian number, close."""

    def connectionMade(self) -> None:
        seconds = (int(time.time()) + _RFC868_OFFSET) % (1 << 32)
        self.transport.write(struct.pack("!I", seconds))
        self.transport.loseConnection()
