"""statewire protocols inside Twisted: :func:`statewire.twisted.adapt`.

In this process, Twisted's own test doubles drive statewire protocols (``StringTransport``,
``task.Clock``, a trial ``SynchronousTestCase``), and no Twisted reactor is ever installed.
The reverse check runs as its own process (``python tests/test_twisted_interop.py``, at the
bottom of this file): Twisted's asyncio reactor serving a ``twisted.web`` site, statewire
protocols through ``adapt``, and a statewire protocol on statewire's own reactor sharing
the same asyncio loop, all reached over 127.0.0.1 sockets.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from typing import Protocol as Inputs

import pytest
from automat import TypeMachineBuilder

pytest.importorskip("twisted")

from twisted.internet import address as taddress
from twisted.internet import defer, task
from twisted.internet import error as terror
from twisted.internet.testing import (
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.protocols import basic as tbasic
from twisted.python.failure import Failure as TwistedFailure
from twisted.trial.unittest import SynchronousTestCase

from grammars import line
from statewire import basic
from statewire.address import IPv4Address, IPv6Address, UNIXAddress
from statewire.declarative import MachineProtocol
from statewire.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    Failure,
    TimeoutError,
    connectionDone,
)
from statewire.protocol import ClientFactory, Factory, Protocol
from statewire.twisted import (
    ABORT_GRACE,
    AdaptedClientFactory,
    TwistedProtocol,
    adapt,
    address_from_twisted,
    failure_from_twisted,
    from_deferred,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
try:
    import answer
    import logging_protocol
    import upload
finally:
    sys.path.remove(str(ROOT / "examples"))

PEER = taddress.IPv4Address("TCP", "127.0.0.1", 40000)


def connect(factory: Any, transport: Any = None, clock: Any = None) -> tuple[Any, Any]:
    """What Twisted's port does for one connection: build the protocol, connect it."""
    protocol = adapt(factory, clock=clock).buildProtocol(PEER)
    assert isinstance(protocol, TwistedProtocol)
    transport = StringTransport() if transport is None else transport
    protocol.makeConnection(transport)
    return protocol, transport


# -- the seed's examples under Twisted's StringTransport ------------------------------------


def test_answer_replies_like_the_seed() -> None:
    protocol, transport = connect(answer.factory)
    protocol.dataReceived(b"How are you?\r\nWhat?\r")
    protocol.dataReceived(b"\n")
    assert transport.value() == b"Fine\r\nI don't know what you mean\r\n"
    assert protocol.protocol.factory is answer.factory


def test_logging_protocol_opens_and_closes_its_file_with_the_port(tmp_path: Path) -> None:
    factory = logging_protocol.LogfileFactory(tmp_path / "lines.log")
    adapted = adapt(factory)
    adapted.doStart()  # what Twisted's listenTCP does: startFactory opens the file
    protocol = adapted.buildProtocol(PEER)
    assert protocol is not None
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"first\r\nsecond\r\n")
    adapted.doStop()  # stopListening: stopFactory closes (flushes) it
    assert (tmp_path / "lines.log").read_bytes() == b"first\nsecond\n"
    assert factory.numPorts == 0


class QOTD(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"An apple a day keeps the doctor away\r\n")
        self.transport.loseConnection()


def test_plain_protocol_greets_and_closes() -> None:
    _, transport = connect(Factory.forProtocol(QOTD))
    assert transport.value() == b"An apple a day keeps the doctor away\r\n"
    assert transport.disconnecting
    assert transport.producer is None  # unregistered: Twisted would not close otherwise


class Modes:
    """One body for a Twisted and a statewire ``LineReceiver``: lines, then a raw block."""

    remaining = 0

    def lineReceived(self, line: bytes) -> None:
        if line.startswith(b"RAW "):
            self.remaining = int(line[4:])
            self.sendLine(b"ok")  # type: ignore[attr-defined]
            self.setRawMode()  # type: ignore[attr-defined]
        else:
            self.sendLine(b"line " + line)  # type: ignore[attr-defined]

    def rawDataReceived(self, data: bytes) -> None:
        self.remaining -= len(data)
        self.sendLine(b"raw " + data)  # type: ignore[attr-defined]
        if self.remaining <= 0:
            self.setLineMode()  # type: ignore[attr-defined]


class StatewireModes(Modes, basic.LineReceiver):
    pass


class TwistedModes(Modes, tbasic.LineReceiver):
    pass


@pytest.mark.parametrize(
    "reads",
    [
        [b"a\r\nRAW 5\r\nhello", b"b\r\nc\r\n"],
        [b"a\r", b"\nRAW 5\r\n", b"hel", b"lo", b"b\r\n", b"c\r\n"],
    ],
)
def test_line_receiver_subclass_same_bytes_as_twisted(reads: list[bytes]) -> None:
    protocol, transport = connect(Factory.forProtocol(StatewireModes))
    theirs, their_transport = TwistedModes(), StringTransport()
    theirs.makeConnection(their_transport)
    for data in reads:
        protocol.dataReceived(data)
        theirs.dataReceived(data)
    assert transport.value() == their_transport.value()
    assert b"line c" in transport.value()


