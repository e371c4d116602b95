"""Asynchronous outputs: an output (or a ``basic`` callback) returning an awaitable holds
framing until it completes, so pipelined requests get their replies in request order.

In memory, the work is a :class:`Work`: a minimal future the test completes by hand (no
event loop needed); over sockets it is ``async def`` code sleeping random small delays.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from functools import partial
from itertools import pairwise
from typing import Any, Protocol

import pytest
from automat import MethodicalMachine, NoTransition, TypeMachineBuilder
from hypothesis import given
from hypothesis import strategies as st
from runtime_helpers import HOST, listen, scenario

from grammars import line, netstring
from statewire.basic import LineReceiver, NetstringReceiver
from statewire.declarative import MachineProtocol
from statewire.error import connectionDone
from statewire.machine import Timeout, by_verb
from statewire.machine._waiting import returns_nothing
from statewire.protocol import Factory
from statewire.testing.memory import Clock, StringTransport


class Work:
    """A future completed by the test: ``add_done_callback``, ``cancel``, ``exception``."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.done = False
        self.error: BaseException | None = None
        self.is_cancelled = False
        self._callbacks: list[Callable[[Work], object]] = []

    def add_done_callback(self, callback: Callable[[Work], object]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def finish(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done, self.error = True, error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def cancel(self) -> bool:
        self.is_cancelled = True
        self.finish()
        return True

    def cancelled(self) -> bool:
        return self.is_cancelled

    def exception(self) -> BaseException | None:
        return self.error

    @property
    def ok(self) -> bool:
        return self.error is None and not self.is_cancelled


# -- a TypeMachineBuilder service: every path a frame takes to an output ----------------------


class Commands(Protocol):
    def get(self, key: bytes) -> None: ...
    def ping(self) -> None: ...
    def twice(self, key: bytes) -> None: ...
    def auth(self, name: bytes) -> None: ...
    def authed(self) -> None: ...
    def string(self, data: bytes) -> None: ...
    def lost(self, reason: object) -> None: ...


class Service(MachineProtocol):
    """Replies are lines whatever the state; ``works`` is the work started, in order."""

    sends = line(b"\r\n")

    def connectionMade(self) -> None:
        self.works: list[Work] = []
        self.losses = 0

    def start(self, key: bytes) -> Work:
        work = Work(key)
        self.works.append(work)
        return work


service = TypeMachineBuilder(Commands, Service)
guest = service.state("guest")
member = service.state("member")
gone = service.state("gone")


@guest.upon(Commands.get).loop()
def get(machine: Commands, core: Service, key: bytes) -> Work:  # by_verb's fast path
    work = core.start(key)
    work.add_done_callback(lambda w: w.ok and core.send(b"VALUE " + key))
    return work


@guest.upon(Commands.twice).loop()
def twice(machine: Commands, core: Service, key: bytes) -> Work:  # a converter: keyed path
    work = core.start(key)
    work.add_done_callback(lambda w: w.ok and core.send(b"TWICE " + key + key))
    return work


@guest.upon(Commands.ping).loop()
def ping(machine: Commands, core: Service) -> None:  # synchronous, between async ones
    core.send(b"PONG")


@guest.upon(Commands.auth).loop()
def auth(machine: Commands, core: Service, name: bytes) -> Work:
    work = core.start(name)
    work.add_done_callback(lambda w: w.ok and machine.authed())  # the state changes later
    return work


@guest.upon(Commands.authed).to(member)
def welcome(machine: Commands, core: Service) -> None:
    core.send(b"WELCOME")


@member.upon(Commands.string).loop()
def string(machine: Commands, core: Service, data: bytes) -> Work:  # the direct handler
    work = core.start(data)
    work.add_done_callback(lambda w: w.ok and core.send(b"STRING " + data))
    return work


@guest.upon(Commands.lost).to(gone)
def lost_guest(machine: Commands, core: Service, reason: object) -> None:
    core.losses += 1


@member.upon(Commands.lost).to(gone)
def lost_member(machine: Commands, core: Service, reason: object) -> None:
    core.losses += 1


class TypedService(Service):
    machine = service.build()
    framings = {guest: line(b"\r\n", max_length=100), member: netstring(max_length=100)}
    routes = {
        guest: by_verb(
            {
                b"GET": Commands.get,
                b"PING": Commands.ping,
                b"AUTH": Commands.auth,
                b"TWICE": (Commands.twice, lambda key: (key,)),
            }
        ),
        member: Commands.string,
    }
    lost = Commands.lost


# -- the same service as a MethodicalMachine -----------------------------------------------------


class MethodicalService(Service):
    _machine = MethodicalMachine()

    @_machine.state(initial=True)
    def guest(self) -> None:
        "reading commands"

    @_machine.state()
    def member(self) -> None:
        "reading netstrings"

    @_machine.state()
    def gone(self) -> None:
        "disconnected"

    @_machine.input()
    def get(self, key: bytes) -> None:
        "GET"

    @_machine.input()
    def twice(self, key: bytes) -> None:
        "TWICE"

    @_machine.input()
    def ping(self) -> None:
        "PING"

    @_machine.input()
    def auth(self, name: bytes) -> None:
        "AUTH"

    @_machine.input()
    def authed(self) -> None:
        "the name was checked"

    @_machine.input()
    def string(self, data: bytes) -> None:
        "a netstring"

    @_machine.input()
    def disconnected(self, reason: object) -> None:
        "the connection is gone"

    @_machine.output()
    def _get(self, key: bytes) -> Work:
        work = self.start(key)
        work.add_done_callback(lambda w: w.ok and self.send(b"VALUE " + key))
        return work

    @_machine.output()
    def _twice(self, key: bytes) -> Work:
        work = self.start(key)
        work.add_done_callback(lambda w: w.ok and self.send(b"TWICE " + key + key))
        return work

    @_machine.output()
    def _ping(self) -> None:
        self.send(b"PONG")

    @_machine.output()
    def _auth(self, name: bytes) -> Work:
        work = self.start(name)
        work.add_done_callback(lambda w: w.ok and self.authed())
        return work

    @_machine.output()
    def _welcome(self) -> None:
        self.send(b"WELCOME")

    @_machine.output()
    def _string(self, data: bytes) -> Work:
        work = self.start(data)
        work.add_done_callback(lambda w: w.ok and self.send(b"STRING " + data))
        return work

    @_machine.output()
    def _lose(self, reason: object) -> None:
        self.losses += 1

    guest.upon(get, enter=guest, outputs=[_get])
    guest.upon(twice, enter=guest, outputs=[_twice])
    guest.upon(ping, enter=guest, outputs=[_ping])
    guest.upon(auth, enter=guest, outputs=[_auth])
    guest.upon(authed, enter=member, outputs=[_welcome])
    member.upon(string, enter=member, outputs=[_string])
    guest.upon(disconnected, enter=gone, outputs=[_lose])
    member.upon(disconnected, enter=gone, outputs=[_lose])

    machine = _machine
    framings = {guest: line(b"\r\n", max_length=100), member: netstring(max_length=100)}
    routes = {
        guest: by_verb(
            {b"GET": get, b"PING": ping, b"AUTH": auth, b"TWICE": (twice, lambda key: (key,))}
        ),
        member: string,
    }
    lost = disconnected


STYLES = pytest.mark.parametrize(
    "kind", [TypedService, MethodicalService], ids=["typed", "methodical"]
)


def connect(kind: type[Service]) -> tuple[Service, StringTransport]:
    protocol = kind()
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def pending(protocol: Service) -> list[Work]:
    return [w for w in protocol.works if not w.done]


@STYLES
def test_work_completed_out_of_order_replies_in_request_order(kind: type[Service]) -> None:
    protocol, transport = connect(kind)
    protocol.dataReceived(b"GET a\r\nPING\r\nTWICE b\r\nGET c\r\n")
    assert [w.key for w in protocol.works] == [b"a"]  # the next request waits unframed
    assert transport.value() == b""
    # the work of later requests completes first: done before they are even framed
    later = {b"b": Work(b"b"), b"c": Work(b"c")}
    protocol.start = lambda key: later.get(key) or Service.start(protocol, key)  # type: ignore[method-assign]
    later[b"c"].finish()
    later[b"b"].finish()
    protocol.works[0].finish()
    assert transport.value() == b"VALUE a\r\nPONG\r\nTWICE bb\r\nVALUE c\r\n"


@STYLES
def test_the_state_the_work_leads_to_frames_what_arrived_meanwhile(kind: type[Service]) -> None:
    protocol, transport = connect(kind)
    protocol.dataReceived(b"AUTH ann\r\n3:one,")
    protocol.dataReceived(b"3:two,")
    assert protocol.machine_state == "guest"
    protocol.works[0].finish()  # authed(): the bytes after AUTH are netstrings now
    assert protocol.machine_state == "member"
    protocol.works[1].finish()
    protocol.works[2].finish()
    assert transport.value() == b"WELCOME\r\nSTRING one\r\nSTRING two\r\n"
    assert not transport.disconnecting


@STYLES
def test_a_failed_work_is_a_local_error(kind: type[Service], caplog: Any) -> None:
    protocol, transport = connect(kind)
    protocol.dataReceived(b"GET a\r\nGET b\r\n")
    with caplog.at_level(logging.ERROR, logger="statewire.declarative"):
        protocol.works[0].finish(KeyError("a"))
    assert transport.aborted
    assert [w.key for w in protocol.works] == [b"a"]  # nothing more was framed
    assert "KeyError" in caplog.text


@STYLES
def test_a_connection_lost_while_waiting_cancels_the_work(kind: type[Service]) -> None:
    protocol, transport = connect(kind)
    protocol.dataReceived(b"GET a\r\nGET b\r\n")
    work = protocol.works[0]
    protocol.connectionLost(connectionDone)
    assert work.is_cancelled
    assert protocol.losses == 1
    assert protocol.machine_state == "gone"
    assert [w.key for w in protocol.works] == [b"a"]
    assert transport.value() == b""


class Ticks(Protocol):
    def job(self, line: bytes) -> None: ...
    def expired(self) -> None: ...


class Timed(MachineProtocol):
    job_work: Work | None = None


ticks = TypeMachineBuilder(Ticks, Timed)
busy = ticks.state("busy")


@busy.upon(Ticks.job).loop()
def job(machine: Ticks, core: Timed, line: bytes) -> Work:
    core.job_work = Work(line)
    return core.job_work


@busy.upon(Ticks.expired).loop()
def expired(machine: Ticks, core: Timed) -> None:
    core.close()


class TimedProtocol(Timed):
    machine = ticks.build()
    framings = {busy: line(b"\r\n")}
    routes = {busy: Ticks.job}
    timeouts = {busy: Timeout(5, Ticks.expired, idle=True)}


def test_timeouts_keep_running_while_waiting() -> None:
    protocol = TimedProtocol()
    clock = protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"a\r\nb\r\n")
    work = protocol.job_work
    assert work is not None
    clock.advance(5)  # silent for 5 s, work or not: the timeout closes
    assert transport.disconnecting and not work.done
    protocol.connectionLost(connectionDone)
    assert work.is_cancelled and protocol.job_work is work


def test_a_peer_s_silence_counts_from_when_paused_reading_resumes() -> None:
    """A peer whose bytes we stopped reading (too much buffered behind the work) could not
    send: once the work ends and reading resumes, its silence counts from then. The pause
    stops nothing: an idle timeout still bounds work that never ends."""

    class Small(TimedProtocol):
        waiting_read_limit = 100

    def paused() -> tuple[Small, StringTransport, Clock, Work]:
        protocol = Small()
        clock = protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"a\r\n" + b"b" * 200)  # (the start of a line, over the limit)
        work = protocol.job_work
        assert work is not None and transport.producerState == "paused"
        return protocol, transport, clock, work

    _, transport, clock, work = paused()
    clock.advance(4)
    work.finish()  # reading resumes at t = 4
    assert transport.producerState == "producing"
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.1)  # silent for 5 s since reading resumed
    assert transport.disconnecting

    _, transport, clock, work = paused()
    clock.advance(5)  # the work never ends: the idle timeout bounds it, paused or not
    assert transport.disconnecting and not work.done


