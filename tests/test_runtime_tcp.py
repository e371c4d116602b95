"""The runtime over real loopback sockets: TCP, the seed's services, writes, errors."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

import pytest
from runtime_helpers import HOST, exchange, listen, read_all, scenario

from statewire._reactor import Reactor
from statewire._transport import SocketTransport, Transport
from statewire.error import CannotListenError, ConnectionDone, ConnectionLost, Failure
from statewire.protocol import ClientFactory, Factory, Protocol
from statewire.wire import QOTD, Chargen, Daytime, Discard, Echo, Time


def test_echo_over_tcp() -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Echo))
        return await exchange(HOST, port, b"hello, world", 12)

    assert scenario(body) == b"hello, world"


def test_qotd_daytime_time_send_then_close() -> None:
    async def body(reactor: Reactor) -> tuple[bytes, bytes, bytes]:
        qotd = await listen(reactor, Factory.forProtocol(QOTD))
        daytime = await listen(reactor, Factory.forProtocol(Daytime))
        clock = await listen(reactor, Factory.forProtocol(Time))
        return (
            await read_all(HOST, qotd),
            await read_all(HOST, daytime),
            await read_all(HOST, clock),
        )

    quote, daytime, clock = scenario(body)
    assert quote == b"An apple a day keeps the doctor away\r\n"
    assert daytime.endswith(b"\r\n") and str(time.gmtime().tm_year).encode() in daytime
    (seconds,) = struct.unpack("!I", clock)
    assert abs(seconds - 2208988800 - time.time()) < 5


def test_discard_keeps_the_connection_and_answers_nothing() -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Discard))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"x" * 100_000)
        await writer.drain()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
        writer.close()
        return b""

    scenario(body)


def test_chargen_pattern_and_slow_reader_memory_is_bounded() -> None:
    async def body(reactor: Reactor) -> tuple[bytes, int]:
        port = await listen(reactor, Factory.forProtocol(Chargen))
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 16)
        first = await reader.readexactly(74 * 3)
        transport = writer.transport
        transport.pause_reading()  # a client that stops reading
        await asyncio.sleep(0.5)
        (connection,) = reactor.connections
        buffered = connection._write_buffer_size()
        writer.close()
        return first, buffered

    first, buffered = scenario(body)
    lines = first.split(b"\r\n")
    assert lines[0] == bytes(range(0x20, 0x20 + 72))
    assert lines[1] == bytes(range(0x21, 0x21 + 72))
    # bounded by the high-water mark plus one produced chunk, not growing with time
    assert buffered < 256 * 1024 + 64 * 74 + 1


def test_writes_in_one_callback_are_coalesced(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []
    for kind in (SocketTransport, Transport):

        def counting(self: Any, data: bytes, original: Any = kind._send) -> None:
            sent.append(data)
            original(self, data)

        monkeypatch.setattr(kind, "_send", counting)

    class Chatty(Protocol):
        def dataReceived(self, data: bytes) -> None:
            for i in range(100):
                self.transport.write(b"%d," % i)
            self.transport.writeSequence([b"a", bytearray(b"b"), memoryview(b"c\n")])

    factory = Factory.forProtocol(Chatty)

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, factory)
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"go")
        line = await reader.readline()
        writer.close()
        return line

    line = scenario(body)
    assert line == b"".join(b"%d," % i for i in range(100)) + b"abc\n"
    assert sent == [line]  # 103 writes, one send


def test_write_refuses_str_and_is_a_no_op_after_close() -> None:
    outcome: dict[str, Any] = {}

    class Strict(Protocol):
        def connectionMade(self) -> None:
            try:
                self.transport.write("text")
            except TypeError as error:
                outcome["error"] = str(error)
            self.transport.loseConnection()

        def connectionLost(self, reason: Failure) -> None:
            self.transport.write(b"late")  # no error
            outcome["reason"] = reason

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Strict))
        data = await read_all(HOST, port)
        await asyncio.sleep(0.05)
        return data

    assert scenario(body) == b""
    assert "encode" in outcome["error"]
    assert outcome["reason"].check(ConnectionDone)


def test_port_in_use_raises_naming_the_address() -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Echo))
        with pytest.raises(CannotListenError, match=f"127.0.0.1:{port}.*in use"):
            reactor.listenTCP(port, Factory.forProtocol(Echo), interface=HOST)

    scenario(body)


def test_build_protocol_returning_none_refuses() -> None:
    class Refusing(Factory):
        def buildProtocol(self, addr: Any) -> None:
            return None

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Refusing())
        return await read_all(HOST, port)

    assert scenario(body) == b""


def test_client_connection_refused_and_lost() -> None:
    class Client(ClientFactory):
        protocol = Protocol

        def __init__(self) -> None:
            self.failed: list[Failure] = []
            self.lost: list[Failure] = []
            self.done = asyncio.Event()

        def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
            self.failed.append(reason)
            self.done.set()

        def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
            self.lost.append(reason)
            self.done.set()

    async def body(reactor: Reactor) -> tuple[Client, Client]:
        closed = await listen(reactor, Factory.forProtocol(QOTD))
        free = reactor.listenTCP(0, Factory.forProtocol(Echo), interface=HOST)
        number = free.getHost().port  # type: ignore[union-attr]
        free.stopListening()
        refused = Client()
        reactor.connectTCP(HOST, number, refused, timeout=5)
        await refused.done.wait()
        quoted = Client()
        reactor.connectTCP(HOST, closed, quoted)
        await quoted.done.wait()
        return refused, quoted

    refused, quoted = scenario(body)
    from statewire.error import ConnectionRefusedError as Refused

    assert refused.failed and refused.failed[0].check(Refused)
    assert quoted.lost and quoted.lost[0].check(ConnectionDone)


def test_a_connection_the_server_closes_at_once_can_be_made_again() -> None:
    """The connector is connected as soon as its protocol is built: a server closing at
    once (before the attempt's task resumes) leaves it disconnected, and connecting again
    from ``clientConnectionLost`` works, time after time."""

    class Closer(Protocol):
        def connectionMade(self) -> None:
            self.transport.loseConnection()

    class Again(ClientFactory):
        protocol = Protocol

        def __init__(self) -> None:
            self.lost = 0
            self.errors: list[BaseException] = []
            self.done = asyncio.Event()

        def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
            self.lost += 1
            if self.lost == 5:
                self.done.set()
                return
            try:
                connector.connect()
            except RuntimeError as error:
                self.errors.append(error)
                self.done.set()

    async def body(reactor: Reactor) -> Again:
        port = await listen(reactor, Factory.forProtocol(Closer))
        client = Again()
        connector = reactor.connectTCP(HOST, port, client, timeout=5)
        await client.done.wait()
        await asyncio.sleep(0.05)  # the last attempt's task has resumed by now
        assert connector.state == "disconnected"
        return client

    client = scenario(body)
    assert client.errors == []
    assert client.lost == 5


def test_peer_reset_is_a_lost_connection() -> None:
    reasons: list[Failure] = []
    lost = asyncio.Event()

    class Watch(Protocol):
        def connectionLost(self, reason: Failure) -> None:
            reasons.append(reason)
            lost.set()

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Watch))
        _, writer = await asyncio.open_connection(HOST, port)
        await asyncio.sleep(0.05)
        writer.transport.abort()  # RST
        await asyncio.wait_for(lost.wait(), 5)

    scenario(body)
    assert reasons[0].check(ConnectionLost, ConnectionDone)


def test_errors_in_user_code_close_only_that_connection(caplog: Any) -> None:
    class Fragile(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"hi\n")

        def dataReceived(self, data: bytes) -> None:
            if data.startswith(b"boom"):
                raise RuntimeError("boom in dataReceived")
            self.transport.write(data)

    async def body(reactor: Reactor) -> tuple[bytes, bytes]:
        port = await listen(reactor, Factory.forProtocol(Fragile))
        good_reader, good_writer = await asyncio.open_connection(HOST, port)
        bad = await read_all(HOST, port, b"boom")
        good_writer.write(b"still here\n")
        await good_reader.readline()
        echoed = await good_reader.readline()
        good_writer.close()
        return bad, echoed

    with caplog.at_level(logging.ERROR, logger="statewire"):
        bad, echoed = scenario(body)
    assert bad == b"hi\n"
    assert echoed == b"still here\n"
    assert "boom in dataReceived" in caplog.text


def test_thousand_concurrent_clients() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < wanted:  # clients and server share this process: 2 000 sockets and more
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    async def body(reactor: Reactor) -> list[bytes]:
        port = await listen(reactor, Factory.forProtocol(Echo), backlog=1024)
        return await asyncio.gather(
            *(exchange(HOST, port, b"client %04d\n" % i, 12) for i in range(1000))
        )

    replies = scenario(body)
    assert replies == [b"client %04d\n" % i for i in range(1000)]


def test_call_later_and_delayed_call() -> None:
    async def body(reactor: Reactor) -> list[str]:
        seen: list[str] = []
        first = reactor.callLater(0.05, seen.append, "first")
        cancelled = reactor.callLater(0.01, seen.append, "cancelled")
        cancelled.cancel()
        later = reactor.callLater(0.01, seen.append, "delayed")
        later.delay(0.1)
        assert first.active() and not cancelled.active()
        assert later.getTime() > first.getTime()
        await asyncio.sleep(0.2)
        assert not first.active()
        return seen

    assert scenario(body) == ["first", "delayed"]


def test_ipv6_loopback() -> None:
    async def body(reactor: Reactor) -> bytes:
        port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="::1")
        await port.ready
        number = port.getHost().port  # type: ignore[union-attr]
        assert port.getHost().host == "::1"  # type: ignore[union-attr]
        return await exchange("::1", number, b"six", 3)

    assert scenario(body) == b"six"


def test_pull_producer_is_asked_until_it_finishes() -> None:
    class Pages:
        def __init__(self, transport: Any) -> None:
            self.transport = transport
            self.left = 50

        def resumeProducing(self) -> None:
            if self.left:
                self.left -= 1
                self.transport.write(b"p" * 10_000)
            else:
                self.transport.unregisterProducer()
                self.transport.loseConnection()

        def stopProducing(self) -> None:
            self.left = 0

    class Serve(Protocol):
        def connectionMade(self) -> None:
            self.transport.registerProducer(Pages(self.transport), False)

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Serve))
        return await read_all(HOST, port)

    assert scenario(body) == b"p" * 500_000


@pytest.mark.parametrize("native", [False, True])
def test_client_connections_are_served_by_statewire_s_socket_transport(native: bool) -> None:
    """``connectTCP`` serves a client connection as accepted ones are, with statewire's
    socket transport (the loop's own with ``native_transports``); the exchange is the
    same either way."""
    from statewire.runtime.socket_transport import SocketTransport

    class Client(ClientFactory):
        protocol = Protocol

    async def body(reactor: Reactor) -> tuple[type, bytes, object]:
        reactor.native_transports = native
        port = await listen(reactor, Factory.forProtocol(Echo))
        connector = reactor.connectTCP(HOST, port, Client(), timeout=5)
        protocol = await connector.connected
        got: list[bytes] = []
        protocol.dataReceived = got.append
        protocol.transport.write(b"ping")
        for _ in range(200):
            if b"".join(got) == b"ping":
                break
            await asyncio.sleep(0.01)
        return type(protocol.transport), b"".join(got), protocol.transport.getPeer().port

    kind, echoed, peer_port = scenario(body)
    assert (kind is SocketTransport) is not native
    assert echoed == b"ping"
    assert isinstance(peer_port, int)