# -- a declared protocol on Twisted's clock --------------------------------------------------


def test_upload_session_on_twisted() -> None:
    clock = task.Clock()
    protocol, transport = connect(upload.UploadFactory(), clock=clock)
    protocol.dataReceived(b"PUT early 1\r\nUSER alice\r\nPUT notes.txt 5\r\nhel")
    protocol.dataReceived(b"loGET notes.txt\r\nQUIT\r\nUSER ignored\r\n")
    assert transport.value() == (
        b"503 bad sequence of commands\r\n230 hello alice\r\n150 send 5 bytes\r\n"
        b"226 stored notes.txt\r\n213 5\r\nhello221 bye\r\n"
    )
    assert transport.disconnecting
    assert protocol.protocol.machine_state == "closed"


def test_upload_idle_timeout_runs_on_twisted_clock() -> None:
    clock = task.Clock()
    protocol, transport = connect(upload.UploadFactory(), clock=clock)
    clock.advance(upload.IDLE_SECONDS - 1)
    protocol.dataReceived(b"USER alice\r\n")  # activity: the idle period starts again
    clock.advance(upload.IDLE_SECONDS - 1)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.value() == b"230 hello alice\r\n421 idle too long\r\n"
    assert transport.disconnecting


def test_close_timeout_aborts_on_twisted_clock() -> None:
    clock = task.Clock()
    protocol, transport = connect(upload.UploadFactory(), clock=clock)
    protocol.dataReceived(b"QUIT\r\n")
    assert transport.disconnecting and not getattr(transport, "disconnected", False)
    clock.advance(upload.UploadServer.close_timeout or 0)  # the peer never took "221 bye"
    assert transport.disconnected  # Twisted's StringTransport marks abortConnection so


def test_connection_lost_reaches_the_declared_machine() -> None:
    clock = task.Clock()
    protocol, _ = connect(upload.UploadFactory(), clock=clock)
    protocol.connectionLost(TwistedFailure(terror.ConnectionLost("reset")))
    assert protocol.protocol.machine_state == "closed"
    assert protocol.protocol.connected == 0
    assert not clock.getDelayedCalls()  # the idle timeout was cancelled


# -- Twisted's trial, as a Twisted user would test the protocol ------------------------------


