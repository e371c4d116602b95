"""statewire's SMTP server against aiosmtpd and Twisted's ESMTP, in the same run.

The servers, each in its own process on a free loopback port, each with a do-nothing
handler (every sender and recipient accepted, the body thrown away): statewire's
``statewire.protocols.smtp`` with the base ``SMTPHandler``, served by ``statewire serve``
(``--uvloop`` adds a row on uvloop, and the ``asyncio`` and ``api floor`` servers below served
on uvloop, its C transports theirs); ``aiosmtpd`` (skipped, and said so, when it is not
installed) with a ``handle_DATA`` answering ``250``; Twisted's ``twisted.mail.smtp.ESMTP``
with an ``IMessageDelivery`` whose messages drop their lines; and ``asyncio``, the least
an SMTP server can do (:class:`AsyncioSink`: the hand-written limit, no target). The
``limit`` lines divide its rate by each peer's. Over one connection, where the round
trip's fixed costs (the two processes' wake-ups, the client's own work) dominate, that ratio
is about what a Python server on asyncio could reach if parsing and deciding the session
cost it nothing; the targets are measured against it. Two ``api floor`` rows add to that
limit only the calls of statewire's handler interface (``smtp_floor.py``: an envelope, the
handler's ``mail``, ``rcpt``, ``message`` and the sink's ``write`` and ``close``), served on
asyncio and (``api floor statewire``) on statewire's own transport; the ``floor`` lines
divide their rates by each peer's.

Messages accepted per second, small messages (about 1 KiB), over one connection and over
``--connections`` concurrent ones, for ``--seconds`` each. The client is one process with
non-blocking sockets and ``selectors``, pre-built bytes and replies counted by scanning for
line ends. It pipelines as RFC 2920 allows: ``MAIL``/``RCPT``/``DATA`` in one write, the
body only after ``354``, and the end-of-data dot sent together with the next message's
``MAIL``/``RCPT``/``DATA``: one round trip per message. Targets (issue 16): >= 3x aiosmtpd,
>= 2x Twisted.

Then a ``--big-mib`` (50) MiB message of 76-octet lines, via ``DATA`` to each server and
via ``BDAT LAST`` to statewire, each to a fresh server: the server's peak RSS (VmHWM of
``/proc/PID/status``) before and after shows whether memory stays bounded.

``--in-process`` measures statewire alone, without sockets: one session in memory (a
test clock, a transport that keeps what is written) fed the reads the client sends, the
body, its dot and the next envelope in one read a message; it prints the microseconds and
the Python function calls (``cProfile``'s count, built-ins included) a message costs,
and the writes; then the microseconds of the ``api floor`` (``bench/smtp_floor.py``) fed
the same reads. ``--lines`` sets the body's lines of 74 octets (0: the message above).

    python bench/bench_smtp.py [--seconds 3] [--connections 50] [--big-mib 50] [--uvloop]
    python bench/bench_smtp.py --quick
    python bench/bench_smtp.py --in-process [--lines 43]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import selectors
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resp import HOST, cpu_seconds, free_port, served
from smtp_floor import ApiFloorSink

#: the largest message every server is configured to take
MAX_SIZE = 128 << 20
ENVELOPE = b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<sink@example.net>\r\nDATA\r\n"
MESSAGE = (
    b"From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench\r\n"
    b"Message-ID: <bench@example.org>\r\n\r\n"
    + b"".join(b"%02d " % n + b"x" * 69 + b"\r\n" for n in range(12))
)
END = b".\r\n"
#: seconds any single blocking socket operation may take
TIMEOUT = 60.0


# -- the servers (each run in its own process: ``bench_smtp.py serve NAME PORT``) ----------


def statewire_factory() -> Any:
    """statewire's server with the base handler: accepts everyone, discards the body."""
    from statewire.protocols.smtp import SMTPFactory, SMTPHandler

    return SMTPFactory(SMTPHandler(), max_size=MAX_SIZE)