def test_reading_pauses_while_too_much_waits_and_resumes_after() -> None:
    protocol, transport = connect(TypedService)
    protocol.dataReceived(b"GET a\r\n")
    while transport.producerState == "producing":
        protocol.dataReceived(b"PING\r\n" * 1000)
    buffered = len(protocol.machine_engine.buffered)
    assert TypedService.waiting_read_limit < buffered <= TypedService.waiting_read_limit + 6000
    protocol.works[0].finish()
    assert transport.producerState == "producing"
    assert transport.value().count(b"PONG\r\n") * 6 == buffered


def test_a_protocol_paused_by_its_user_stays_paused_when_the_work_ends() -> None:
    got: list[bytes] = []

    class Lines(LineReceiver):
        def lineReceived(self, line: bytes) -> Work:
            got.append(line)
            self.work = Work(line)
            return self.work

    protocol = Lines()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"a\r\n" + b"b\r\n" * 30000)
    assert transport.producerState == "paused"
    protocol.pauseProducing()
    protocol.work.finish()
    assert transport.producerState == "paused" and got == [b"a"]
    protocol.resumeProducing()
    assert got == [b"a", b"b"]
    assert transport.producerState == "paused"  # b's work waits, with as much buffered
    while not protocol.work.done:
        protocol.work.finish()
    assert len(got) == 30001 and transport.producerState == "producing"