class UploadTests(SynchronousTestCase):
    """A trial test case of the kind Twisted's documentation teaches ("Unit Testing with
    Trial"), unchanged but for the protocol, which is statewire's upload server."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.transport = StringTransportWithDisconnection()
        self.proto = adapt(upload.UploadFactory(), clock=self.clock).buildProtocol(PEER)
        assert self.proto is not None
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)

    def test_unknown_command(self) -> None:
        self.proto.dataReceived(b"FROB\r\n")
        self.assertEqual(self.transport.value(), b"500 unknown command\r\n")

    def test_timeout_closes(self) -> None:
        self.clock.advance(upload.IDLE_SECONDS)
        self.assertEqual(self.transport.value(), b"421 idle too long\r\n")
        self.assertFalse(self.transport.connected)  # connectionLost was delivered

    def test_quit_delivers_connection_done(self) -> None:
        self.proto.dataReceived(b"QUIT\r\n")
        self.assertFalse(self.transport.connected)
        self.assertEqual(self.proto.protocol.machine_state, "closed")
        self.assertEqual(self.clock.getDelayedCalls(), [])


# -- what crosses the boundary --------------------------------------------------------------


class Recorder(Protocol):
    reasons: list[Failure]

    def connectionMade(self) -> None:
        self.reasons = []

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reasons.append(reason)


@pytest.mark.parametrize(
    ("theirs", "ours", "message"),
    [
        (terror.ConnectionDone(), ConnectionDone, "Connection was closed cleanly."),
        (terror.ConnectionAborted(), ConnectionAborted, "Connection was aborted locally."),
        (terror.ConnectionLost("reset"), ConnectionLost, "non-clean fashion: reset"),
        (ValueError("boom"), ConnectionLost, "ValueError: boom"),
    ],
)
def test_connection_lost_reason_is_statewire_failure(
    theirs: Exception, ours: type[Exception], message: str
) -> None:
    protocol, _ = connect(Factory.forProtocol(Recorder))
    protocol.connectionLost(TwistedFailure(theirs))
    (reason,) = protocol.protocol.reasons
    assert isinstance(reason, Failure)
    assert type(reason.value) is ours
    assert reason.check(ours) is ours
    assert message in reason.getErrorMessage()
    assert reason.value.__cause__ is theirs
    assert protocol.protocol.connected == 0


def test_client_factory_failures_are_translated() -> None:
    seen: list[Failure] = []

    class Client(ClientFactory):
        protocol = Recorder

        def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
            seen.append(reason)

    adapted = adapt(Client())
    assert isinstance(adapted, AdaptedClientFactory)
    adapted.clientConnectionFailed(None, TwistedFailure(terror.ConnectionRefusedError()))
    assert seen[0].check(ConnectionRefusedError)
    assert failure_from_twisted(terror.TimeoutError()).check(TimeoutError)
    ours = Failure(ConnectionDone())
    assert failure_from_twisted(ours.value).value is ours.value  # statewire's already


def test_addresses_are_statewire_addresses() -> None:
    seen: list[Any] = []

    class Remember(Factory):
        protocol = Recorder

        def buildProtocol(self, addr: Any) -> Any:
            seen.append(addr)
            return super().buildProtocol(addr)

    protocol, _ = connect(Remember())
    assert seen == [IPv4Address("TCP", "127.0.0.1", 40000)]
    facade = protocol.protocol.transport
    assert facade.getPeer() == IPv4Address("TCP", "192.168.1.1", 54321)
    assert facade.getHost() == IPv4Address("TCP", "10.0.0.1", 12345)
    six = taddress.IPv6Address("TCP", "::1", 80, 0, 0)
    assert address_from_twisted(six) == IPv6Address("TCP", "::1", 80)
    assert address_from_twisted(taddress.UNIXAddress(b"/tmp/s")) == UNIXAddress("/tmp/s")
    with pytest.raises(TypeError):
        address_from_twisted(("127.0.0.1", 1))


def test_refused_connection_builds_nothing() -> None:
    class Refuse(Factory):
        def buildProtocol(self, addr: Any) -> Any:
            return None

    assert adapt(Refuse()).buildProtocol(PEER) is None


def test_write_refuses_text() -> None:
    protocol, transport = connect(Factory.forProtocol(Recorder))
    facade = protocol.protocol.transport
    with pytest.raises(TypeError):
        facade.write("text")
    facade.writeSequence([b"a", bytearray(b"b"), memoryview(b"c")])
    assert transport.value() == b"abc"


# -- flow control: Twisted's producer calls become statewire's ------------------------------


class Lines(basic.LineReceiver):
    def connectionMade(self) -> None:
        self.lines: list[bytes] = []
        self.congestion: list[bool] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        if line == b"bye":
            self.transport.loseConnection()

    def transportCongested(self, congested: bool) -> None:
        self.congestion.append(congested)
        super().transportCongested(congested)


def test_twisted_pause_holds_frames_and_stops_reading() -> None:
    protocol, transport = connect(Factory.forProtocol(Lines))
    lines = protocol.protocol
    assert transport.producer is protocol and transport.streaming
    transport.producer.pauseProducing()  # what Twisted does when its write buffer fills
    assert transport.producerState == "paused"
    protocol.dataReceived(b"a\r\nb\r\n")  # one more read may still arrive
    assert lines.lines == []
    transport.producer.resumeProducing()  # Twisted's buffer drained
    assert lines.lines == [b"a", b"b"]
    assert lines.congestion == [True, False]
    assert transport.producerState == "producing"


def test_an_http_server_without_an_asyncio_loop_is_refused_clearly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The HTTP server's handlers are coroutines: on a Twisted reactor with no asyncio
    loop (epoll, select) each connection is refused, said once at ERROR, where it would
    half work and then fail with errors that do not say why. Under a running loop (the
    asyncio reactor) it is served."""
    from statewire.protocols.http import HTTPFactory, Request, Response

    async def hello(request: Request, response: Response) -> None:
        await response.send(200, body=b"hello")

    adapted = adapt(HTTPFactory(hello))
    with caplog.at_level(logging.DEBUG, logger="statewire.twisted"):
        assert adapted.buildProtocol(PEER) is None
        assert adapted.buildProtocol(PEER) is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "asyncio reactor" in errors[0].getMessage()

    async def inside_a_loop() -> Any:
        return adapted.buildProtocol(PEER)

    assert isinstance(asyncio.run(inside_a_loop()), TwistedProtocol)


class StalledLines(Lines):
    write_timeout = 5.0


def test_write_timeout_aborts_a_peer_that_leaves_twisted_buffer_full() -> None:
    """A declared protocol's ``write_timeout`` counts on Twisted's clock from Twisted's
    pause (its buffer full) to its resume (empty): a peer that never reads is aborted,
    one that drains the buffer in time is not (docs/twisted.md)."""
    clock = task.Clock()
    protocol, transport = connect(Factory.forProtocol(StalledLines), clock=clock)
    protocol.pauseProducing()
    clock.advance(4.9)
    protocol.resumeProducing()  # drained in time: the count starts again at the next pause
    protocol.pauseProducing()
    clock.advance(4.9)
    assert not getattr(transport, "disconnected", False)
    clock.advance(0.2)
    assert transport.disconnected  # aborted
    # without a write_timeout (Lines: None), a full buffer waits for ever, as before
    clock = task.Clock()
    protocol, transport = connect(Factory.forProtocol(Lines), clock=clock)
    protocol.pauseProducing()
    clock.advance(3600)
    assert not getattr(transport, "disconnected", False) and not clock.getDelayedCalls()


class _Buffered(StringTransport):
    """A transport holding unsent bytes as Twisted's file descriptors do (``dataBuffer``
    from ``offset``, and ``_tempDataLen`` more)."""

    dataBuffer = b"x" * 100_000
    offset = 0
    _tempDataLen = 0


