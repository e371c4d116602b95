"""``statewire.basic`` against Twisted's own ``twisted.protocols.basic`` / ``stateful``.

Each test mixes one subclass body into Twisted's class and into statewire's, runs both on
their in-memory transports and compares what the protocol saw (``events``), what it wrote
and whether it closed. The differential properties feed Twisted one read and statewire
arbitrary reads: the recorders are written so that what they observe does not depend on
the read boundaries (in Twisted it does not either). Where statewire differs on purpose
(see ``statewire.basic``'s docstring) the test pins statewire's documented behaviour.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runtime_helpers import exchange, scenario

from statewire import basic as sb
from statewire._reactor import Reactor
from statewire.protocol import Factory
from statewire.testing.memory import StringTransport
from statewire.testing.strategies import chunked

tb = pytest.importorskip("twisted.protocols.basic")
tstateful = pytest.importorskip("twisted.protocols.stateful")
ttesting = pytest.importorskip("twisted.internet.testing")

HOST = "127.0.0.1"

Event = tuple[Any, ...]


# -- running one body on both implementations -------------------------------------------


def _twisted_base(name: str) -> type:
    if name == "StatefulProtocol":
        return tstateful.StatefulProtocol  # type: ignore[no-any-return]
    return getattr(tb, name)  # type: ignore[no-any-return]


def connect(name: str, body: type, side: str, **attrs: Any) -> tuple[Any, Any]:
    """A protocol of ``body`` mixed into ``name`` of ``side`` ("twisted" / "statewire"),
    connected to that side's ``StringTransport``."""
    if side == "twisted":
        base, transport = _twisted_base(name), ttesting.StringTransport()
    else:
        base, transport = getattr(sb, name), StringTransport()
    cls = type(f"{body.__name__}_{side}", (body, base), attrs)
    protocol = cls()
    protocol.makeConnection(transport)
    return protocol, transport


Step = bytes | Callable[[Any], object]


def observe(name: str, body: type, side: str, steps: Iterable[Step], **attrs: Any) -> Any:
    """Run ``steps`` (reads, or calls on the protocol); return what was observed: the
    events, the bytes written, and whether the protocol closed the connection."""
    protocol, transport = connect(name, body, side, **attrs)
    for step in steps:
        if isinstance(step, bytes):
            protocol.dataReceived(step)
        else:
            step(protocol)
    return protocol.events, transport.value(), bool(transport.disconnecting)


def both(name: str, body: type, steps: list[Step], **attrs: Any) -> tuple[Any, Any]:
    """``observe`` on Twisted and on statewire, with the same steps."""
    return (
        observe(name, body, "twisted", steps, **attrs),
        observe(name, body, "statewire", steps, **attrs),
    )


def record_state(protocol: Any) -> None:
    """A step recording the pause state of the protocol and of its transport."""
    protocol.events.append(("paused", protocol.paused, protocol.transport.producerState))


# -- recorders (the bodies mixed into both implementations) ------------------------------


class Recorder:
    events: list[Event]

    def connectionMade(self) -> None:
        self.events = []


class Lines(Recorder):
    """Records each line and answers it."""

    def lineReceived(self, line: bytes) -> None:
        self.events.append(("line", line))
        self.sendLine(b"got %d" % len(line))  # type: ignore[attr-defined]


class RawBlocks(Recorder):
    """Lines; ``raw N`` switches to raw mode for exactly ``N`` bytes, after which the bytes
    ``rawDataReceived`` did not use go back to line mode through ``setLineMode(rest)``.

    Twisted hands ``rawDataReceived`` whatever is buffered, statewire whatever was read, so
    the raw bytes are recorded once the block is complete, as one event."""

    want = 0
    got = b""

    def lineReceived(self, line: bytes) -> None:
        self.events.append(("line", line))
        self.sendLine(b"> " + line)  # type: ignore[attr-defined]
        if line.startswith(b"raw "):
            self.want, self.got = int(line[4:]), b""
            self.setRawMode()  # type: ignore[attr-defined]

    def rawDataReceived(self, data: bytes) -> None:
        take = self.want - len(self.got)
        self.got += data[:take]
        if len(self.got) == self.want:
            self.events.append(("raw", self.got))
            self.transport.write(b"raw %d;" % len(self.got))  # type: ignore[attr-defined]
            self.setLineMode(data[take:])  # type: ignore[attr-defined]


class Strings(Recorder):
    """Records each string and answers it reversed."""

    def stringReceived(self, string: bytes) -> None:
        self.events.append(("string", string))
        self.sendString(string[::-1])  # type: ignore[attr-defined]