def test_a_coroutine_without_a_loop_is_a_local_error(caplog: Any) -> None:
    class Lines(LineReceiver):
        async def lineReceived(self, line: bytes) -> None:
            raise AssertionError("never runs")

    protocol = Lines()
    transport = StringTransport()
    protocol.makeConnection(transport)
    with caplog.at_level(logging.ERROR, logger="statewire.declarative"):
        protocol.dataReceived(b"a\r\n")
    assert transport.aborted


# -- chunking never matters ---------------------------------------------------------------------

guest_commands = st.lists(
    st.sampled_from([b"GET a", b"GET bb", b"PING", b"TWICE c", b"GET d e"]), max_size=8
)
# (no CRLF inside: each is echoed in a line)
members = st.lists(
    st.text("ab:,\r", max_size=5).map(lambda s: b"%d:%s," % (len(s), s.encode())), max_size=5
)


def run_session(kind: type[Service], reads: list[bytes], completions: list[int]) -> Service:
    """Feed ``reads``; after each, complete ``completions[i]`` pending works (oldest
    first); then complete everything."""
    protocol, _ = connect(kind)
    for index, data in enumerate(reads):
        protocol.dataReceived(data)
        for _ in range(completions[index] if index < len(completions) else 0):
            waiting = pending(protocol)
            if waiting:
                waiting[0].finish()
    while pending(protocol):
        pending(protocol)[0].finish()
    return protocol