def test_write_timeout_waits_while_the_peer_takes_bytes() -> None:
    """Twisted says only when its buffer is empty again; where its transport shows what
    it holds unsent, a peer that takes bytes (slowly) is not cut, one that stops is."""
    clock = task.Clock()
    transport = _Buffered()
    protocol, _ = connect(Factory.forProtocol(StalledLines), transport, clock=clock)
    protocol.pauseProducing()
    for _ in range(3):  # 15 s in all, a few KiB taken each 5 s, more written meanwhile
        transport.offset += 4096
        protocol.protocol.transport.write(b"y" * 10_000)
        transport.dataBuffer += b"y" * 10_000  # (held behind what was there)
        clock.advance(5.0)
        assert not getattr(transport, "disconnected", False)
    clock.advance(5.0)  # then nothing taken
    assert transport.disconnected
    # paused, then closing (Twisted no longer resumes us): nothing left unsent is no stall
    clock = task.Clock()
    transport = _Buffered()
    protocol, _ = connect(Factory.forProtocol(StalledLines), transport, clock=clock)
    protocol.pauseProducing()
    transport.dataBuffer = b""
    clock.advance(5.0)
    assert not getattr(transport, "disconnected", False)


def test_write_timeout_lifted_or_during_a_tls_handshake_does_not_abort() -> None:
    from twisted.internet.interfaces import ISSLTransport
    from zope.interface import directlyProvides

    clock = task.Clock()
    protocol, transport = connect(Factory.forProtocol(StalledLines), clock=clock)
    protocol.pauseProducing()
    protocol.protocol.transport.write_timeout = None  # lifted meanwhile
    clock.advance(10.0)
    assert not getattr(transport, "disconnected", False)
    # Twisted's TLS pauses while it holds a greeting written before its handshake: no
    # full buffer, so no stall counted until the handshake is done (if still paused)
    clock = task.Clock()
    transport = StringTransport()
    directlyProvides(transport, ISSLTransport)
    protocol, _ = connect(Factory.forProtocol(StalledLines), transport, clock=clock)
    protocol.pauseProducing()
    clock.advance(10.0)
    assert not getattr(transport, "disconnected", False)
    protocol.handshakeCompleted()
    clock.advance(0)  # (counted from the next turn: TLS moves what it held first)
    clock.advance(5.0)
    assert transport.disconnected


def test_protocol_pause_and_congestion_compose() -> None:
    protocol, transport = connect(Factory.forProtocol(Lines))
    lines = protocol.protocol
    lines.pauseProducing()  # the protocol's own pause
    protocol.pauseProducing()  # and Twisted's
    protocol.resumeProducing()
    assert transport.producerState == "paused"  # the protocol's pause is its own to lift
    lines.resumeProducing()
    assert transport.producerState == "producing"


class Streamer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


def test_registered_producer_follows_twisted_buffer() -> None:
    protocol, _ = connect(Factory.forProtocol(Recorder))
    streaming, pulled = Streamer(), Streamer()
    facade = protocol.protocol.transport
    facade.registerProducer(streaming, True)
    protocol.pauseProducing()
    protocol.resumeProducing()
    with pytest.raises(RuntimeError):
        facade.registerProducer(pulled, False)
    protocol.connectionLost(TwistedFailure(terror.ConnectionDone()))
    assert streaming.calls == ["pause", "resume", "stop"]


def test_pull_producer_is_pulled_after_each_write() -> None:
    clock = task.Clock()
    protocol, _ = connect(Factory.forProtocol(Recorder), clock=clock)
    facade = protocol.protocol.transport
    pulled = Streamer()
    facade.registerProducer(pulled, False)
    assert pulled.calls == ["resume"]
    facade.write(b"x")
    clock.advance(0)
    assert pulled.calls == ["resume", "resume"]
    protocol.pauseProducing()
    facade.write(b"y")
    clock.advance(0)
    assert pulled.calls == ["resume", "resume"]  # not while Twisted's buffer is full
    protocol.resumeProducing()
    assert pulled.calls == ["resume", "resume", "resume"]


def test_close_stops_delivering_buffered_frames() -> None:
    protocol, transport = connect(Factory.forProtocol(Lines))
    protocol.dataReceived(b"a\r\nbye\r\nnever\r\n")
    assert protocol.protocol.lines == [b"a", b"bye"]
    assert transport.disconnecting and transport.producer is None


def test_peer_end_of_stream_waits_for_frames_held_by_backpressure() -> None:
    protocol, transport = connect(Factory.forProtocol(Lines))
    protocol.pauseProducing()  # Twisted's buffer is full
    protocol.dataReceived(b"a\r\nb\r\n")
    protocol.readConnectionLost()  # and the peer half-closed
    assert protocol.protocol.lines == [] and not transport.disconnecting
    protocol.resumeProducing()  # drained: the held requests are answered, then we close
    assert protocol.protocol.lines == [b"a", b"b"]
    assert transport.disconnecting and transport.producer is None