class Blocks(Recorder):
    """StatefulProtocol: a 2-byte size, then a body of that size (echoed); repeat."""

    def getInitialState(self) -> tuple[Any, int]:
        return self.header, 2

    def header(self, data: bytes) -> tuple[Any, int]:
        (size,) = struct.unpack("!H", data)
        self.events.append(("header", size))
        return self.body, size

    def body(self, data: bytes) -> tuple[Any, int]:
        self.events.append(("body", data))
        self.transport.write(data)  # type: ignore[attr-defined]
        return self.header, 2


# -- 1. differential properties under arbitrary reads ------------------------------------

_LINE_BYTES = st.lists(st.sampled_from([b"a", b"b", b"\r", b"\n", b"\x00"]), max_size=16).map(
    b"".join
)


@pytest.mark.parametrize("name", ["LineReceiver", "LineOnlyReceiver"])
@pytest.mark.parametrize("delimiter", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@given(data=st.data())
def test_lines_same_as_twisted_whatever_the_reads(
    accel: str, name: str, delimiter: bytes, data: st.DataObject
) -> None:
    # any bytes are a stream of lines (plus an unfinished one); the alphabet makes
    # delimiters, partial delimiters and empty lines frequent
    wire = b"".join(data.draw(st.lists(_LINE_BYTES, max_size=12)))
    chunks = data.draw(chunked(wire))
    twisted = observe(name, Lines, "twisted", [wire], delimiter=delimiter)
    ours = observe(name, Lines, "statewire", chunks, delimiter=delimiter)
    assert ours == twisted
    assert [e[1] for e in ours[0]] == wire.split(delimiter)[:-1]


def _valid_line(delimiter: bytes) -> st.SearchStrategy[bytes]:
    return _LINE_BYTES.filter(lambda v: (v + delimiter).find(delimiter) == len(v))


@pytest.mark.parametrize("delimiter", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@given(data=st.data())
def test_raw_blocks_and_set_line_mode_same_as_twisted(
    accel: str, delimiter: bytes, data: st.DataObject
) -> None:
    segment = st.one_of(
        _valid_line(delimiter).map(lambda v: v + delimiter),
        # raw payloads are arbitrary bytes: the delimiters in them must not cut lines
        st.one_of(_LINE_BYTES, st.binary(max_size=24)).map(
            lambda p: b"raw %d%s%s" % (len(p), delimiter, p)
        ),
    )
    wire = b"".join(data.draw(st.lists(segment, max_size=10)))
    wire += data.draw(_LINE_BYTES)  # possibly an unfinished line
    chunks = data.draw(chunked(wire))
    twisted = observe("LineReceiver", RawBlocks, "twisted", [wire], delimiter=delimiter)
    ours = observe("LineReceiver", RawBlocks, "statewire", chunks, delimiter=delimiter)
    assert ours == twisted


def test_raw_blocks_example() -> None:
    wire = b"one\r\nraw 7\r\nab\r\ncd\r\ntwo\r\nraw 0\r\nthree\r\nfour"
    twisted, ours = both("LineReceiver", RawBlocks, [wire])
    assert ours == twisted
    assert ours[0] == [
        ("line", b"one"),
        ("line", b"raw 7"),
        ("raw", b"ab\r\ncd\r"),
        ("line", b"\ntwo"),
        ("line", b"raw 0"),
        ("raw", b""),
        ("line", b"three"),
    ]


_NETSTRING = st.binary(max_size=40).map(lambda s: b"%d:%s," % (len(s), s))


@given(data=st.data())
def test_netstrings_same_as_twisted_whatever_the_reads(accel: str, data: st.DataObject) -> None:
    strings = data.draw(st.lists(st.binary(max_size=40), max_size=8))
    unfinished = data.draw(_NETSTRING)
    wire = b"".join(b"%d:%s," % (len(s), s) for s in strings)
    wire += unfinished[: data.draw(st.integers(0, len(unfinished) - 1))]
    chunks = data.draw(chunked(wire))
    twisted = observe("NetstringReceiver", Strings, "twisted", [wire])
    ours = observe("NetstringReceiver", Strings, "statewire", chunks)
    assert ours == twisted
    assert ours[0] == [("string", s) for s in strings]  # empty netstrings included


INTN = [
    ("Int8StringReceiver", "!B", 255),
    ("Int16StringReceiver", "!H", 600),
    ("Int32StringReceiver", "!I", 600),
]


@pytest.mark.parametrize(("name", "fmt", "largest"), INTN, ids=[n for n, _, _ in INTN])
@given(data=st.data())
def test_intn_strings_same_as_twisted_whatever_the_reads(
    accel: str, name: str, fmt: str, largest: int, data: st.DataObject
) -> None:
    sizes = st.one_of(st.integers(0, 20), st.just(largest))
    strings = data.draw(
        st.lists(sizes.map(lambda n: bytes(i % 251 for i in range(n))), max_size=6)
    )
    frames = [struct.pack(fmt, len(s)) + s for s in strings]
    unfinished = struct.pack(fmt, 3) + b"xyz"
    wire = b"".join(frames) + unfinished[: data.draw(st.integers(0, len(unfinished) - 1))]
    chunks = data.draw(chunked(wire))
    twisted = observe(name, Strings, "twisted", [wire])

    # recvd, read between reads, is exactly the bytes after the last complete string
    ends = [0]
    for frame in frames:
        ends.append(ends[-1] + len(frame))
    protocol, transport = connect(name, Strings, "statewire")
    fed = 0
    for chunk in chunks:
        protocol.dataReceived(chunk)
        fed += len(chunk)
        assert protocol.recvd == wire[max(e for e in ends if e <= fed) : fed]
    assert (protocol.events, transport.value(), transport.disconnecting) == twisted
    assert protocol.events == [("string", s) for s in strings]


@given(data=st.data())
def test_stateful_blocks_same_as_twisted_whatever_the_reads(
    accel: str, data: st.DataObject
) -> None:
    bodies = data.draw(st.lists(st.binary(max_size=30), max_size=8))  # empty bodies too
    wire = b"".join(struct.pack("!H", len(b)) + b for b in bodies)
    wire += data.draw(st.sampled_from([b"", b"\x00", b"\x00\x05", b"\x00\x05ab"]))
    chunks = data.draw(chunked(wire))
    twisted = observe("StatefulProtocol", Blocks, "twisted", [wire])
    ours = observe("StatefulProtocol", Blocks, "statewire", chunks)
    assert ours == twisted


class Pairs(Recorder):
    """StatefulProtocol whose handler returns ``None``: the state is kept."""

    def getInitialState(self) -> tuple[Any, int]:
        return self.pair, 2

    def pair(self, data: bytes) -> None:
        self.events.append(("pair", data))


def test_stateful_handler_returning_none_keeps_the_state() -> None:
    twisted, ours = both("StatefulProtocol", Pairs, [b"abcdefg", b"h", b"i"])
    assert ours == twisted
    assert ours[0] == [("pair", b"ab"), ("pair", b"cd"), ("pair", b"ef"), ("pair", b"gh")]


# -- 2. oversize and illegal input --------------------------------------------------------


class LinesTooLong(Lines):
    """Records the lines and each call of ``lineLengthExceeded`` (then closes, as the
    default implementation does)."""

    def lineLengthExceeded(self, line: bytes) -> None:
        self.events.append(("exceeded", line))
        self.transport.loseConnection()  # type: ignore[attr-defined]


LINE_CLASSES = ["LineReceiver", "LineOnlyReceiver"]


@pytest.mark.parametrize("name", LINE_CLASSES)
def test_line_too_long_closes_and_drops_what_follows(name: str) -> None:
    wire = b"ok\r\n" + b"a" * 11 + b"\r\nlater\r\nmore"
    twisted, ours = both(name, LinesTooLong, [wire], MAX_LENGTH=10)
    # only what was called, and in which order (the argument is checked below)
    assert [e[0] for e in ours[0]] == [e[0] for e in twisted[0]] == ["line", "exceeded"]
    assert ours[0][0] == ("line", b"ok")
    assert ours[1:] == twisted[1:] == (b"got 2\r\n", True)


@pytest.mark.parametrize("name", LINE_CLASSES)
def test_line_length_exceeded_argument_same_as_twisted(name: str) -> None:
    # Twisted's LineReceiver passes the long line and all that was buffered after it; its
    # LineOnlyReceiver passes the long line alone
    wire = b"ok\r\n" + b"a" * 11 + b"\r\nlater\r\nmore"
    twisted, ours = both(name, LinesTooLong, [wire], MAX_LENGTH=10)
    assert ours == twisted


@pytest.mark.parametrize("size", [12, 40])
@pytest.mark.parametrize("name", LINE_CLASSES)
def test_unterminated_long_line_same_as_twisted(name: str, size: int) -> None:
    # a read ending inside a line already longer than MAX_LENGTH (no delimiter yet)
    twisted, ours = both(name, LinesTooLong, [b"ok\r\n" + b"a" * size], MAX_LENGTH=10)
    assert ours == twisted


@pytest.mark.parametrize("name", LINE_CLASSES)
def test_a_line_is_refused_as_soon_as_it_cannot_fit(name: str) -> None:
    # deliberate (statewire/basic.py): 11 bytes with no "\r" cannot be a line of <= 10
    # bytes whatever comes next; Twisted's LineReceiver waits for a 12th byte
    protocol, _ = connect(name, LinesTooLong, "statewire", MAX_LENGTH=10)
    protocol.dataReceived(b"ok\r\n" + b"a" * 11)
    assert protocol.events == [("line", b"ok"), ("exceeded", b"a" * 11)]


@pytest.mark.parametrize("name", LINE_CLASSES)
def test_default_line_length_exceeded_closes(name: str) -> None:
    for side in ("twisted", "statewire"):
        protocol, transport = connect(name, Lines, side, MAX_LENGTH=10)
        protocol.dataReceived(b"a\r\n" + b"b" * 30 + b"\r\nc\r\n")
        assert protocol.events == [("line", b"a")], side
        assert transport.disconnecting, side


@pytest.mark.parametrize("name", LINE_CLASSES)
@given(data=st.data())
def test_long_line_in_any_reads_is_refused_once(name: str, data: st.DataObject) -> None:
    before = data.draw(st.lists(st.binary(max_size=10).filter(lambda v: b"\n" not in v)))
    wire = b"".join(v + b"\r\n" for v in before) + b"x" * 21 + b"\r\nafter\r\n"
    protocol, transport = connect(name, LinesTooLong, "statewire", MAX_LENGTH=20)
    for chunk in data.draw(chunked(wire)):
        protocol.dataReceived(chunk)
    kinds = [e[0] for e in protocol.events]
    assert kinds == ["line"] * len(before) + ["exceeded"]
    assert [e[1] for e in protocol.events[:-1]] == before
    assert protocol.events[-1][1].startswith(b"x" * 21)
    assert transport.disconnecting


def test_line_of_exactly_max_length_with_the_delimiter_split_is_accepted() -> None:
    # statewire's line framing accepts a line of exactly MAX_LENGTH bytes however the
    # delimiter is cut (grammars.line); Twisted's LineOnlyReceiver refuses it when the
    # read ends between the delimiter's bytes (its buffer is then MAX_LENGTH + 1 bytes),
    # Twisted's LineReceiver accepts it.
    for name in LINE_CLASSES:
        ours = observe(name, LinesTooLong, "statewire", [b"a" * 10 + b"\r", b"\n"], MAX_LENGTH=10)
        assert ours == ([("line", b"a" * 10)], b"got 10\r\n", False)
    twisted = observe("LineReceiver", LinesTooLong, "twisted", [b"a" * 10 + b"\r", b"\n"])
    assert twisted[0] == [("line", b"a" * 10)]


class StringsBroken(Strings):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.events.append(("brokenPeer", self.brokenPeer))  # type: ignore[attr-defined]


BAD_NETSTRINGS = [b"3x", b"03:abc,", b"3:abcX", b":", b"-1:", b"100000:", b"3:abc;", b"1:ab"]


@pytest.mark.parametrize("bad", BAD_NETSTRINGS)
def test_bad_netstring_breaks_the_peer(bad: bytes) -> None:
    wire = b"1:a," + bad + b"1:b,"

    def broken(protocol: Any) -> None:
        protocol.events.append(("brokenPeer", protocol.brokenPeer))

    twisted, ours = both("NetstringReceiver", Strings, [wire, broken])
    assert ours == twisted
    assert ours == ([("string", b"a"), ("brokenPeer", 1)], b"1:a,", True)
    # one byte per read: the same
    ours = observe("NetstringReceiver", Strings, "statewire", [*_bytes(wire), broken])
    assert ours == twisted


@pytest.mark.parametrize(
    ("wire", "broken"),
    [(b"6:abcdef,", 1), (b"10", 1), (b"6", 1), (b"1", 0), (b"5:abcde,", 0)],
)
def test_netstring_over_max_length(wire: bytes, broken: int) -> None:
    def record(protocol: Any) -> None:
        protocol.events.append(("brokenPeer", protocol.brokenPeer))

    twisted, ours = both("NetstringReceiver", Strings, [wire, record], MAX_LENGTH=5)
    assert ours == twisted
    assert ours[0][-1] == ("brokenPeer", broken)
    assert ours[2] == bool(broken)


def _bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


class StringsLimited(Strings):
    def lengthLimitExceeded(self, length: int) -> None:
        self.events.append(("limit", length, self.recvd))  # type: ignore[attr-defined]
        self.transport.loseConnection()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "fmt", "largest"), INTN, ids=[n for n, _, _ in INTN])