@STYLES
@given(
    commands=guest_commands,
    authenticate=st.booleans(),
    strings=members,
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
    completions=st.lists(st.integers(min_value=0, max_value=2), max_size=12),
)
def test_chunking_and_completion_timing_never_matter(
    kind: type[Service],
    commands: list[bytes],
    authenticate: bool,
    strings: list[bytes],
    cuts: list[int],
    completions: list[int],
) -> None:
    stream = b"".join(c + b"\r\n" for c in commands)
    if authenticate:
        stream += b"AUTH ann\r\n" + b"".join(strings)
    whole = run_session(kind, [stream], [])
    positions = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    reads = [stream[a:b] for a, b in pairwise(positions)]
    cut = run_session(kind, reads, completions)
    assert cut.transport.value() == whole.transport.value()
    assert cut.machine_state == whole.machine_state
    assert cut.transport.disconnecting == whole.transport.disconnecting
    # what a synchronous reading of the same session would reply
    expected = []
    for command in commands:
        verb, _, rest = command.partition(b" ")
        if verb == b"PING":
            expected.append(b"PONG\r\n")
        elif verb == b"TWICE":
            expected.append(b"TWICE " + rest + rest + b"\r\n")
        elif b" " not in rest:
            expected.append(b"VALUE " + rest + b"\r\n")
    if authenticate:
        expected.append(b"WELCOME\r\n")
        expected += [b"STRING " + s.partition(b":")[2][:-1] + b"\r\n" for s in strings]
    if b"GET d e" not in commands:  # two words for GET: unroutable, the connection closes
        assert whole.transport.value() == b"".join(expected)