def test_peer_end_of_stream_closes_after_flush() -> None:
    protocol, transport = connect(Factory.forProtocol(Lines))
    protocol.dataReceived(b"a\r\n")
    protocol.readConnectionLost()  # Twisted: the peer half-closed
    assert transport.disconnecting
    assert protocol.protocol.lines == [b"a"]


# -- asynchronous outputs without asyncio: Deferreds ----------------------------------------


class Later(basic.LineReceiver):
    """Replies to each line after a second of Twisted's clock."""

    clock: Any = None

    def lineReceived(self, line: bytes) -> Any:
        if line == b"fail":
            return from_deferred(defer.fail(ValueError("no")))
        work = task.deferLater(self.clock, 1, self.sendLine, b"done " + line)
        return from_deferred(work) if self.factory.wait else work


@pytest.mark.parametrize("wait", [True, False])
def test_deferred_work_orders_replies(wait: bool) -> None:
    clock = task.Clock()
    factory = Factory.forProtocol(type("L", (Later,), {"clock": clock}))
    factory.wait = wait  # type: ignore[attr-defined]
    protocol, transport = connect(factory, clock=clock)
    protocol.dataReceived(b"a\r\nb\r\n")
    clock.advance(1)
    # from_deferred or a bare Deferred: "b" is framed only once "a" is answered
    assert transport.value() == b"done a\r\n"
    clock.advance(1)
    assert transport.value() == b"done a\r\ndone b\r\n"


def test_failed_deferred_is_a_local_error(caplog: pytest.LogCaptureFixture) -> None:
    clock = task.Clock()
    factory = Factory.forProtocol(type("L", (Later,), {"clock": clock}))
    factory.wait = True  # type: ignore[attr-defined]
    protocol, transport = connect(factory, clock=clock)
    with caplog.at_level(logging.CRITICAL, logger="statewire.declarative"):
        protocol.dataReceived(b"fail\r\nnever\r\n")
    assert transport.disconnected  # aborted
    assert transport.value() == b""


def test_lost_connection_cancels_deferred_work() -> None:
    clock = task.Clock()
    factory = Factory.forProtocol(type("L", (Later,), {"clock": clock}))
    factory.wait = True  # type: ignore[attr-defined]
    protocol, transport = connect(factory, clock=clock)
    protocol.dataReceived(b"a\r\n")
    protocol.connectionLost(TwistedFailure(terror.ConnectionLost()))
    assert not clock.getDelayedCalls()  # deferLater's call was cancelled
    assert transport.value() == b""


class Coroutine(basic.LineReceiver):
    async def lineReceived(self, line: bytes) -> None:  # type: ignore[override]
        self.sendLine(line)


def test_coroutine_without_asyncio_loop_is_a_local_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol, transport = connect(Factory.forProtocol(Coroutine), clock=task.Clock())
    with caplog.at_level(logging.CRITICAL, logger="statewire.declarative"):
        protocol.dataReceived(b"a\r\n")
    assert transport.disconnected
    assert transport.value() == b""


# -- the extra ------------------------------------------------------------------------------


def test_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, "twisted.internet", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "statewire.twisted")
    with pytest.raises(ImportError, match=r"statewire\[twisted\]"):
        importlib.import_module("statewire.twisted")
    monkeypatch.undo()
    assert importlib.import_module("statewire.twisted").adapt is adapt


# -- one process, both frameworks: Twisted's asyncio reactor ---------------------------------


def _lines_until(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[:count]


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture(scope="module")
def mixed() -> Any:
    from process_helpers import running

    # every warning shown (none expected), Twisted's and asyncio's included
    with running("tests/test_twisted_interop.py", env={"PYTHONWARNINGS": "default"}) as server:
        ports = json.loads(server.lines.get(timeout=20).split(" ", 1)[1])
        yield server, ports
        out = server.stop(signal.SIGINT)  # Twisted stops, statewire's reactor shuts down first
        assert "statewire shut down" in out
        assert "upload factory stopped" in out
        assert "Traceback" not in out and "Warning" not in out, out


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.settimeout(20)
    return sock


def test_mixed_web_site_answers(mixed: Any) -> None:
    import http.client

    _, ports = mixed
    connection = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=20)
    connection.request("GET", "/hello")
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == b"hello from twisted.web"
    connection.close()


def test_mixed_upload_served_by_twisted(mixed: Any) -> None:
    _, ports = mixed
    with _connect(ports["upload"]) as sock:
        sock.sendall(b"USER bob\r\nPUT f 3\r\nabcGET f\r\nQUIT\r\n")
        assert _read_to_end(sock) == (
            b"230 hello bob\r\n150 send 3 bytes\r\n226 stored f\r\n213 3\r\nabc221 bye\r\n"
        )


def test_mixed_async_outputs_keep_request_order(mixed: Any) -> None:
    _, ports = mixed
    with _connect(ports["slow"]) as sock:
        sock.sendall(b"".join(b"%d\r\n" % n for n in range(12)))
        assert _lines_until(sock, 12) == [b"done %d" % n for n in range(12)]