def test_intn_prefix_over_max_length(name: str, fmt: str, largest: int) -> None:
    wire = (
        struct.pack(fmt, 2) + b"ab" + struct.pack(fmt, 6) + b"abcdef" + struct.pack(fmt, 1) + b"z"
    )

    def recvd(protocol: Any) -> None:
        protocol.events.append(("recvd", protocol.recvd))

    twisted, ours = both(name, StringsLimited, [wire, recvd], MAX_LENGTH=5)
    assert ours == twisted
    rest = wire[struct.calcsize(fmt) + 2 :]
    assert ours[0] == [("string", b"ab"), ("limit", 6, rest), ("recvd", rest)]
    assert ours[1:] == (struct.pack(fmt, 2) + b"ba", True)
    # one byte per read: refused as soon as the prefix is complete, with recvd holding
    # what was received of the string (Twisted would call lengthLimitExceeded again on
    # every later read; statewire frames nothing more, see the module docs)
    ours = observe(name, StringsLimited, "statewire", [*_bytes(wire), recvd], MAX_LENGTH=5)
    header = struct.pack(fmt, 6)
    assert ours[0] == [("string", b"ab"), ("limit", 6, header), ("recvd", header)]
    assert ours[1:] == twisted[1:]


def test_intn_default_length_limit_exceeded_closes() -> None:
    for side in ("twisted", "statewire"):
        protocol, transport = connect("Int16StringReceiver", Strings, side, MAX_LENGTH=5)
        protocol.dataReceived(b"\x00\x06abcdef\x00\x01z")
        assert protocol.events == [] and transport.disconnecting, side


