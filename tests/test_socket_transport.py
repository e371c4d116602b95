"""statewire's own socket transport, its epoll poller and the fallbacks, over loopback.

Every behaviour is checked on each way a plain TCP connection can be served: the epoll
poller (the default), the loop's per-socket readers (where epoll is missing), the loop's
native transports (``Reactor.native_transports``), and the same on uvloop when installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import os
import socket
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from process_helpers import recv_exactly, running
from runtime_helpers import HOST, listen, scenario

from statewire._reactor import Reactor
from statewire._transport import LoopPoller, Poller, SocketTransport
from statewire.address import IPv4Address
from statewire.error import ConnectionAborted, ConnectionDone, ConnectionLost, Failure
from statewire.protocol import Factory, Protocol

T = TypeVar("T")

MODES = ["epoll", "loop-readers", "native"]
if importlib.util.find_spec("uvloop") is not None:
    MODES += ["uvloop-epoll", "uvloop-native"]


@pytest.fixture(params=MODES)
def run(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[Reactor], Awaitable[T]]], T]:
    """Run a scenario on a fresh reactor served the way the parameter names."""
    mode: str = request.param
    if mode == "loop-readers":
        monkeypatch.setattr(Poller, "make", staticmethod(LoopPoller))

    def in_mode(body: Callable[[Reactor], Awaitable[T]]) -> T:
        native, uvloop = mode.endswith("native"), mode.startswith("uvloop")
        return scenario(body, 30, native=native, uvloop=uvloop)

    in_mode.mode = mode  # type: ignore[attr-defined]
    return in_mode


def test_half_close_flushes_then_closes(run: Any) -> None:
    """The peer sends, then shuts its side: everything answered is delivered before our
    side closes, and the protocol hears ConnectionDone."""
    seen: dict[str, Any] = {}

    class Upper(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data.upper() * 1000)

        def connectionLost(self, reason: Failure) -> None:
            seen["reason"] = reason
            seen["disconnecting"] = self.transport.disconnecting
            seen["host"] = self.transport.getHost()

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Upper))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"abc")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write_eof()
        data = await reader.read()  # until the server closes
        writer.close()
        while "reason" not in seen:
            await asyncio.sleep(0.01)
        return data

    assert run(body) == b"ABC" * 1000
    assert seen["reason"].check(ConnectionDone)
    assert seen["disconnecting"]
    # the address is still known once the socket is closed
    assert isinstance(seen["host"], IPv4Address) and seen["host"].host == HOST


def test_pause_and_resume_reading(run: Any) -> None:
    """A protocol that pauses reading gets nothing until it resumes; then all of it."""
    got: list[bytes] = []

    class Paused(Protocol):
        def connectionMade(self) -> None:
            self.transport.pauseProducing()
            self.factory.reactor.callLater(0.3, self.transport.resumeProducing)

        def dataReceived(self, data: bytes) -> None:
            got.append(data)
            if b"".join(got).endswith(b"end"):
                self.transport.write(b"%d" % len(b"".join(got)))
                self.transport.loseConnection()

    async def body(reactor: Reactor) -> tuple[list[bytes], bytes]:
        factory = Factory.forProtocol(Paused)
        factory.reactor = reactor  # type: ignore[attr-defined]
        port = await listen(reactor, factory)
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"x" * 1000 + b"end")
        await asyncio.sleep(0.15)
        early = list(got)
        answer = await reader.read()
        writer.close()
        return early, answer

    early, answer = run(body)
    assert early == []
    assert answer == b"1003"


def test_large_write_to_a_slow_reader_arrives_whole_then_closes(run: Any) -> None:
    """One 8 MiB write, far over what the kernel takes at once, to a reader that takes it
    slowly: every byte arrives in order, then loseConnection closes the connection."""
    blob = bytes(range(256)) * (32 * 1024)

    class Big(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(blob)
            self.transport.loseConnection()

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Big))
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 16)
        parts = []
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            parts.append(chunk)
            if len(parts) % 16 == 0:
                await asyncio.sleep(0.001)
        writer.close()
        return b"".join(parts)

    data = run(body)
    assert len(data) == len(blob)
    assert data == blob


def test_closed_connections_leave_nothing_watched(run: Any) -> None:
    """Connections opened and closed (by either side) leave no socket in the poller and no
    connection in the reactor."""

    class Quiet(Protocol):
        def dataReceived(self, data: bytes) -> None:
            if data == b"bye":
                self.transport.loseConnection()

    async def body(reactor: Reactor) -> tuple[int, int, int]:
        port = await listen(reactor, Factory.forProtocol(Quiet))
        writers = []
        for _ in range(50):
            _, writer = await asyncio.open_connection(HOST, port)
            writers.append(writer)
        while len(reactor.connections) < 50:
            await asyncio.sleep(0.01)
        busy = _watched(reactor)
        for number, writer in enumerate(writers):
            if number % 2:
                writer.write(b"bye")
            else:
                writer.close()
        for _ in range(500):
            if not reactor.connections:
                break
            await asyncio.sleep(0.01)
        # the 25 the server closed linger (their clients are open and quiet: see
        # statewire.runtime.lingering) until their clients close
        native = run.mode.endswith("native")
        lingering = 0 if native else len(reactor.poller().lingering)
        watched_lingering = _watched(reactor)
        for writer in writers:
            writer.close()
        for _ in range(500):
            if not _watched(reactor):
                break
            await asyncio.sleep(0.01)
        return busy, len(reactor.connections), lingering, watched_lingering, _watched(reactor)

    busy, left, lingering, watched_lingering, watched = run(body)
    if run.mode in ("epoll", "uvloop-epoll", "loop-readers"):
        assert busy == 50
        assert lingering == watched_lingering == 25
    assert left == 0
    assert watched == 0


def _watched(reactor: Reactor) -> int:
    poller = reactor._current_poller
    if poller is None:
        return 0
    if isinstance(poller, LoopPoller):
        return len(poller._interest)
    return len(poller._watched)


def test_a_producer_registered_after_close_is_stopped_once(run: Any) -> None:
    """As Twisted: registering a producer on a closed (or closing) transport stops it at
    once, and it is not kept to be stopped again when connectionLost comes."""
    events: list[str] = []

    class Producer:
        def pauseProducing(self) -> None:
            events.append("pause")

        def resumeProducing(self) -> None:
            events.append("resume")

        def stopProducing(self) -> None:
            events.append("stop")

    class Late(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.abortConnection()
            self.transport.registerProducer(Producer(), True)

        def connectionLost(self, reason: Failure) -> None:
            events.append("lost")

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Late))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"x")
        with contextlib.suppress(ConnectionResetError):  # aborted: a reset
            await reader.read()
        writer.close()
        while "lost" not in events:
            await asyncio.sleep(0.01)

    run(body)
    assert events.count("stop") == 1
    assert events[-1] == "lost" or events[-2:] == ["lost", "stop"]


def test_reads_held_while_paused_are_dropped_by_a_close(run: Any) -> None:
    """A protocol that paused reading, then resumes and closes in one go, gets no
    dataReceived after it closed (on every path: the native one holds reads that arrive
    while paused)."""
    events: list[Any] = []

    class PauseThenClose(Protocol):
        def connectionMade(self) -> None:
            self.transport.pauseProducing()
            self.factory.reactor.callLater(0.3, self.finish)

        def finish(self) -> None:
            self.transport.resumeProducing()
            self.transport.loseConnection()
            events.append("closing")

        def dataReceived(self, data: bytes) -> None:
            events.append(("data", self.transport.disconnecting))

        def connectionLost(self, reason: Failure) -> None:
            events.append("lost")

    async def body(reactor: Reactor) -> None:
        factory = Factory.forProtocol(PauseThenClose)
        factory.reactor = reactor  # type: ignore[attr-defined]
        port = await listen(reactor, factory)
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"y" * 1000)
        with contextlib.suppress(ConnectionResetError):  # closed with unread data: RST
            await reader.read()
        writer.close()
        while "lost" not in events:
            await asyncio.sleep(0.01)

    run(body)
    assert ("data", True) not in events
    assert events[-1] == "lost"


@pytest.mark.parametrize("host", [HOST, "::1"])
def test_get_host_is_the_same_after_close(run: Any, host: str) -> None:
    """getHost() in connectionLost gives the connection's own address, as it did while
    open (IPv4 and IPv6)."""
    if host == "::1" and not _has_ipv6():
        pytest.skip("no IPv6 loopback here")
    seen: list[Any] = []

    class Note(Protocol):
        def connectionMade(self) -> None:
            seen.append(self.transport.getHost())
            self.transport.loseConnection()

        def connectionLost(self, reason: Failure) -> None:
            seen.append(self.transport.getHost())

    async def body(reactor: Reactor) -> None:
        number = await listen(reactor, Factory.forProtocol(Note), host=host)
        reader, writer = await asyncio.open_connection(host, number)
        await reader.read()
        writer.close()
        while len(seen) < 2:
            await asyncio.sleep(0.01)

    run(body)
    assert seen[0] == seen[1]
    assert seen[0].host == host


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("mode", ["epoll", "native"])
def test_nothing_of_the_reactor_stays_open_after_shutdown(mode: str) -> None:
    """After a reactor served connections and shut down, on a loop that is then closed,
    no file descriptor of statewire's is left (the poller's epoll set included)."""

    class Echo(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

    reactor = Reactor()  # kept alive (as the global reactor is): it must close its own
    reactor.native_transports = mode == "native"

    async def body() -> None:
        try:
            port = await listen(reactor, Factory.forProtocol(Echo))
            for _ in range(5):
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                writer.close()
        finally:
            await reactor.shutdown()

    before = _open_descriptors()
    asyncio.run(body())
    gc.collect()
    assert _open_descriptors() == before


def _open_descriptors() -> list[str]:
    """What this process has open (links of /proc/self/fd; the listing's own fd vanishes)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sorted(found)


def test_writes_after_lose_connection_in_the_same_callback_are_sent(run: Any) -> None:
    """As Twisted: loseConnection closes once what is written in the rest of the callback
    is sent too (here a farewell written after it, then a timer's write after close is
    ignored)."""
    seen: list[Any] = []

    class Bye(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(b"got it; ")
            self.transport.loseConnection()
            self.transport.write(b"bye\n")

        def connectionLost(self, reason: Failure) -> None:
            seen.append(reason)
            self.transport.write(b"too late")

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Bye))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"hi")
        data = await reader.read()
        writer.close()
        while not seen:
            await asyncio.sleep(0.01)
        return data

    assert run(body) == b"got it; bye\n"
    assert seen[0].check(ConnectionDone)