def test_mixed_declared_async_outputs_on_twisted_reactor(mixed: Any) -> None:
    _, ports = mixed
    with _connect(ports["declared"]) as sock:
        sock.sendall(b"".join(b"%d\r\n" % n for n in range(12)))
        assert _lines_until(sock, 12) == [b"declared %d" % n for n in range(12)]


def test_mixed_answer_on_statewire_reactor_sharing_the_loop(mixed: Any) -> None:
    _, ports = mixed
    with _connect(ports["answer"]) as sock:
        sock.sendall(b"How are you?\r\nloop\r\n")
        assert _lines_until(sock, 2) == [b"Fine", b"same loop"]


def test_mixed_backpressure_pauses_and_loses_nothing(mixed: Any) -> None:
    _, ports = mixed
    count, size = 20, 200_000
    with _connect(ports["big"]) as sock:
        sock.sendall(b"".join(b"%d\r\n" % n for n in range(count)))
        for n in range(count):  # each reply whole, in order
            assert _read_exactly(sock, size) == (b"%d:" % n).ljust(size, b".")
        sock.sendall(b"stats\r\n")
        stats = json.loads(_lines_until(sock, 1)[0])
    assert stats["congested"] >= 1  # Twisted's buffer filled: transportCongested(True)
    assert stats["congested"] == stats["drained"]


def test_mixed_idle_timeout_on_twisted_reactor(mixed: Any) -> None:
    _, ports = mixed
    with _connect(ports["idle"]) as sock:
        sock.sendall(b"USER dave\r\n")
        assert _read_to_end(sock) == b"230 hello dave\r\n421 idle too long\r\n"


def test_mixed_plain_protocol_echoes_until_half_close(mixed: Any) -> None:
    _, ports = mixed
    with _connect(ports["echo"]) as sock:
        sock.sendall(b"x" * 100_000)
        sock.shutdown(socket.SHUT_WR)
        assert _read_to_end(sock) == b"x" * 100_000


def test_mixed_half_close_still_gets_the_reply(mixed: Any) -> None:
    _, ports = mixed
    with _connect(ports["upload"]) as sock:
        sock.sendall(b"USER carol\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert _read_to_end(sock) == b"230 hello carol\r\n"


def test_mixed_smtp_over_twisted_tls_is_a_tls_session(mixed: Any) -> None:
    """A statewire SMTP server behind Twisted's ``listenSSL``: the session knows it is
    encrypted (Twisted's transport provides ``ISSLTransport``), so AUTH (TLS only by
    default) is offered and taken, and STARTTLS is not offered. The same factory over
    Twisted's plain TCP offers neither (no TLS, and no ``startTLS`` on Twisted's
    transports)."""
    import smtplib
    import ssl

    _, ports = mixed
    context = ssl.create_default_context(cafile=ports["cert"])
    with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], timeout=20, context=context) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("auth") and not smtp.has_extn("starttls")
        assert smtp.login("alice", "secret")[0] == 235
        assert smtp.sendmail("a@example.org", ["b@example.org"], b"over Twisted TLS") == {}
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=20) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth") and not smtp.has_extn("starttls")
        assert smtp.docmd("AUTH", "PLAIN")[0] == 538  # encryption required first


def test_mixed_tls_behind_a_twisted_wrapper_still_stops_reading(mixed: Any) -> None:
    """An echo over Twisted's TLS, behind ``policies.TimeoutFactory`` (which does not pass
    ``handshakeCompleted`` on): once the handshake is over, a client that sends and never
    reads is stopped by backpressure (the server stops reading: the client's sends block
    after a few MiB of socket buffers), not echoed into the server's memory without end."""
    import ssl

    _, ports = mixed
    context = ssl.create_default_context(cafile=ports["cert"])
    raw = socket.create_connection(("127.0.0.1", ports["echo_tls"]), timeout=20)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"  # the handshake is over, the echo answers
        sock.settimeout(3)
        chunk, sent, limit = b"x" * 65536, 0, 64 << 20
        try:
            while sent < limit:
                sock.sendall(chunk)
                sent += len(chunk)
        except builtins.TimeoutError:  # (statewire's TimeoutError is imported here)
            pass
    assert sent < limit // 2, f"the server read {sent >> 20} MiB it could not send back"