class StringsLimitedOpen(Strings):
    def lengthLimitExceeded(self, length: int) -> None:
        self.events.append(("limit", length))


def test_intn_length_limit_exceeded_once_then_nothing_framed() -> None:
    # deliberate difference: Twisted calls lengthLimitExceeded again on every later read
    protocol, transport = connect(
        "Int8StringReceiver", StringsLimitedOpen, "statewire", MAX_LENGTH=3
    )
    protocol.dataReceived(b"\x01a\x04abcd")
    protocol.dataReceived(b"\x01b")
    protocol.dataReceived(b"\x01c")
    assert protocol.events == [("string", b"a"), ("limit", 4)]
    assert not transport.disconnecting  # the override chose not to close


@pytest.mark.parametrize(
    ("name", "size", "fits"),
    [
        ("Int8StringReceiver", 256, False),
        ("Int8StringReceiver", 255, True),
        ("Int16StringReceiver", 65536, False),
        ("Int16StringReceiver", 65535, True),
    ],
)
def test_send_string_too_long(name: str, size: int, fits: bool) -> None:
    written = []
    for side, error in (("twisted", tb.StringTooLongError), ("statewire", sb.StringTooLongError)):
        protocol, transport = connect(name, Strings, side)
        if fits:
            protocol.sendString(b"x" * size)
        else:
            with pytest.raises(error):
                protocol.sendString(b"x" * size)
        written.append(transport.value())
    assert written[0] == written[1]
    assert written[1] == ((b"\xff" if size == 255 else b"\xff\xff") + b"x" * size if fits else b"")


