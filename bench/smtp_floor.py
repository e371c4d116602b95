"""The least issue 16's handler API costs: ``bench_smtp.py``'s ``api floor`` row.

Issue 16 asks for a server with "a handler interface for the application: accept or
refuse each ``MAIL FROM``, ``RCPT TO`` and message", and for it to reach 2x Twisted's
``ESMTP`` and 3x aiosmtpd. :class:`ApiFloorSink` measures what that interface alone
costs on top of the least an SMTP server can do (``bench_smtp.AsyncioSink``: every command
but ``DATA``, ``EHLO`` and ``QUIT`` answered ``250``, the body skipped to its
``CRLF.CRLF``): per message, the two paths cut out of their brackets, an envelope, the
handler asked about the sender and the recipient, a message sink asked for, handed the
body (dots unstuffed within each read) and asked for the decision.

Everything a real server adds is left out, to its advantage: no command syntax, no
sequence (a ``RCPT`` before ``MAIL`` is not refused), no parameters, no limits, no
deadlines, no line checks in the body, no enhanced status codes of its own choosing. So
it bounds what a server whose per-message work is Python can reach with that interface on
the same loop, transport and client. Dots are unstuffed as the lines are handed on (a line
that starts a piece has its dot dropped there, the others by one ``replace``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

EHLO = b"250-localhost\r\n250-PIPELINING\r\n250 SIZE %d\r\n" % (128 << 20)


class Envelope:
    __slots__ = ("parameters", "recipients", "sender")

    def __init__(self, sender: bytes, parameters: dict[bytes, bytes | None]) -> None:
        self.sender = sender
        self.parameters = parameters
        self.recipients: list[bytes] = []


class Sink:
    """The message's sink: takes the pieces, accepts the message."""

    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None


class Handler:
    """A do-nothing handler: every sender and recipient accepted, the body dropped."""

    def mail(self, session: object, sender: bytes, parameters: dict[bytes, bytes | None]) -> None:
        return None

    def rcpt(
        self, session: object, recipient: bytes, parameters: dict[bytes, bytes | None]
    ) -> None:
        return None

    def message(self, session: object, envelope: Envelope) -> Sink:
        return Sink()


def _path(line: bytes) -> bytes:
    """What is between the brackets (no syntax checked)."""
    return line[line.find(b"<") + 1 : line.rfind(b">")]


class ApiFloorSink(asyncio.Protocol):
    """``AsyncioSink``'s command and body cutting, plus the handler interface."""

    handler = Handler()

    def connection_made(self, transport: Any) -> None:  # (asyncio's, or uvloop's)
        self.begin(transport.write, transport.close)

    def begin(self, write: Callable[[bytes], object], close: Callable[[], object]) -> None:
        """The connection is made: what writes to it and what closes it."""
        self.write, self.close = write, close
        self.buffer = b""
        #: in a body: where its end may start in ``buffer`` (else ``-1``)
        self.body_from = -1
        #: in a body: 2 when ``buffer`` starts with a CRLF already handed on, else 0
        self.resume = 0
        self.envelope: Envelope | None = None
        self.sink: Sink | None = None
        write(b"220 localhost ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out = []
        pos = 0
        handler = self.handler
        while True:
            if self.body_from >= 0:
                sink = self.sink
                assert sink is not None
                start = pos + self.resume
                if buffer[start : start + 1] == b".":  # (a line's stuffed dot: see below)
                    start += 1
                end = buffer.find(b"\r\n.\r\n", self.body_from)
                if end < 0:  # hand on the whole lines, keep the last CRLF (the end may follow)
                    last = buffer.rfind(b"\r\n", self.body_from)
                    if last + 2 > start:
                        sink.write(buffer[start : last + 2].replace(b"\r\n.", b"\r\n"))
                    buffer, pos, self.body_from, self.resume = buffer[last:], 0, 0, 2
                    break
                if end + 2 > start:
                    sink.write(buffer[start : end + 2].replace(b"\r\n.", b"\r\n"))
                pos, self.body_from, self.resume = end + 5, -1, 0
                self.sink = self.envelope = None
                sink.close()
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            line = buffer[pos:end]
            verb = line[:4].upper()
            pos = end + 2
            if verb == b"MAIL":
                sender = _path(line)
                self.envelope = Envelope(sender, {})
                handler.mail(self, sender, {})
                out.append(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                recipient = _path(line)
                handler.rcpt(self, recipient, {})
                assert self.envelope is not None
                self.envelope.recipients.append(recipient)
                out.append(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                assert self.envelope is not None
                self.sink = handler.message(self, self.envelope)
                self.body_from = end  # (an empty body ends at this CRLF's dot)
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"EHLO":
                out.append(EHLO)
            elif verb == b"QUIT":
                out.append(b"221 Bye\r\n")
                self.write(b"".join(out))
                self.close()
                return
            else:
                out.append(b"250 OK\r\n")
        self.buffer = buffer[pos:]
        if out:
            self.write(b"".join(out))


def statewire_factory() -> Any:
    """The same sink on statewire's transports and reactor (``statewire serve
    bench/smtp_floor.py:statewire_factory``): the ``api floor statewire`` row."""
    from statewire.protocol import Factory, Protocol

    class Floor(Protocol):
        def connectionMade(self) -> None:
            self.sink = ApiFloorSink()
            self.sink.begin(self.transport.write, self.transport.loseConnection)

        def dataReceived(self, data: bytes) -> None:
            self.sink.data_received(data)

    return Factory.forProtocol(Floor)