class _ShutdownReactor:
    """The part of Twisted's global reactor a shutdown trigger uses, on a test clock."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.triggers: dict[int, Any] = {}

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> int:
        assert (phase, event) == ("before", "shutdown")
        self.triggers[len(self.triggers) + 1] = f
        return len(self.triggers)

    def removeSystemEventTrigger(self, trigger: int) -> None:
        del self.triggers[trigger]

    def callLater(self, seconds: float, f: Any, *args: Any) -> Any:
        return self.clock.callLater(seconds, f, *args)


def test_the_shutdown_trigger_stops_the_factory_then_closes_its_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reactor = _ShutdownReactor()
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    stops: list[str] = []

    class Counted(Factory):
        protocol = Lines

        def stopFactory(self) -> None:
            stops.append("stop")

    adapted = adapt(Counted())
    adapted.doStart()
    adapted.doStart()  # two ports
    (trigger,) = reactor.triggers.values()
    shims, transports = [], []
    for _ in range(2):
        shim = adapted.buildProtocol(PEER)
        assert shim is not None
        transports.append(StringTransport())
        shim.makeConnection(transports[-1])
        shims.append(shim)
    drained = trigger()
    assert stops == ["stop"]  # the factory first, once for both ports
    assert all(transport.disconnecting for transport in transports)  # closing, flushed
    assert adapted.buildProtocol(PEER) is None  # the ports still accept: refused
    fired: list[object] = []
    drained.addCallback(fired.append)
    shims[0].connectionLost(TwistedFailure(terror.ConnectionDone()))
    assert not fired
    reactor.clock.advance(adapted.shutdown_timeout)  # the second never closed: aborted
    assert transports[1].disconnected and not fired  # (its loss comes a turn later)
    shims[1].connectionLost(TwistedFailure(terror.ConnectionAborted()))
    assert not fired
    reactor.clock.advance(0)  # a loop turn for what the losses cancelled
    assert fired == [None]
    adapted.doStop()
    adapted.doStop()  # Twisted's ports stop after: nothing more
    assert stops == ["stop"] and not reactor.clock.getDelayedCalls()
    # a factory whose ports all stopped before the shutdown keeps its trigger while a
    # connection is open, then has none left; one aborted whose loss never comes ends
    # the shutdown after ABORT_GRACE
    again = adapt(Counted())
    again.doStart()
    shim = again.buildProtocol(PEER)
    assert shim is not None
    shim.makeConnection(StringTransport())
    again.doStop()
    assert len(reactor.triggers) == 2 and stops == ["stop", "stop"]
    drained = reactor.triggers[2]()
    drained.addCallback(fired.append)
    reactor.clock.advance(adapted.shutdown_timeout)
    reactor.clock.advance(ABORT_GRACE)
    assert fired == [None, None] and not reactor.clock.getDelayedCalls()
    gone = adapt(Counted())
    gone.doStart()
    gone.doStop()
    assert len(reactor.triggers) == 2  # (added, then removed: nothing open)


def test_stopping_twisted_reactor_stops_adapted_servers_gracefully() -> None:
    """``reactor.stop()`` on Twisted: before Twisted drops every connection, the adapted
    factory stops (statewire's SMTP server says ``421 4.3.2`` to its sessions, one with a
    message under way too) and each connection closes once flushed, as at statewire's
    own reactor's shutdown (it was a bare end of stream)."""
    from process_helpers import running

    with running("tests/test_twisted_interop.py", env={"PYTHONWARNINGS": "default"}) as server:
        ports = json.loads(server.lines.get(timeout=20).split(" ", 1)[1])
        idle, sending = _connect(ports["smtp"]), _connect(ports["smtp"])
        for sock in (idle, sending):
            assert _lines_until(sock, 1)[0].startswith(b"220 ")
            sock.sendall(b"EHLO client.example\r\n")
            assert _lines_until(sock, 1)[0].startswith(b"250")
        sending.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert [reply[:3] for reply in _lines_until(sending, 3)] == [b"250", b"250", b"354"]
        sending.sendall(b"Subject: cut short\r\n\r\nhalf a body\r\n")
        out = server.stop(signal.SIGINT)
    assert "upload factory stopped" in out and "Traceback" not in out, out
    for sock in (idle, sending):
        with sock:
            assert _read_to_end(sock).startswith(b"421 4.3.2 ")


def test_no_twisted_reactor_in_this_process() -> None:
    assert "twisted.internet.reactor" not in sys.modules


# -- the other process ----------------------------------------------------------------------


class Asks(Inputs):
    def ask(self, question: bytes) -> None: ...


class AskCore(MachineProtocol):
    sends = line(b"\r\n")


_asks = TypeMachineBuilder(Asks, AskCore)
_asking = _asks.state("asking")


@_asking.upon(Asks.ask).loop()
def _answer_later(machine: Asks, core: AskCore, question: bytes) -> Any:
    async def work() -> None:
        # later questions wait less: only the connection's waiting keeps them in order
        await asyncio.sleep(0.001 * (12 - int(question)))
        running = asyncio.get_running_loop()
        await task.deferLater(core.transport.reactor, 0, lambda: None).asFuture(running)
        core.send(b"declared " + question)

    return work()


class DeclaredSlow(AskCore):
    """A declared protocol whose output is a coroutine awaiting a Deferred of the Twisted
    reactor serving it (``transport.reactor``)."""

    machine = _asks.build()
    framings = {_asking: line(b"\r\n", max_length=64)}
    routes = {_asking: Asks.ask}