# -- 3. pausing --------------------------------------------------------------------------


class PausingLines(Lines):
    def lineReceived(self, line: bytes) -> None:
        super().lineReceived(line)
        if line.startswith(b"pause"):
            self.pauseProducing()  # type: ignore[attr-defined]


def test_pause_in_line_received_then_resume() -> None:
    steps: list[Step] = [
        b"a\r\npause\r\nb\r\nc",
        record_state,
        b"\r\nd\r\n",  # arrives while paused: kept
        record_state,
        lambda p: p.resumeProducing(),
        record_state,
        b"e\r\n",
    ]
    twisted, ours = both("LineReceiver", PausingLines, steps)
    assert ours == twisted
    assert ours[0] == [
        ("line", b"a"),
        ("line", b"pause"),
        ("paused", True, "paused"),
        ("paused", True, "paused"),
        ("line", b"b"),
        ("line", b"c"),
        ("line", b"d"),
        ("paused", False, "producing"),
        ("line", b"e"),
    ]


def test_pause_again_while_resuming() -> None:
    steps: list[Step] = [
        b"pause1\r\nb\r\npause2\r\nc\r\nd",
        record_state,
        lambda p: p.resumeProducing(),
        record_state,
        lambda p: p.resumeProducing(),
        record_state,
        b"\r\n",
    ]
    twisted, ours = both("LineReceiver", PausingLines, steps)
    assert ours == twisted
    assert [e[1] for e in ours[0] if e[0] == "line"] == [b"pause1", b"b", b"pause2", b"c", b"d"]