def test_abort_resets_and_reports_connection_aborted(run: Any) -> None:
    """abortConnection drops what was not sent, resets the connection (the peer sees a
    reset, not an orderly end) and connectionLost gets ConnectionAborted, as Twisted."""
    seen: list[Any] = []

    class Abort(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(b"never sent")
            self.transport.abortConnection()

        def connectionLost(self, reason: Failure) -> None:
            seen.append(reason)

    async def body(reactor: Reactor) -> str:
        port = await listen(reactor, Factory.forProtocol(Abort))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"hi")
        try:
            data = await reader.read()
            outcome = f"read {data!r}"
        except ConnectionResetError:
            outcome = "reset"
        writer.close()
        while not seen:
            await asyncio.sleep(0.01)
        return outcome

    assert run(body) == "reset"
    assert seen[0].check(ConnectionAborted)
    assert seen[0].check(ConnectionLost)


def test_socket_transports_are_used_by_default() -> None:
    kinds: list[type] = []

    class Note(Protocol):
        def connectionMade(self) -> None:
            kinds.append(type(self.transport))
            self.transport.loseConnection()

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Note))
        reader, writer = await asyncio.open_connection(HOST, port)
        await reader.read()
        writer.close()

    scenario(body)
    assert kinds == [SocketTransport]