def _serve() -> None:
    """Twisted's asyncio reactor with a web site, statewire protocols through ``adapt`` and
    statewire's own reactor on the same loop; prints the ports, runs until SIGINT."""
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncioreactor.install(loop)
    from twisted.internet import reactor
    from twisted.web import resource, server

    class Hello(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"text/plain")
            return b"hello from twisted.web"

    import statewire
    from statewire import wire

    class QuickIdle(upload.UploadServer):
        # a tenth of a second of Twisted's real clock
        timeouts = {
            state: upload.Timeout(0.1, upload.Commands.idle, idle=True)
            for state in (upload.anonymous, upload.ready, upload.receiving)
        }

    class QuickIdleFactory(upload.UploadFactory):
        protocol = QuickIdle

    root = resource.Resource()
    root.putChild(b"hello", Hello())
    ports: dict[str, Any] = {}
    ports["web"] = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1").getHost().port

    class StoppingUpload(upload.UploadFactory):
        def stopFactory(self) -> None:
            print("upload factory stopped", flush=True)

    class Slow(basic.LineReceiver):
        async def lineReceived(self, line: bytes) -> None:  # type: ignore[override]
            # later lines wait less: only the connection's waiting keeps them in order
            await asyncio.sleep(0.001 * (12 - int(line)))
            running = asyncio.get_running_loop()
            await task.deferLater(reactor, 0, lambda: None).asFuture(running)
            self.sendLine(b"done " + line)

    class Big(basic.LineReceiver):
        counts = {"congested": 0, "drained": 0}

        def lineReceived(self, line: bytes) -> None:
            if line == b"stats":
                self.sendLine(json.dumps(self.counts).encode())
            else:
                self.transport.write((line + b":").ljust(200_000, b"."))

        def transportCongested(self, congested: bool) -> None:
            self.counts["congested" if congested else "drained"] += 1
            super().transportCongested(congested)

    class SameLoop(answer.Answer):
        def lineReceived(self, line: bytes) -> None:
            if line == b"loop":
                shared = statewire.reactor.loop is asyncio.get_running_loop() is loop
                self.sendLine(b"same loop" if shared else b"other loop")
            else:
                super().lineReceived(line)

    for name, factory in [
        ("upload", StoppingUpload()),
        ("slow", Factory.forProtocol(Slow)),
        ("big", Factory.forProtocol(Big)),
        ("declared", Factory.forProtocol(DeclaredSlow)),
        ("echo", Factory.forProtocol(wire.Echo)),
        ("idle", QuickIdleFactory()),
    ]:
        ports[name] = reactor.listenTCP(0, adapt(factory), interface="127.0.0.1").getHost().port

    # SMTP through ``adapt``, over Twisted's TLS port and its plain one
    import tempfile

    from OpenSSL import SSL
    from runtime_helpers import self_signed_certificate
    from twisted.internet.interfaces import IOpenSSLContextFactory
    from zope.interface import implementer

    from statewire.protocols.smtp import SMTPFactory, SMTPHandler

    def alice(session: Any, mechanism: str, identity: bytes, password: bytes) -> bool:
        return (identity, password) == (b"alice", b"secret")

    smtp = adapt(SMTPFactory(SMTPHandler(), check_credentials=alice))
    certs = tempfile.TemporaryDirectory()
    cert, key = self_signed_certificate(Path(certs.name))

    @implementer(IOpenSSLContextFactory)
    class Files:
        # Twisted's context factory, read from the files (its certificate objects are
        # pyOpenSSL's, whose use is deprecated)
        def getContext(self) -> SSL.Context:
            context = SSL.Context(SSL.TLS_SERVER_METHOD)
            context.use_certificate_chain_file(cert)
            context.use_privatekey_file(key)
            return context

    options = Files()
    ports["smtps"] = reactor.listenSSL(0, smtp, options, interface="127.0.0.1").getHost().port
    ports["smtp"] = reactor.listenTCP(0, smtp, interface="127.0.0.1").getHost().port
    ports["cert"] = cert
    # an echo behind a Twisted wrapper (policies.ProtocolWrapper shows ISSLTransport, but
    # does not pass handshakeCompleted on) over TLS
    from twisted.protocols import policies

    wrapped = policies.TimeoutFactory(adapt(Factory.forProtocol(wire.Echo)), timeoutPeriod=60)
    echo_tls = reactor.listenSSL(0, wrapped, options, interface="127.0.0.1")
    ports["echo_tls"] = echo_tls.getHost().port

    def start_statewire() -> None:
        # called by the running loop: statewire's reactor adopts it (Twisted's
        # callWhenRunning would call it before the loop runs, and statewire's reactor
        # would make a loop of its own)
        port = statewire.reactor.listenTCP(0, Factory.forProtocol(SameLoop), interface="127.0.0.1")
        ports["answer"] = port.getHost().port  # type: ignore[union-attr]
        print(f"listening on 127.0.0.1:{ports['web']}", flush=True)
        print("ports " + json.dumps(ports), flush=True)

    def stop_statewire() -> Any:
        done = defer.Deferred.fromFuture(loop.create_task(statewire.reactor.shutdown()))
        return done.addCallback(lambda _: print("statewire shut down", flush=True))

    loop.call_soon(start_statewire)
    reactor.addSystemEventTrigger("before", "shutdown", stop_statewire)
    reactor.run()
    certs.cleanup()


if __name__ == "__main__":
    _serve()