def test_pause_between_reads() -> None:
    steps: list[Step] = [
        b"a\r\n",
        lambda p: p.pauseProducing(),
        record_state,
        b"b\r\nc\r\n",
        record_state,
        lambda p: p.resumeProducing(),
        record_state,
    ]
    twisted, ours = both("LineReceiver", Lines, steps)
    assert ours == twisted
    assert ours[0][-3:] == [("line", b"b"), ("line", b"c"), ("paused", False, "producing")]


class PausingStrings(Strings):
    def stringReceived(self, string: bytes) -> None:
        super().stringReceived(string)
        if string == b"pause":
            self.pauseProducing()  # type: ignore[attr-defined]


def test_pause_in_string_received() -> None:
    def recvd(protocol: Any) -> None:
        protocol.events.append(("recvd", protocol.recvd))

    steps: list[Step] = [
        b"\x00\x00\x00\x01a\x00\x00\x00\x05pause\x00\x00\x00\x01b\x00",
        record_state,
        recvd,
        b"\x00\x00\x01c",
        lambda p: p.resumeProducing(),
        record_state,
    ]
    twisted, ours = both("Int32StringReceiver", PausingStrings, steps)
    assert ours == twisted
    assert ours[0][2:] == [
        ("paused", True, "paused"),
        ("recvd", b"\x00\x00\x00\x01b\x00"),
        ("string", b"b"),
        ("string", b"c"),
        ("paused", False, "producing"),
    ]


# -- 4. mode switches in the middle of a read ---------------------------------------------


class Switching(Recorder):
    """Line commands: ``raw`` switches to raw mode, ``lines X`` calls
    ``setLineMode(X)``, ``clear`` calls ``clearLineBuffer``, ``bye`` closes."""

    def lineReceived(self, line: bytes) -> None:
        self.events.append(("line", line))
        if line == b"raw":
            self.setRawMode()  # type: ignore[attr-defined]
        elif line.startswith(b"lines"):
            self.setLineMode(line[6:].replace(b"|", b"\r\n"))  # type: ignore[attr-defined]
        elif line == b"clear":
            self.events.append(("cleared", self.clearLineBuffer()))  # type: ignore[attr-defined]
        elif line == b"bye":
            self.transport.loseConnection()  # type: ignore[attr-defined]

    def rawDataReceived(self, data: bytes) -> None:
        self.events.append(("raw", data))


def test_set_raw_mode_for_the_second_of_three_lines() -> None:
    twisted, ours = both("LineReceiver", Switching, [b"one\r\nraw\r\nthree\r\n", b"four\r\n"])
    assert ours == twisted
    assert ours[0] == [
        ("line", b"one"),
        ("line", b"raw"),
        ("raw", b"three\r\n"),
        ("raw", b"four\r\n"),
    ]


class Flipping(Recorder):
    """Flips modes on every byte: each line is empty (just the delimiter), each raw
    block one byte; the raw bytes not used go back through ``setLineMode``."""

    delimiter = b"\n"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.raw = bytearray()
        self.lines = 0

    def lineReceived(self, line: bytes) -> None:
        assert line == b""
        self.lines += 1
        self.setRawMode()  # type: ignore[attr-defined]

    def rawDataReceived(self, data: bytes) -> None:
        self.raw += data[:1]
        self.setLineMode(data[1:])  # type: ignore[attr-defined]


def test_flipping_modes_on_every_byte_of_one_big_read() -> None:
    payload = bytes(i % 256 for i in range(100_000))  # raw bytes include b"\n"
    wire = b"".join(b"\n" + payload[i : i + 1] for i in range(len(payload)))
    assert len(wire) == 200_000
    protocol, _ = connect("LineReceiver", Flipping, "statewire")
    protocol.dataReceived(wire)  # no RecursionError
    assert protocol.lines == 100_000
    assert bytes(protocol.raw) == payload


def test_flipping_modes_same_as_twisted_in_small_reads() -> None:
    payload = bytes(range(256)) * 4
    wire = b"".join(b"\n" + payload[i : i + 1] for i in range(len(payload)))
    results = []
    for side in ("twisted", "statewire"):
        protocol, _ = connect("LineReceiver", Flipping, side)
        for i in range(0, len(wire), 7):
            protocol.dataReceived(wire[i : i + 7])
        results.append((protocol.lines, bytes(protocol.raw)))
    assert results[0] == results[1] == (1024, payload)