SERVER = textwrap.dedent(
    """
    import logging, resource, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    import statewire.runtime.ports as runtime
    runtime.ACCEPT_RETRY_DELAY = 0.2
    from statewire import reactor
    from statewire.protocol import Factory
    from statewire.wire import Echo
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), 200, "127.0.0.1")
    print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()
    """
)


def test_running_out_of_descriptors_pauses_accepting_then_recovers() -> None:
    """A server whose descriptor limit is reached logs it, stops accepting for a moment
    (clients wait in the backlog) and serves again once descriptors are free: nothing
    crashes, the connections it holds keep working."""
    with running("-c", SERVER) as server:
        held = [socket.create_connection((HOST, server.port)) for _ in range(100)]
        try:
            held[0].sendall(b"first")
            assert recv_exactly(held[0], 5) == b"first"
            for sock in held[70:]:  # some of these wait in the backlog
                sock.close()
            for sock in held[1:70]:
                sock.close()
            late = socket.create_connection((HOST, server.port))
            late.sendall(b"late")
            assert recv_exactly(late, 4) == b"late"
            held[0].sendall(b"again")
            assert recv_exactly(held[0], 5) == b"again"
            late.close()
        finally:
            for sock in held:
                sock.close()
        out = server.stop()
    assert "cannot accept connections" in out


COLD = textwrap.dedent(
    """
    import logging, os, resource, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))  # few to use up
    import statewire.runtime.ports as runtime
    runtime.ACCEPT_RETRY_DELAY = 0.2
    from statewire import reactor
    from statewire.protocol import Factory
    from statewire.wire import Echo
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), 50, "127.0.0.1")
    hogs = []
    try:
        while True:  # use up every descriptor before the first connection comes
            hogs.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    def release():
        for fd in hogs:
            os.close(fd)
        print("released", flush=True)
    reactor.callLater(1.0, release)
    print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()
    """
)


def test_out_of_descriptors_before_the_first_connection() -> None:
    """No descriptor left even for the poller when the first client comes: the port logs
    it and retries later (no busy loop, no traceback), then serves the client once
    descriptors are free."""
    with running("-c", COLD) as server:
        client = socket.create_connection((HOST, server.port))
        client.sendall(b"hello")
        assert recv_exactly(client, 5, timeout=10) == b"hello"
        client.close()
        out = server.stop()
    assert "cannot accept connections" in out
    assert "Traceback" not in out
    assert out.count("cannot accept connections") < 20  # a retry every 0.2 s, not a spin
