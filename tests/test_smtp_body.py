"""The DATA body read in bulk is the body read line by line: the server takes the reads of
``data`` whole (one frame a read), cuts the text lines itself, unstuffs them with one
``replace`` and checks them together when it can. These tests hold it to the rules as
written line by line (:func:`line_by_line`, the server's former path): the same pieces
for the sink, the same refusal, whatever the bytes (bare CR and LF, dots, lines too
long, the size limit) and however the reads cut them; and a sink that takes its time
is waited for piece by piece."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_smtp_server import ENVELOPE, Recorder, Session

from grammars.smtp import TEXT_LIMIT, replies
from statewire.framing import decode
from statewire.protocols.smtp import Envelope, MessageSink, SMTPConnection
from statewire.testing.strategies import chunkings

DATA = ENVELOPE + b"DATA\r\n"


def line_by_line(
    body: bytes, piece_size: int, max_size: int, refuse_bare: bool
) -> tuple[list[bytes], str]:
    """What the sink gets and the reply, one CRLF line at a time: ``body`` is what follows
    ``354``, up to and with its end ``CRLF . CRLF``."""
    pieces: list[bytes] = []
    pending = b""
    received = 0
    refusal: str | None = None
    start = 0
    while True:
        hit = body.find(b"\r\n", start)
        text, start = body[start:hit], hit + 2
        if text == b".":
            break
        if len(text) > TEXT_LIMIT - 2:
            refusal = refusal or "500 5.5.6"
            continue
        text = text[1:] if text[:1] == b"." else text
        if refuse_bare and (b"\r" in text or b"\n" in text):
            refusal = refusal or "500 5.5.2"
        received += len(text) + 2
        if refusal is not None:
            continue
        if received > max_size:
            refusal, pending = "552 5.3.4", b""
            continue
        pending += text + b"\r\n"
        if len(pending) >= piece_size:
            pieces.append(pending)
            pending = b""
    if refusal is None and pending:
        pieces.append(pending)
    return pieces, refusal or "250 2.0.0"


_RUNS = st.one_of(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\x00", b" ", b"a"]),
    st.binary(max_size=12),
    st.sampled_from([b"x" * 997, b"x" * 998, b"x" * 999, b"y" * 1500, b"\r" + b"z" * 998]),
)
_BODIES = st.lists(_RUNS, max_size=24).map(b"".join)


@settings(max_examples=300)
@given(
    _BODIES,
    st.sampled_from([1, 3, 16, 100, 64 * 1024]),
    st.sampled_from([10, 200, 3000, 1 << 20]),
    st.booleans(),
    st.data(),
)
def test_the_body_in_bulk_is_the_body_line_by_line(
    body: bytes, piece_size: int, max_size: int, refuse_bare: bool, data: st.DataObject
) -> None:
    wire = body + b"\r\n.\r\n"
    if (b"\r\n" + wire).find(b"\r\n.\r\n") < len(body):
        wire = body.replace(b".", b"") + b"\r\n.\r\n"  # one end, the last line
    pieces, answer = line_by_line(wire, piece_size, max_size, refuse_bare)
    session = Session(max_size=max_size)
    session.protocol.piece_size = piece_size
    session.protocol.refuse_bare_newlines = refuse_bare
    assert session.codes(DATA) == ["250", "250 2.1.0", "250 2.1.5", "354"]
    found: list[str] = []
    for chunk in data.draw(chunkings(wire + b"NOOP\r\n", max_chunks=8)):
        found += session.codes(chunk)
    assert found[:2] == [answer, "250 2.0.0"]  # the reply, then NOOP's: read as a command
    assert session.handler.sinks[0].pieces == pieces
    assert session.state == "identified"


@given(st.integers(0, 3), st.data())
def test_the_end_and_the_commands_after_it_at_any_cut(dots: int, data: st.DataObject) -> None:
    body = b"." * (dots + 2) + b"\r\n" + b"." * dots + b"x\r\n"
    script = DATA + body + b".\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nQUIT\r\n"
    session = Session()
    out = b"".join(session(chunk) for chunk in data.draw(chunkings(script, max_chunks=10)))
    assert out.count(b"250 2.0.0 Ok: queued") == 2 and out.endswith(b"221 2.0.0 Bye\r\n")
    message = b"." * (dots + 1) + b"\r\n" + b"." * max(dots - 1, 0) + b"x\r\n"
    assert session.handler.messages[0][1] == message
    assert session.handler.messages[1][1] == b""


class Unhurried(MessageSink):
    """A sink whose every write takes a turn of the loop; it checks that no write starts
    before the one before it is done."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.busy = False
        self.closed = False

    async def write(self, data: bytes) -> None:  # type: ignore[override]
        assert not self.busy, "a write started before the one before it was done"
        self.busy = True
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.pieces.append(data)
        self.busy = False

    def close(self) -> None:
        assert not self.busy
        self.closed = True


class Unhurrieds(Recorder):
    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        self.sinks.append(Unhurried())  # type: ignore[arg-type]
        return self.sinks[-1]


async def _settle() -> None:
    for _ in range(1000):
        await asyncio.sleep(0)


@given(st.sampled_from([1, 5, 40]), st.data())
def test_a_sink_that_takes_its_time_gets_the_same_pieces_in_order(
    piece_size: int, data: st.DataObject
) -> None:
    body = b"".join(b"." * (n % 3) + b"line %d\r\n" % n for n in range(30))
    wire = body + b".\r\nNOOP\r\n"
    expected, _ = line_by_line(wire, piece_size, 1 << 20, True)
    chunks = data.draw(chunkings(wire, max_chunks=6))

    async def run() -> tuple[Any, bytes]:
        session = Session()
        session.factory.handler = Unhurrieds()
        session.protocol.piece_size = piece_size
        session(DATA)
        for chunk in chunks:
            session.protocol.dataReceived(chunk)
            await _settle()
        return session, session.transport.value()

    session, out = asyncio.run(run())
    sink = session.factory.handler.sinks[0]
    assert sink.pieces == expected and sink.closed
    assert out.endswith(b"250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n")  # the message's, then NOOP's


def test_the_replies_to_one_read_leave_in_one_write() -> None:
    session = Session()
    writes: list[bytes] = []
    write = session.transport.write

    def counted(data: bytes) -> None:
        writes.append(data)
        write(data)

    session.transport.write = counted  # type: ignore[method-assign]
    session.protocol.dataReceived(DATA + b"Subject: x\r\n\r\nbody\r\n.\r\n" + DATA)
    assert len(writes) == 1
    envelope = [250, 250, 250, 354]  # EHLO, MAIL, RCPT, DATA
    assert [answer.code for answer in decode(replies(), writes)] == [*envelope, 250, *envelope]