# -- 5. setLineMode(extra) from lineReceived ----------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        [b"a\r\nlines X|Y\r\nb\r\nc", b"\r\n"],
        [b"lines X|Y|\r\n"],
        [b"lines X|Y|\r\nb\r\n"],
        [b"lines X\r\nb", b"\r\n"],
    ],
    ids=["partial-after", "nothing-after", "line-after", "unfinished"],
)
def test_set_line_mode_extra_from_line_received(steps: list[Step]) -> None:
    # extra is framed after the bytes already received (Twisted's documented quirk)
    twisted, ours = both("LineReceiver", Switching, steps)
    assert ours == twisted


def test_set_line_mode_extra_after_buffered_bytes() -> None:
    ours = observe("LineReceiver", Switching, "statewire", [b"a\r\nlines X|Y\r\nb\r\nc", b"\r\n"])
    assert ours[0] == [
        ("line", b"a"),
        ("line", b"lines X|Y"),
        ("line", b"b"),
        ("line", b"cX"),
        ("line", b"Y"),
    ]


# -- 6. clearLineBuffer, recvd -----------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        [b"a\r\nclear\r\nb\r\nc", b"\r\nd\r\n"],
        [b"clear\r\n", b"d\r\n"],
        [b"clear", b"\r\nx\r\ny", b"\r\n"],
        [b"a\r\nclear\r\nclear\r\nb\r\n", b"clear\r\nz\r\n"],
    ],
)
def test_clear_line_buffer_in_line_received(steps: list[Step]) -> None:
    twisted, ours = both("LineReceiver", Switching, steps)
    assert ours == twisted


def test_clear_line_buffer_returns_and_drops_the_rest() -> None:
    ours = observe("LineReceiver", Switching, "statewire", [b"a\r\nclear\r\nb\r\nc", b"\r\nd\r\n"])
    assert ours[0] == [
        ("line", b"a"),
        ("line", b"clear"),
        ("cleared", b"b\r\nc"),
        ("line", b""),
        ("line", b"d"),
    ]


class RecvdSwapping(Recorder):
    """Assigns ``recvd`` inside ``stringReceived``."""

    def stringReceived(self, string: bytes) -> None:
        self.events.append(("string", string))
        if string == b"swap":
            self.recvd = b"\x00\x00\x00\x01Z\x00\x00"
        elif string == b"drop":
            self.recvd = b""


@pytest.mark.parametrize(
    "steps",
    [
        [b"\x00\x00\x00\x01a\x00\x00\x00\x04swap\x00\x00\x00\x01b", b"\x00\x01c\x00\x00\x00\x01d"],
        [b"\x00\x00\x00\x04drop\x00\x00\x00\x01b", b"\x00\x00\x00\x01c"],
        [b"\x00\x00\x00\x04swap", b"\x00\x01Q"],
    ],
    ids=["swap", "drop", "swap-last"],
)
def test_assigning_recvd_in_string_received_replaces_the_buffer(steps: list[Step]) -> None:
    def recvd(protocol: Any) -> None:
        protocol.events.append(("recvd", protocol.recvd))

    twisted, ours = both("Int32StringReceiver", RecvdSwapping, [*steps, recvd])
    assert ours == twisted


class RecvdReading(Recorder):
    def stringReceived(self, string: bytes) -> None:
        self.events.append(("string", string, self.recvd))  # type: ignore[attr-defined]


def test_recvd_read_inside_string_received() -> None:
    # Twisted: recvd inside stringReceived is every byte after the current string
    wire = b"\x00\x00\x00\x01a\x00\x00\x00\x02bc\x00\x00\x00\x01d\x00\x00"
    twisted, ours = both("Int32StringReceiver", RecvdReading, [wire])
    assert twisted[0][0] == ("string", b"a", wire[5:])
    assert ours == twisted


# -- 7. closing from a callback ----------------------------------------------------------


@pytest.mark.parametrize("name", LINE_CLASSES)
def test_lose_connection_in_line_received_stops_delivery(name: str) -> None:
    twisted, ours = both(name, Switching, [b"a\r\nbye\r\nb\r\nc\r\n"])
    assert ours == twisted
    assert ours == ([("line", b"a"), ("line", b"bye")], b"", True)


class ClosingBlocks(Blocks):
    def body(self, data: bytes) -> tuple[Any, int]:
        if data == b"bye":
            self.transport.loseConnection()  # type: ignore[attr-defined]
        return super().body(data)


def test_lose_connection_in_stateful_handler_stops_delivery() -> None:
    wire = b"\x00\x01a\x00\x03bye\x00\x01b\x00\x01c"
    twisted, ours = both("StatefulProtocol", ClosingBlocks, [wire])
    assert ours == twisted
    assert ours[0][-1] == ("body", b"bye")