# -- protocols with no async output are untouched ----------------------------------------------


def test_a_function_that_returns_nothing_needs_no_check() -> None:
    def quiet(x: Any) -> None:
        if x:
            return
        x.y = 1

    def value(x: Any) -> Any:
        return x

    def either(x: Any) -> Any:
        return x if x else None

    async def coroutine(x: Any) -> None:
        pass

    def generator(x: Any) -> Any:
        yield x

    assert returns_nothing(quiet)
    assert returns_nothing(partial(quiet, 1))
    assert returns_nothing(TypedService.connectionMade.__get__(TypedService()))
    for function in (value, either, coroutine, generator, print, Work):
        assert not returns_nothing(function)


def test_the_direct_handler_of_a_synchronous_output_is_the_output_itself() -> None:
    class Lines(LineReceiver):
        def lineReceived(self, line: bytes) -> None:
            pass

    protocol = Lines()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"x\r\n")
    assert protocol.machine_engine.framer().on_frame == protocol.lineReceived


# -- basic helpers ------------------------------------------------------------------------------


def test_an_async_line_receiver_replies_in_order() -> None:
    class Lines(LineReceiver):
        async def lineReceived(self, line: bytes) -> None:
            await asyncio.sleep(0.001 * (b"abc".index(line[:1]) if line[:1] in b"abc" else 0))
            self.sendLine(line.upper())

    async def main() -> bytes:
        protocol = Lines()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"c\r\nb")
        protocol.dataReceived(b"\r\na\r\nz\r\n")
        while transport.value().count(b"\r\n") < 4:
            await asyncio.sleep(0.001)
        return transport.value()

    assert asyncio.run(main()) == b"C\r\nB\r\nA\r\nZ\r\n"


def test_an_object_with_await_is_waited_for() -> None:
    class Later:
        def __init__(self, send: Callable[[], None]) -> None:
            self.send = send

        def __await__(self) -> Any:
            yield from asyncio.sleep(0.002).__await__()
            self.send()

    class Lines(LineReceiver):
        def lineReceived(self, line: bytes) -> Later:
            return Later(lambda: self.sendLine(line.upper()))

    async def main() -> bytes:
        protocol = Lines()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"a\r\nb\r\n")
        assert transport.value() == b""  # "b" waits for the first awaitable
        for _ in range(2000):
            if transport.value().count(b"\r\n") == 2:
                break
            await asyncio.sleep(0.001)
        return transport.value()

    assert asyncio.run(main()) == b"A\r\nB\r\n"


def test_a_netstring_receiver_waits_for_returned_futures() -> None:
    class Strings(NetstringReceiver):
        def connectionMade(self) -> None:
            self.works: list[Work] = []

        def stringReceived(self, string: bytes) -> Work:
            work = Work(string)
            work.add_done_callback(lambda w: self.sendString(string[::-1]))
            self.works.append(work)
            return work

    protocol = Strings()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"2:ab,2:cd,")
    assert len(protocol.works) == 1
    protocol.works[0].finish()
    protocol.works[1].finish()
    assert transport.value() == b"2:ba,2:dc,"