def serve_aiosmtpd(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = Discard()

        def protocol() -> SMTP:
            return SMTP(handler, data_size_limit=MAX_SIZE, hostname="localhost", loop=loop)

        server = await loop.create_server(protocol, HOST, port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_twisted(port: int) -> None:
    from twisted.internet import defer, protocol, reactor
    from twisted.mail import smtp
    from zope.interface import implementer

    @implementer(smtp.IMessage)
    class Discard:
        def lineReceived(self, line: bytes) -> None:
            pass

        def eomReceived(self) -> defer.Deferred[None]:
            return defer.succeed(None)

        def connectionLost(self) -> None:
            pass

    @implementer(smtp.IMessageDelivery)
    class Delivery:
        def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
            return None

        def validateFrom(self, helo: Any, origin: Any) -> Any:
            return origin

        def validateTo(self, user: Any) -> Any:
            return Discard

    class Factory(protocol.ServerFactory):
        noisy = False

        def buildProtocol(self, addr: Any) -> smtp.ESMTP:
            server = smtp.ESMTP()
            server.factory, server.delivery, server.host, server.noisy = (
                self,
                delivery,
                b"localhost",
                False,
            )
            return server

    delivery = Delivery()
    reactor.listenTCP(port, Factory(), interface=HOST)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


class AsyncioSink(asyncio.Protocol):
    """The least an SMTP server can do: every command but ``DATA``, ``EHLO`` and ``QUIT``
    answered ``250``, the body skipped to its ``CRLF.CRLF``; no syntax, no state, no
    limits. The hand-written asyncio limit, as ``bench_http.py``'s ``asyncio`` row."""

    EHLO = b"250-localhost\r\n250-PIPELINING\r\n250 SIZE %d\r\n" % MAX_SIZE

    def connection_made(self, transport: Any) -> None:  # (asyncio's, or uvloop's)
        self.transport = transport
        self.buffer = b""
        #: in a body: where its end may start in ``buffer`` (else ``-1``)
        self.body_from = -1
        transport.write(b"220 localhost ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out = []
        pos = 0
        while True:
            if self.body_from >= 0:
                end = buffer.find(b"\r\n.\r\n", self.body_from)
                if end < 0:  # keep what may start the end, drop the rest of the body
                    keep = max(len(buffer) - 4, self.body_from)
                    buffer, pos, self.body_from = buffer[keep:], 0, 0
                    break
                pos, self.body_from = end + 5, -1
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            verb = buffer[pos : pos + 4].upper()
            pos = end + 2
            if verb == b"DATA":
                self.body_from = end  # (an empty body ends at this CRLF's dot)
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"EHLO":
                out.append(self.EHLO)
            elif verb == b"QUIT":
                out.append(b"221 Bye\r\n")
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            else:
                out.append(b"250 OK\r\n")
        self.buffer = buffer[pos:]
        if out:
            self.transport.write(b"".join(out))


def serve_asyncio(port: int, kind: type[asyncio.Protocol], uvloop: bool = False) -> None:
    """Serve ``kind`` on ``port``, on an asyncio loop or (``uvloop``) a uvloop one, whose
    transports are uvloop's own, in C."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(kind, HOST, port)
        async with server:
            await server.serve_forever()

    if not uvloop:
        asyncio.run(main())
        return
    import uvloop as uv

    uv.run(main())


SERVE = {
    "aiosmtpd": serve_aiosmtpd,
    "twisted": serve_twisted,
    "asyncio": lambda port: serve_asyncio(port, AsyncioSink),
    "api floor": lambda port: serve_asyncio(port, ApiFloorSink),
    "asyncio uvloop": lambda port: serve_asyncio(port, AsyncioSink, uvloop=True),
    "api floor uvloop": lambda port: serve_asyncio(port, ApiFloorSink, uvloop=True),
}


def command(name: str, port: int) -> list[str]:
    """The command line serving ``name`` on ``port``."""
    if name.startswith(("statewire", "api floor statewire")):
        where = "smtp_floor" if name.startswith("api") else "bench_smtp"
        serve = [sys.executable, "-m", "statewire", "serve", f"bench/{where}.py:statewire_factory"]
        uvloop = ["--uvloop"] if name.endswith("uvloop") else []
        return [*serve, "--listen", f"tcp:{port}:interface={HOST}", *uvloop]
    return [sys.executable, "bench/bench_smtp.py", "serve", name, str(port)]


@contextmanager
def server(name: str) -> Iterator[tuple[int, int]]:
    """Serve ``name`` in its own process: (port, pid)."""
    port = free_port()
    with served(command(name, port), port) as found:
        yield found


# -- the client ------------------------------------------------------------------------------


class Replies:
    """Whole replies (multi-line ones too) read blocking from ``sock``, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes:
        while True:
            end = 0
            while (found := self.buffer.find(b"\r\n", end)) >= 0:
                if self.buffer[end + 3 : end + 4] != b"-":
                    answer, self.buffer = self.buffer[: found + 2], self.buffer[found + 2 :]
                    return answer
                end = found + 2
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"connection closed after {self.buffer!r}")
            self.buffer += chunk


def session(port: int) -> Replies:
    """A connection past the greeting and EHLO, and its replies."""
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies = Replies(sock)
    for expected in (b"220", b"250"):
        answer = replies.next()
        if not answer.startswith(expected):
            raise RuntimeError(f"expected {expected!r}, got {answer!r}")
        if expected == b"220":
            sock.sendall(b"EHLO bench.example.org\r\n")
    return replies


def send_one(replies: Replies) -> None:
    """One small message, one command at a time, each reply as expected."""
    for line, code in zip(ENVELOPE.split(b"\r\n"), (b"250", b"250", b"354"), strict=False):
        replies.sock.sendall(line + b"\r\n")
        answer = replies.next()
        if not answer.startswith(code):
            raise RuntimeError(f"{line!r} answered {answer!r}")
    replies.sock.sendall(MESSAGE + END)
    answer = replies.next()
    if not answer.startswith(b"250"):
        raise RuntimeError(f"the message was answered {answer!r}")


def drive(port: int, pid: int, connections: int, seconds: float) -> tuple[float, float, int]:
    """Messages accepted per second over ``connections`` connections, the server's CPU
    microseconds per message, and the replies that were refusals (4xx or 5xx). Each
    connection has one message's round trip in flight: ``<previous body> . MAIL RCPT
    DATA`` out, four replies back (the last one ``354``)."""
    batch = MESSAGE + END + ENVELOPE
    selector = selectors.DefaultSelector()
    owed: dict[socket.socket, int] = {}
    carrying: dict[socket.socket, bool] = {}
    tails: dict[socket.socket, bytes] = {}
    for _ in range(connections):
        sock = session(port).sock
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        owed[sock], carrying[sock], tails[sock] = 3, False, b"\n"
    for sock in owed:
        sock.send(ENVELOPE)
    messages = refused = 0
    cpu = cpu_seconds(pid)
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            for key, _ in selector.select(timeout=deadline - now):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(1 << 20)
                if not data:
                    raise RuntimeError("the server closed a connection")
                # single-line replies: one per line end; a refusal starts a line with 4 or 5
                owed[sock] -= data.count(b"\n")
                scanned = tails[sock] + data
                refused += scanned.count(b"\n4") + scanned.count(b"\n5")
                tails[sock] = data[-1:]
                if owed[sock] <= 0:
                    messages += carrying[sock]
                    owed[sock], carrying[sock] = 4, True
                    sock.sendall(batch)  # small: fits the empty socket buffer
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(pid) - cpu
    finally:
        for sock in owed:
            selector.unregister(sock)
            sock.close()
        selector.close()
    return messages / elapsed, cpu * 1e6 / max(messages, 1), refused


# -- memory with one big message -------------------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for row in status:
            if row.startswith(field + ":"):
                return int(row.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def big_message(mib: int) -> bytes:
    """``mib`` MiB of 76-octet lines (as base64 attachments come), after a header."""
    line = b"QmVuY2htYXJrIGJvZHkgbGluZSBvZiBzZXZlbnR5LXNpeCBvY3RldHMsIGJhc2U2NCBzdHlsZS4u\r\n"
    assert len(line) == 78
    return b"Subject: big\r\n\r\n" + line * ((mib << 20) // len(line))


def send_big(name: str, body: bytes, bdat: bool) -> tuple[int, int, float, bytes]:
    """A fresh ``name`` server takes ``body``: its (RSS before, peak RSS after) in KiB,
    the seconds the message took, and the final reply."""
    with server(name) as (port, pid):
        replies = session(port)
        sock = replies.sock
        send_one(replies)  # warm
        time.sleep(0.2)
        try:  # reset the peak RSS (VmHWM) to the current RSS
            with open(f"/proc/{pid}/clear_refs", "w") as refs:
                refs.write("5")
        except OSError:
            pass
        before = status_kib(pid, "VmRSS")
        start = time.perf_counter()
        if bdat:
            head = ENVELOPE.replace(b"DATA\r\n", b"BDAT %d LAST\r\n" % len(body))
            sock.sendall(head)
            sock.sendall(body)
            answers = [replies.next() for _ in range(3)]
        else:
            sock.sendall(ENVELOPE)
            answers = [replies.next() for _ in range(3)]
            if not answers[-1].startswith(b"354"):
                raise RuntimeError(f"DATA answered {answers[-1]!r}")
            sock.sendall(body)
            sock.sendall(END)
            answers.append(replies.next())
        elapsed = time.perf_counter() - start
        peak = status_kib(pid, "VmHWM")
        sock.close()
        return before, peak, elapsed, answers[-1].strip()


# -- in process ------------------------------------------------------------------------------


class _Kept:
    """A transport that keeps nothing but the count of writes (what the server sends is
    not looked at: the socket runs measure that)."""

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def loseConnection(self) -> None:
        pass

    def abortConnection(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


def in_process(lines: int, messages: int = 2000, rounds: int = 5) -> None:
    """statewire's cost per message in process: microseconds (the median of ``rounds``),
    Python calls and writes."""
    import cProfile
    import pstats

    from statewire.testing.memory import Clock

    message = MESSAGE
    if lines:
        message = b"".join(b"%02d " % (n % 100) + b"x" * 69 + b"\r\n" for n in range(lines))
    read = message + END + ENVELOPE

    def connected() -> tuple[Callable[[bytes], object], _Kept]:
        protocol = statewire_factory().buildProtocol(None)
        protocol.clock = Clock()
        transport = _Kept()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"EHLO bench.example.org\r\n")
        protocol.dataReceived(ENVELOPE)
        return protocol.dataReceived, transport

    def floor_connected() -> tuple[Callable[[bytes], object], _Kept]:
        sink, transport = ApiFloorSink(), _Kept()
        sink.begin(transport.write, transport.loseConnection)
        sink.data_received(b"EHLO bench.example.org\r\n" + ENVELOPE)
        return sink.data_received, transport

    def run(
        profile: Any = None,
        connect: Callable[[], tuple[Callable[[bytes], object], _Kept]] = connected,
    ) -> tuple[float, float]:
        feed, transport = connect()
        before = transport.writes
        if profile is not None:
            profile.enable()
        start = time.perf_counter()
        for _ in range(messages):
            feed(read)
        elapsed = time.perf_counter() - start
        if profile is not None:
            profile.disable()
        return elapsed * 1e6 / messages, (transport.writes - before) / messages

    run()  # warm
    costs = [run()[0] for _ in range(rounds)]
    profile = cProfile.Profile()
    _, writes = run(profile)
    calls = pstats.Stats(profile).total_calls / messages  # type: ignore[attr-defined]
    count = message.count(b"\n")
    print(
        f"in process, {count}-line messages ({len(message)} octets), one read "
        f"a message: {statistics.median(costs):.1f} us a message [{min(costs):.1f}-"
        f"{max(costs):.1f}], {calls:.0f} Python calls, {writes:g} writes"
    )
    run(connect=floor_connected)  # warm
    costs = [run(connect=floor_connected)[0] for _ in range(rounds)]
    print(
        f"the api floor (bench/smtp_floor.py), the same reads: {statistics.median(costs):.1f} "
        f"us a message [{min(costs):.1f}-{max(costs):.1f}]"
    )


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per load and server")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--big-mib", type=int, default=50, help="the big message (0: skip)")
    parser.add_argument("--uvloop", action="store_true", help="add statewire on uvloop")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--quick", action="store_true", help="1 round of 0.5 s, 10 MiB")
    parser.add_argument("--in-process", action="store_true", help="statewire alone, in memory")
    parser.add_argument("--lines", type=int, default=0, help="--in-process: body lines")
    args = parser.parse_args()
    if args.in_process:
        in_process(args.lines)
        return
    if args.quick:
        args.seconds, args.rounds, args.big_mib = 0.5, 1, min(args.big_mib, 10)
    names = ["statewire", *(["statewire-uvloop"] if args.uvloop else []), "twisted", "asyncio"]
    names += ["api floor", "api floor statewire"]
    if args.uvloop:
        names += ["asyncio uvloop", "api floor uvloop"]
    if importlib.util.find_spec("aiosmtpd") is None:
        print("aiosmtpd is not installed: skipped (pip install aiosmtpd)")
    else:
        names.append("aiosmtpd")
    loads = {"1 conn": 1, f"{args.connections} conns": args.connections}
    rates: dict[tuple[str, str], list[float]] = {}
    costs: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as running:
        found = {name: running.enter_context(server(name)) for name in names}
        for port, _ in found.values():
            replies = session(port)
            with replies.sock:
                send_one(replies)
        # rounds alternate the servers: a busy spell of the machine hits each alike
        for _ in range(args.rounds):
            for load, connections in loads.items():
                for name, (port, pid) in found.items():
                    rate, cost, refused = drive(port, pid, connections, args.seconds)
                    if refused:
                        raise SystemExit(f"{name} refused {refused} replies under {load}")
                    rates.setdefault((name, load), []).append(rate)
                    costs.setdefault((name, load), []).append(cost)
    median_rate = {key: statistics.median(values) for key, values in rates.items()}
    median_cost = {key: statistics.median(values) for key, values in costs.items()}
    print(
        f"small messages ({len(MESSAGE)} octets) via DATA, {args.seconds:g} s a load, "
        f"median of {args.rounds} alternated rounds"
    )
    print("messages/s [min-max]; server CPU microseconds per message")
    print(f"{'server':<21}" + "".join(f"{load:>32}" for load in loads))
    for name in names:
        cells = "".join(
            f"{median_rate[name, load]:>10,.0f} [{min(rates[name, load]):,.0f}-"
            f"{max(rates[name, load]):,.0f}] {median_cost[name, load]:>5.0f} us".rjust(32)
            for load in loads
        )
        print(f"{name:<21}{cells}")
    targets = {"twisted": 2.0, "aiosmtpd": 3.0, "asyncio": None}
    for ours in (name for name in names if name.startswith("statewire")):
        for peer in (name for name in names if name in targets):
            target = targets[peer]
            ratios = "  ".join(
                f"{load} {median_rate[ours, load] / median_rate[peer, load]:.2f}x"
                f" (CPU {median_cost[peer, load] / median_cost[ours, load]:.2f}x)"
                for load in loads
            )
            goal = "limit" if target is None else f">= {target:g}x"
            print(f"{ours} / {peer}: {ratios}  target {goal}")
    for peer in (name for name in ("twisted", "aiosmtpd") if name in names and "asyncio" in names):
        # what the least an SMTP server can do reaches, over the same loop and client
        for limit in (name for name in names if name.startswith("asyncio")):
            ceiling = "  ".join(
                f"{load} {median_rate[limit, load] / median_rate[peer, load]:.2f}x"
                for load in loads
            )
            print(f"limit: {limit} / {peer}: {ceiling}  (a server that parses nothing)")
        for floor in (name for name in names if name.startswith("api floor")):
            ratios = "  ".join(
                f"{load} {median_rate[floor, load] / median_rate[peer, load]:.2f}x"
                for load in loads
            )
            print(f"floor: {floor} / {peer}: {ratios}  (the handler interface alone)")
    if args.big_mib <= 0:
        return
    body = big_message(args.big_mib)
    print(f"\none {len(body) / (1 << 20):.0f} MiB message of 78-octet lines, a fresh server each")
    columns = ("via", "RSS before", "peak RSS", "growth", "seconds")
    print(f"{'server':<21}" + "".join(f"{column:>12}" for column in columns) + "  reply")
    runs = [(name, False) for name in names]
    runs += [(name, True) for name in names if name.startswith("statewire")]
    for name, bdat in runs:
        before, peak, elapsed, answer = send_big(name, body, bdat)
        figures = [f"{before / 1024:.1f} MiB", f"{peak / 1024:.1f} MiB"]
        figures += [f"{(peak - before) / 1024:.1f} MiB", f"{elapsed:.2f}"]
        shown = answer[:40].decode(errors="replace")
        row = "".join(f"{cell:>12}" for cell in ["BDAT" if bdat else "DATA", *figures])
        print(f"{name:<21}{row}  {shown}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        SERVE[sys.argv[2]](int(sys.argv[3]))
    else:
        main()