class ClosingStrings(Strings):
    def stringReceived(self, string: bytes) -> None:
        super().stringReceived(string)
        if string == b"bye":
            self.transport.loseConnection()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("NetstringReceiver", b"1:a,3:bye,1:b,"),
        ("Int32StringReceiver", b"\x00\x00\x00\x01a\x00\x00\x00\x03bye\x00\x00\x00\x01b"),
    ],
)
def test_lose_connection_in_string_received_stops_delivery(name: str, wire: bytes) -> None:
    # statewire stops delivering once the connection is closing (module docs); Twisted's
    # NetstringReceiver and IntNStringReceiver do not check and would deliver b"b" too
    ours = observe(name, ClosingStrings, "statewire", [wire])
    assert ours[0] == [("string", b"a"), ("string", b"bye")]
    assert ours[2]


# -- documented differences, pinned -------------------------------------------------------


class TrueReturning(Lines):
    def lineReceived(self, line: bytes) -> bool:  # type: ignore[override]
        super().lineReceived(line)
        return True


def test_line_received_return_value_is_ignored() -> None:
    ours = observe("LineReceiver", TrueReturning, "statewire", [b"a\r\nb\r\n"])
    assert ours[0] == [("line", b"a"), ("line", b"b")]


def test_delimiter_and_max_length_per_instance_between_reads() -> None:
    def change(protocol: Any) -> None:
        protocol.delimiter = b";"
        protocol.MAX_LENGTH = 3

    steps: list[Step] = [b"a\r\nb;c", change, b";dd;eeee;"]
    twisted, ours = both("LineReceiver", LinesTooLong, steps)
    assert ours == twisted
    assert ours[0] == [
        ("line", b"a"),
        ("line", b"b"),
        ("line", b"c"),
        ("line", b"dd"),
        ("exceeded", b"eeee;"),
    ]


# -- 8. over a real socket ---------------------------------------------------------------


class EchoLines(sb.LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line)


def test_line_echo_over_tcp_pipelined() -> None:
    request = b"".join(b"line %04d %s\r\n" % (i, b"x" * (i % 50)) for i in range(1000))

    async def body(reactor: Reactor) -> bytes:
        port = reactor.listenTCP(0, Factory.forProtocol(EchoLines), interface=HOST)
        await port.ready
        number = port.getHost().port  # type: ignore[union-attr]
        return await asyncio.wait_for(exchange(HOST, number, request, len(request)), 10)

    assert scenario(body) == request


# -- found in review --------------------------------------------------------------------------


class PauseThenRaw(sb.LineReceiver):
    def connectionMade(self) -> None:
        self.events: list[tuple[str, bytes]] = []

    def lineReceived(self, line: bytes) -> None:
        self.events.append(("line", line))
        if line == b"PAUSE":
            self.pauseProducing()
            self.resumeProducing()
        if line == b"RAW":
            self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        self.events.append(("raw", data))


@pytest.mark.parametrize("cut", [0, 7, 12])
def test_a_mode_switch_after_resuming_inside_a_callback(cut: int) -> None:
    stream = b"PAUSE\r\nRAW\r\nbody\r\n"
    protocol = PauseThenRaw()
    protocol.makeConnection(StringTransport())
    for chunk in (stream[:cut], stream[cut:]):
        protocol.dataReceived(chunk)
    assert protocol.events == [("line", b"PAUSE"), ("line", b"RAW"), ("raw", b"body\r\n")]


def test_line_length_exceeded_that_calls_an_input_keeps_framing() -> None:
    class Forgiving(sb.LineReceiver):
        MAX_LENGTH = 5

        def connectionMade(self) -> None:
            self.lines: list[bytes] = []

        def lineReceived(self, line: bytes) -> None:
            self.lines.append(line)

        def lineLengthExceeded(self, line: bytes) -> None:
            self.sendLine(b"ERR")
            self.setLineMode()

    protocol = Forgiving()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"aaaaaaaaaa\r\n")
    protocol.dataReceived(b"x\r\ny\r\nz\r\n")
    assert protocol.lines == [b"x", b"y", b"z"]


def test_a_protocol_may_keep_its_own_state_attribute() -> None:
    class Chat(sb.LineReceiver):  # as in Twisted's chat example
        def __init__(self) -> None:
            self.state = "GETNAME"

        def lineReceived(self, line: bytes) -> None:
            self.state = "CHAT"

    protocol = Chat()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"alice\r\n")
    assert protocol.state == "CHAT" and protocol.machine_state == "line"