# -- over sockets ------------------------------------------------------------------------------


class AsyncLines(LineReceiver):
    """Each line is answered after a random small delay; ``boom`` fails its work."""

    def connectionMade(self) -> None:
        self.random = random.Random(self.factory.seed)  # type: ignore[attr-defined]
        self.factory.seed += 1  # type: ignore[attr-defined]

    async def lineReceived(self, line: bytes) -> None:
        await asyncio.sleep(self.random.uniform(0, 0.005))
        if line == b"boom":
            raise ValueError("boom")
        self.sendLine(b"done " + line)


@pytest.mark.parametrize("native", [False, True], ids=["statewire", "native"])
def test_pipelined_async_work_over_sockets_replies_in_order(native: bool) -> None:
    count = 40
    request = b"".join(b"%d\r\n" % i for i in range(count))
    expected = b"".join(b"done %d\r\n" % i for i in range(count))

    async def body(reactor: Any) -> None:
        factory = Factory.forProtocol(AsyncLines)
        factory.seed = 1  # type: ignore[attr-defined]
        port = await listen(reactor, factory)

        async def client(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(HOST, port)
            for i in range(0, len(data), 7):  # pipelined, in small writes
                writer.write(data[i : i + 7])
            await writer.drain()
            try:
                return await reader.readexactly(len(expected))
            finally:
                writer.close()

        async def failing() -> bytes:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"1\r\nboom\r\n2\r\n")
            got = b""
            try:  # the failure aborts this connection only (a reset, or an end)
                while chunk := await reader.read(100):
                    got += chunk
            except ConnectionResetError:
                pass
            writer.close()
            return got

        results = await asyncio.gather(client(request), failing(), client(request))
        assert results[0] == results[2] == expected
        assert b"done 1\r\n".startswith(results[1])  # never a reply to what followed
        assert await client(request) == expected  # the server carries on

    scenario(body, native=native)


def test_a_connection_lost_while_a_coroutine_waits_cancels_it() -> None:
    events: list[str] = []

    class Slow(LineReceiver):
        async def lineReceived(self, line: bytes) -> None:
            events.append("started")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                events.append("cancelled")
                raise

        def connectionLost(self, reason: Any = connectionDone) -> None:
            events.append("lost")
            super().connectionLost(reason)

    async def body(reactor: Any) -> None:
        port = await listen(reactor, Factory.forProtocol(Slow))
        _, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"wait\r\nnext\r\n")
        while "started" not in events:
            await asyncio.sleep(0.001)
        writer.close()
        while "cancelled" not in events:
            await asyncio.sleep(0.001)

    scenario(body)
    assert events == ["started", "lost", "cancelled"]


# -- work that fails after the connection started closing -----------------------------------


class Decisions(Protocol):
    def ask(self, line: bytes) -> None: ...
    def decided(self) -> None: ...
    def idle(self) -> None: ...


class Asking(MachineProtocol):
    sends = line()
    pending: Work


_asking = TypeMachineBuilder(Decisions, Asking)
_waiting_for_it = _asking.state("waiting")
_over = _asking.state("over")


@_waiting_for_it.upon(Decisions.ask).loop()
def _ask(machine: Decisions, core: Asking, line: bytes) -> Work:
    # stands for ``async def``: await the handler, then ``machine.decided()``; an input
    # the state then refuses fails the work with automat's NoTransition
    core.pending = Work(line)
    return core.pending


@_waiting_for_it.upon(Decisions.decided).loop()
def _decided(machine: Decisions, core: Asking) -> None:
    core.send(b"250 ok")


@_waiting_for_it.upon(Decisions.idle).to(_over)
def _time_out(machine: Decisions, core: Asking) -> None:
    core.send(b"421 closing")
    core.close()


Asking.declare(
    _asking.build(),
    framings={_waiting_for_it: line()},
    routes={_waiting_for_it: Decisions.ask},
    timeouts={_waiting_for_it: Timeout(5, Decisions.idle, idle=True)},
)


def test_work_that_fails_once_the_connection_is_closing_does_not_abort_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The late decision's input is refused by the final state: logged, and the 421 the
    timeout sent still leaves (the connection closes, it is not aborted)."""
    protocol, transport, clock = Asking(), StringTransport(), Clock()
    protocol.clock = clock
    protocol.makeConnection(transport)
    protocol.dataReceived(b"MAIL\r\n")
    clock.advance(6)  # the idle timeout fires while the decision is pending
    assert transport.value() == b"421 closing\r\n" and transport.disconnecting
    refused = NoTransition(state=_over, symbol="decided")
    with caplog.at_level(logging.INFO, logger="statewire.machine"):
        protocol.pending.finish(refused)  # the decision came after the end: refused
    assert not transport.aborted
    assert transport.value() == b"421 closing\r\n"
    assert "failed while closing" in caplog.text


def test_a_twisted_deferred_is_waited_for_and_its_failure_is_a_local_error() -> None:
    from twisted.internet import defer

    deferreds: list[defer.Deferred[None]] = []

    class Deferring(LineReceiver):
        def lineReceived(self, line: bytes) -> defer.Deferred[None]:
            deferred: defer.Deferred[None] = defer.Deferred()
            deferred.addCallback(lambda _: self.sendLine(b"done " + line))
            deferreds.append(deferred)
            return deferred

    protocol, transport = Deferring(), StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"one\r\ntwo\r\n")
    assert len(deferreds) == 1  # "two" waits for the first Deferred
    deferreds[0].callback(None)
    assert len(deferreds) == 2 and transport.value() == b"done one\r\n"
    deferreds[1].errback(ValueError("no"))  # a failure: a local error, nothing unhandled
    assert transport.aborted
    lost, other = Deferring(), StringTransport()
    lost.makeConnection(other)
    lost.dataReceived(b"three\r\n")
    lost.connectionLost(connectionDone)  # the loss cancels the pending Deferred
    assert deferreds[2].called and other.value() == b""


# -- an input an output calls (postponed) whose own output returns an awaitable ---------------


class Relay(Protocol):
    def line(self, text: bytes) -> None: ...
    def finish(self, text: bytes) -> None: ...


class RelayCore(MachineProtocol):
    works: list[Work]


def _relay_protocol() -> type[RelayCore]:
    builder = TypeMachineBuilder(Relay, RelayCore)
    reading = builder.state("reading")

    @reading.upon(Relay.line).loop()
    def take(machine: Relay, core: RelayCore, text: bytes) -> None:
        if text == b".":
            machine.finish(text)  # postponed: runs once this output returns
        else:
            core.transport.write(b"got " + text + b"\n")

    @reading.upon(Relay.finish).loop()
    def finish(machine: Relay, core: RelayCore, text: bytes) -> Work:
        work = Work(text)
        work.add_done_callback(lambda _: core.transport.write(b"finished\n"))
        core.works.append(work)
        return work

    return type(
        "Relaying",
        (RelayCore,),
        {
            "machine": builder.build(),
            "framings": {reading: line(b"\n")},
            "routes": {reading: Relay.line},
        },
    )


def test_the_work_of_a_postponed_input_holds_the_frames_after_it() -> None:
    """An output calls another input (postponed until it returns); that input's output
    returns an awaitable: it is waited for as a frame's own work would be (the frames
    after it wait), not dropped."""
    protocol = _relay_protocol()()
    protocol.works = []
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"a\n.\nb\n")
    assert transport.value() == b"got a\n"
    assert len(protocol.works) == 1
    protocol.works[0].finish()
    assert transport.value() == b"got a\nfinished\ngot b\n"
